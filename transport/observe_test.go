package transport

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mailtls/mailtls/policy"
)

// ObservedEvents are the events a RecordingObserver received.
type ObservedEvents struct {
	Sessions    []SessionEvent
	Auths       []AuthEvent
	Refusals    []RefusalEvent
	Deliveries  []DeliveryEvent
	TLSFailures []TLSFailureEvent
}

// RecordingObserver keeps every event it receives (exported for the
// transport_test package's Connector tests).
type RecordingObserver struct {
	mu  sync.Mutex
	evs ObservedEvents
}

// record appends e to the list l of r's events.
func record[E any](r *RecordingObserver, l *[]E, e E) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*l = append(*l, e)
}

func (r *RecordingObserver) ObserveSession(e SessionEvent) { record(r, &r.evs.Sessions, e) }

func (r *RecordingObserver) ObserveAuth(e AuthEvent) { record(r, &r.evs.Auths, e) }

func (r *RecordingObserver) ObserveRefusal(e RefusalEvent) { record(r, &r.evs.Refusals, e) }

func (r *RecordingObserver) ObserveDelivery(e DeliveryEvent) { record(r, &r.evs.Deliveries, e) }

func (r *RecordingObserver) ObserveTLSFailure(e TLSFailureEvent) { record(r, &r.evs.TLSFailures, e) }

// Snapshot returns copies of the events received so far, durations zeroed
// so that they compare with ==.
func (r *RecordingObserver) Snapshot() ObservedEvents {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := ObservedEvents{
		Sessions:    slices.Clone(r.evs.Sessions),
		Auths:       slices.Clone(r.evs.Auths),
		Refusals:    slices.Clone(r.evs.Refusals),
		Deliveries:  slices.Clone(r.evs.Deliveries),
		TLSFailures: slices.Clone(r.evs.TLSFailures),
	}
	for i := range out.Sessions {
		out.Sessions[i].Duration = 0
	}
	for i := range out.Deliveries {
		out.Deliveries[i].Duration = 0
	}
	return out
}

// Deliveries returns the delivery events, durations kept.
func (r *RecordingObserver) Deliveries() []DeliveryEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs.Deliveries)
}

func (r *RecordingObserver) sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs.Sessions)
}

