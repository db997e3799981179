package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/transport"
)

// recordingQueue is an Enqueuer that records what it stores, or fails.
type recordingQueue struct {
	fail   error
	stored []*transport.Envelope
}

func (q *recordingQueue) Enqueue(_ context.Context, env *transport.Envelope, body io.Reader) (string, error) {
	if q.fail != nil {
		return "", q.fail
	}
	q.stored = append(q.stored, env)
	return "Q1", nil
}

type senderFunc func(*transport.Envelope) error

func (f senderFunc) CheckSender(_ context.Context, env *transport.Envelope) error { return f(env) }

func relayHandler(q *recordingQueue) *transport.RelayHandler {
	local := func(d string) bool { return d == "example.org" || d == "relay.test" }
	rcpts := transport.NewLocalRecipients(local)
	rcpts.Add("alice")
	return &transport.RelayHandler{Queue: q, LocalDomain: local, Recipients: rcpts,
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
}

// TestRelayHandlerRecipients: local recipients are checked against the
// table, remote ones are relayed only for logins and relay networks, and
// nothing else is an open relay (Postfix's permit_mynetworks,
// permit_sasl_authenticated, reject_unauth_destination).
func TestRelayHandlerRecipients(t *testing.T) {
	stranger := &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40000}
	trusted := &net.TCPAddr{IP: net.ParseIP("192.0.2.9"), Port: 40000}
	for _, tc := range []struct {
		name   string
		env    transport.Envelope
		rcpt   string
		code   int
		enh    string
		reason error
	}{
		{"local known", transport.Envelope{ClientAddr: stranger}, "Alice@Example.org", 0, "", nil},
		{"bare postmaster", transport.Envelope{ClientAddr: stranger}, "postmaster", 0, "", nil},
		{"local unknown", transport.Envelope{ClientAddr: stranger}, "bob@example.org", 550, "5.1.1", nil},
		{"remote from a stranger", transport.Envelope{ClientAddr: stranger}, "x@elsewhere.example", 554, "5.7.1", transport.ErrRelayDenied},
		{"remote without a client address", transport.Envelope{}, "x@elsewhere.example", 554, "5.7.1", transport.ErrRelayDenied},
		{"remote from a relay network", transport.Envelope{ClientAddr: trusted}, "x@elsewhere.example", 0, "", nil},
		{"remote from a login", transport.Envelope{ClientAddr: stranger, AuthIdentity: "alice"}, "x@elsewhere.example", 0, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &recordingQueue{}
			h := relayHandler(q)
			err := h.CheckRecipient(context.Background(), &tc.env, transport.Recipient{Address: tc.rcpt})
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("CheckRecipient = %v, want accepted", err)
				}
			} else {
				var te *transport.Error
				if !errors.As(err, &te) || te.Code != tc.code || te.EnhancedCode.String() != tc.enh {
					t.Fatalf("CheckRecipient = %v, want %d %s", err, tc.code, tc.enh)
				}
				if tc.reason != nil && !errors.Is(err, tc.reason) {
					t.Fatalf("CheckRecipient = %v, want %v", err, tc.reason)
				}
			}
			// ServeSMTP repeats the relay check: a Handler safe on its own.
			env := tc.env
			env.Recipients = []transport.Recipient{{Address: tc.rcpt}}
			err = h.ServeSMTP(context.Background(), &env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			if tc.reason != nil {
				if !errors.Is(err, tc.reason) || len(q.stored) != 0 {
					t.Fatalf("ServeSMTP = %v with %d stored, want %v and nothing stored", err, len(q.stored), tc.reason)
				}
			} else if tc.code == 0 && (err != nil || len(q.stored) != 1) {
				t.Fatalf("ServeSMTP = %v with %d stored, want stored", err, len(q.stored))
			}
		})
	}
}

// A message the queue cannot store is not accepted: ServeSMTP fails (the
// Server answers 4xx and the client retries), and a Handler without a
// queue refuses every recipient with 451 4.3.0.
func TestRelayHandlerQueueFailure(t *testing.T) {
	q := &recordingQueue{fail: errors.New("disk full")}
	h := relayHandler(q)
	env := &transport.Envelope{ID: "M1", From: "a@example.org", Recipients: []transport.Recipient{{Address: "alice@example.org"}}}
	if err := h.ServeSMTP(context.Background(), env, strings.NewReader("x\r\n")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("ServeSMTP = %v, want the queue's error", err)
	}
	h.Queue = nil
	err := h.CheckRecipient(context.Background(), env, env.Recipients[0])
	var te *transport.Error
	if !errors.As(err, &te) || te.Code != 451 || te.EnhancedCode.String() != "4.3.0" {
		t.Fatalf("CheckRecipient without a queue = %v, want 451 4.3.0", err)
	}
}

// The sender checks run in order and the first refusal is the reply: a
// full spool refuses everybody before the login check (as Postfix checks
// queue_minfree before its sender restrictions).
func TestRelayHandlerSenderCheckers(t *testing.T) {
	var calls []string
	full := errors.New("full")
	check := func(name string, err error) transport.SenderChecker {
		return senderFunc(func(*transport.Envelope) error { calls = append(calls, name); return err })
	}
	h := relayHandler(&recordingQueue{})
	h.SenderCheckers = []transport.SenderChecker{check("space", full), check("logins", nil)}
	if err := h.CheckSender(context.Background(), &transport.Envelope{From: "a@example.org"}); !errors.Is(err, full) {
		t.Fatalf("CheckSender = %v, want the first checker's error", err)
	}
	if strings.Join(calls, ",") != "space" {
		t.Fatalf("checkers called: %v, want only the first", calls)
	}
	calls = nil
	h.SenderCheckers = []transport.SenderChecker{check("space", nil), check("logins", nil)}
	if err := h.CheckSender(context.Background(), &transport.Envelope{From: "a@example.org"}); err != nil || len(calls) != 2 {
		t.Fatalf("CheckSender = %v after %v, want both asked and accepted", err, calls)
	}
}

func TestLocalSenderLogins(t *testing.T) {
	m, err := transport.LocalSenderLogins([]string{"alice", "Alice", "carol@elsewhere.example", "we ird"}, []string{"Relay.Test", "example.org", "relay.test."})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		login, from string
		ok          bool
	}{
		{"alice", "alice@example.org", true},
		{"alice", "ALICE@relay.test", true},
		{"Alice", "alice@example.org", true},
		{"alice", "alice@other.example", false},
		{"alice", "bob@example.org", false},
		{"alice", "", true},
		{"carol@elsewhere.example", "carol@elsewhere.example", true},
		{"carol@elsewhere.example", "carol@example.org", false},
		{"we ird", "we ird@example.org", false},
	} {
		if got := m.Owns(tc.login, tc.from); got != tc.ok {
			t.Errorf("%q owns %q = %v, want %v", tc.login, tc.from, got, tc.ok)
		}
	}
}