// TestServerObserver drives one connection per case and checks the events
// the Server reported for it, exactly.
func TestServerObserver(t *testing.T) {
	pki := newSrvPKI(t)
	alice := "AUTH PLAIN " + b64("\x00alice\x00wonderland")
	wrong := "AUTH PLAIN " + b64("\x00alice\x00wrong")
	cases := []struct {
		name     string
		srv      func() *Server
		run      func(t *testing.T, ts *testServer)
		auths    []AuthEvent
		refusals []RefusalEvent
		session  SessionEvent
	}{
		{
			name: "plaintext MAIL where TLS is required",
			run: func(t *testing.T, ts *testServer) {
				d := modeDialogue(t, ts, "plaintext")
				d.expect("MAIL FROM:<a@example.org>", "530 5.7.0 ")
				d.expect("QUIT", "221")
			},
			refusals: []RefusalEvent{{KindMX, RefusalNoSTARTTLS}},
			session:  SessionEvent{Kind: KindMX, Outcome: SessionNoMail},
		},
		{
			name: "plaintext AUTH",
			run: func(t *testing.T, ts *testServer) {
				d := modeDialogue(t, ts, "plaintext")
				d.expect(alice, "538 5.7.11 ")
				d.expect("QUIT", "221")
			},
			refusals: []RefusalEvent{{KindMX, RefusalPlaintextAuth}},
			session:  SessionEvent{Kind: KindMX, Outcome: SessionNoMail},
		},
		{
			name: "REQUIRETLS in plaintext",
			srv:  func() *Server { return &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}} },
			run: func(t *testing.T, ts *testServer) {
				d := modeDialogue(t, ts, "plaintext")
				d.expect("MAIL FROM:<a@example.org> REQUIRETLS", "530 5.7.10 ")
				d.expect("QUIT", "221")
			},
			refusals: []RefusalEvent{{KindMX, RefusalRequireTLSPlaintext}},
			session:  SessionEvent{Kind: KindMX, Outcome: SessionNoMail},
		},
		{
			name: "two messages over STARTTLS",
			run: func(t *testing.T, ts *testServer) {
				d := modeDialogue(t, ts, "tls")
				for range 2 {
					if got := d.sendMessage("a@example.org", "b@example.net", "Subject: x\r\n\r\nhi\r\n"); got[:4] != "250 " {
						t.Fatalf("DATA: %q", got)
					}
				}
				d.expect("QUIT", "221")
			},
			session: SessionEvent{Kind: KindMX, TLSVersion: tls.VersionTLS13, Outcome: SessionAccepted, Messages: 2},
		},
		{
			name: "weak TLS",
			srv:  func() *Server { return &Server{TLSConfig: pki.serverConfigMin(tls.VersionTLS13)} },
			run: func(t *testing.T, ts *testServer) {
				cfg := pki.clientConfig()
				cfg.MaxVersion = tls.VersionTLS12
				if _, err := starttlsHandshake(t, ts.addr, cfg); err == nil {
					t.Fatal("TLS 1.2 client accepted")
				}
			},
			refusals: []RefusalEvent{{KindMX, RefusalWeakTLS}},
			session:  SessionEvent{Kind: KindMX, Outcome: SessionTLSFailed},
		},
		{
			name: "weak TLS on the implicit-TLS port",
			srv:  func() *Server { return &Server{Kind: KindSubmissions, Authenticator: testTable(t)} },
			run: func(t *testing.T, ts *testServer) {
				cfg := pki.clientConfig()
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
				if c, err := tls.Dial("tcp", ts.addr, cfg); err == nil {
					c.Close()
					t.Fatal("TLS 1.1 client accepted")
				}
			},
			refusals: []RefusalEvent{{KindSubmissions, RefusalWeakTLS}},
			session:  SessionEvent{Kind: KindSubmissions, Outcome: SessionTLSFailed},
		},
		{
			name: "AUTH failure then success on submission",
			srv:  func() *Server { return &Server{Kind: KindSubmission, Authenticator: testTable(t)} },
			run: func(t *testing.T, ts *testServer) {
				d := modeDialogue(t, ts, "tls")
				d.expect(wrong, "535 5.7.8 ")
				d.expect(alice, "235 2.7.0 ")
				d.expect("QUIT", "221")
			},
			auths:   []AuthEvent{{KindSubmission, AuthFailed}, {KindSubmission, AuthSucceeded}},
			session: SessionEvent{Kind: KindSubmission, TLSVersion: tls.VersionTLS13, Outcome: SessionNoMail},
		},
		{
			name: "AUTH over the failure budget",
			srv:  func() *Server { return &Server{Kind: KindSubmission, Authenticator: testTable(t), AuthMaxFailures: 1} },
			run: func(t *testing.T, ts *testServer) {
				d := modeDialogue(t, ts, "tls")
				d.expect(wrong, "535 5.7.8 ")
				d.expect(alice, "454 4.7.0 ")
				d.expect("QUIT", "221")
			},
			auths:    []AuthEvent{{KindSubmission, AuthFailed}},
			refusals: []RefusalEvent{{KindSubmission, RefusalAuthRateLimit}},
			session:  SessionEvent{Kind: KindSubmission, TLSVersion: tls.VersionTLS13, Outcome: SessionNoMail},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &RecordingObserver{}
			s := &Server{}
			if tc.srv != nil {
				s = tc.srv()
			}
			s.Observer = rec
			ts := startServer(t, s, pki)
			tc.run(t, ts)
			waitFor(t, "the session event", func() bool { return rec.sessions() > 0 })
			got := rec.Snapshot()
			if !slices.Equal(got.Auths, tc.auths) {
				t.Errorf("auth events = %v, want %v", got.Auths, tc.auths)
			}
			if !slices.Equal(got.Refusals, tc.refusals) {
				t.Errorf("refusal events = %v, want %v", got.Refusals, tc.refusals)
			}
			if want := []SessionEvent{tc.session}; !slices.Equal(got.Sessions, want) {
				t.Errorf("session events = %+v, want %+v", got.Sessions, want)
			}
		})
	}
}

// TestServerObserverClientLimit: a connection over MaxConnectionsPerClient
// is a refused session with its reason.
func TestServerObserverClientLimit(t *testing.T) {
	rec := &RecordingObserver{}
	ts := startServer(t, &Server{Observer: rec, MaxConnectionsPerClient: 1}, newSrvPKI(t))
	first := dial(t, ts.addr)
	first.greet()
	second := dial(t, ts.addr)
	if got := second.read(); got[:9] != "421 4.7.0" {
		t.Fatalf("second connection: %q", got)
	}
	got := rec.Snapshot()
	if want := []RefusalEvent{{KindMX, RefusalClientLimit}}; !slices.Equal(got.Refusals, want) {
		t.Errorf("refusals = %v, want %v", got.Refusals, want)
	}
	if want := []SessionEvent{{Kind: KindMX, Outcome: SessionRefused}}; !slices.Equal(got.Sessions, want) {
		t.Errorf("sessions = %+v, want %+v", got.Sessions, want)
	}
}

// The names of the enumerations are the label values of metrics: each
// value has its own.
func TestObserverEnumNames(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range []fmt.Stringer{SessionNoMail, SessionAccepted, SessionTLSFailed, SessionRefused,
		AuthSucceeded, AuthFailed, AuthTempFailed} {
		if seen[s.String()] || s.String() == "unknown" {
			t.Errorf("name %q repeated or missing", s)
		}
		seen[s.String()] = true
	}
	for _, r := range RefusalReasons() {
		if seen[r.String()] || r.String() == "unknown" {
			t.Errorf("refusal name %q repeated or missing", r)
		}
		seen[r.String()] = true
	}
	if len(RefusalReasons()) != int(RefusalAuthRateLimit)+1 {
		t.Errorf("RefusalReasons() = %v", RefusalReasons())
	}
}
