package queue

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// fixtureSpool is a spool written by the code before records carried a
// format version (see TestWriteFixtureSpool).
const fixtureSpool = "testdata/spool-v0"

// TestWriteFixtureSpool writes fixtureSpool's messages with the running
// code when MAILTLS_WRITE_SPOOL=1; it was run once, at the commit that
// added the fixture, and is kept so the fixture can be read as code.
func TestWriteFixtureSpool(t *testing.T) {
	if os.Getenv("MAILTLS_WRITE_SPOOL") != "1" {
		t.Skip("writes testdata/spool-v0; set MAILTLS_WRITE_SPOOL=1 to regenerate")
	}
	os.RemoveAll(fixtureSpool)
	st, err := OpenDirStore(fixtureSpool)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tlsIn := &transport.TLSInfo{Version: 0x0304, CipherSuite: 0x1301, CurveID: 0x11ec, ServerName: "relay.example.org", Verified: false}
	tlsOut := &transport.TLSInfo{Version: 0x0303, CipherSuite: 0xc02f, CurveID: 29, ServerName: "mx.example.net", PeerSubject: "CN=mx.example.net", Verified: true, Resumed: true}
	msgs := []*Message{
		{ID: "fixture-pending", From: "alice@example.org", ReceivedAt: at, ClientAddr: "192.0.2.1:4000", Helo: "client.example.org",
			ReceivedTLS: tlsIn, Recipients: []*Recipient{{Address: "bob@example.net", State: transport.Pending, NextAttempt: at}}},
		{ID: "fixture-deferred", From: "alice@example.org", ReceivedAt: at, RequireTLS: true, SMTPUTF8: true, BodyType: "8BITMIME",
			Recipients: []*Recipient{{Address: "carol@example.net", State: transport.Deferred, Attempts: 2, LastAttempt: at.Add(time.Minute), NextAttempt: at.Add(2 * time.Minute),
				RemoteMTA: "mx.example.net", TLS: tlsOut, Policy: "mta-sts:verify",
				LastError: &LastError{Code: 451, EnhancedCode: "4.7.5", Message: "certificate expired", RemoteMTA: "mx.example.net",
					TLSFailure: "certificate-expired", Policy: "mta-sts:verify", Local: true}}}},
		{ID: "fixture-dsn", From: "dave@example.org", ReceivedAt: at, Return: ndr.ReturnHeaders, EnvelopeID: "env+2Bid",
			Recipients: []*Recipient{{Address: "erin@example.net", Notify: ndr.NotifySuccess | ndr.NotifyFailure, ORCPT: "rfc822;erin@example.net", State: transport.Pending, NextAttempt: at}}},
		{ID: "fixture-held", From: "frank@example.org", ReceivedAt: at, Held: true, HeldAt: at.Add(time.Minute),
			Recipients: []*Recipient{{Address: "grace@example.net", State: transport.Pending, NextAttempt: at}}},
		{ID: "fixture-partial", From: "heidi@example.org", ReceivedAt: at, AuthIdentity: "heidi",
			Recipients: []*Recipient{
				{Address: "ivan@example.net", State: transport.Delivered, Attempts: 1, LastAttempt: at, RemoteMTA: "mx.example.net", TLS: tlsOut, Policy: "static:verify"},
				{Address: "judy@example.net", Notify: ndr.NotifyNever, State: transport.Deferred, Attempts: 1, LastAttempt: at, NextAttempt: at.Add(time.Minute),
					LastError: &LastError{Code: 450, EnhancedCode: "4.2.1", Message: "mailbox busy", RemoteMTA: "mx.example.net"}},
			}},
	}
	for _, m := range msgs {
		if err := st.Create(context.Background(), m, strings.NewReader("Subject: fixture "+m.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadFixtureSpool opens the format-0 spool with today's code: every
// record decodes with its TLS details, DSN parameters and errors, and the
// queue delivers what was due, once, and leaves the held message alone.
func TestReadFixtureSpool(t *testing.T) {
	dir := t.TempDir()
	files, err := os.ReadDir(fixtureSpool)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(fixtureSpool + "/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+f.Name(), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, dir: dir, clock: newClock(), fake: newFake(func(string, int) transport.RecipientResult { return ok() }), logs: &logBuffer{}}
	h.clock.t = time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC)
	h.open()

	m, err := h.store.Get(context.Background(), "fixture-deferred")
	if err != nil {
		t.Fatal(err)
	}
	r := m.Recipients[0]
	if m.Format != 0 || r.State != transport.Deferred || r.Attempts != 2 || r.TLS == nil || r.TLS.Version != 0x0303 || r.TLS.CipherSuite != 0xc02f ||
		r.TLS.CurveID != 29 || r.TLS.ServerName != "mx.example.net" || r.TLS.PeerSubject != "CN=mx.example.net" || !r.TLS.Verified || !r.TLS.Resumed ||
		r.LastError == nil || r.LastError.TLSFailure != "certificate-expired" || !r.LastError.Local || r.LastError.Reply() != "451 4.7.5 certificate expired" {
		t.Fatalf("fixture-deferred decoded as %+v, recipient %+v, TLS %+v", m, r, r.TLS)
	}
	if in, err := h.store.Get(context.Background(), "fixture-pending"); err != nil || in.ReceivedTLS == nil || in.ReceivedTLS.CurveID != 0x11ec || in.ReceivedTLS.ServerName != "relay.example.org" {
		t.Fatalf("fixture-pending: %+v, %v", in, err)
	}

	h.run()
	h.waitFor("the due recipients delivered", func() bool {
		for _, a := range []string{"bob@example.net", "carol@example.net", "erin@example.net", "judy@example.net"} {
			if _, d := h.fake.counts(a); d != 1 {
				return false
			}
		}
		return true
	})
	time.Sleep(50 * time.Millisecond) // a second attempt would come now
	h.stop()
	for addr, want := range map[string]int{"bob@example.net": 1, "carol@example.net": 1, "erin@example.net": 1, "judy@example.net": 1, "ivan@example.net": 0, "grace@example.net": 0} {
		if a, _ := h.fake.counts(addr); a != want {
			t.Errorf("%s: %d attempts, want %d", addr, a, want)
		}
	}
	h.fake.mu.Lock()
	envs := append([]*transport.Envelope(nil), h.fake.envelopes...)
	h.fake.mu.Unlock()
	var sawDSN, sawTLS bool
	for _, env := range envs {
		switch env.Recipients[0].Address {
		case "erin@example.net":
			sawDSN = true
			rc := env.Recipients[0]
			if env.Return != ndr.ReturnHeaders || env.EnvelopeID != "env+2Bid" || rc.ORCPT != "rfc822;erin@example.net" || rc.Notify != ndr.NotifySuccess|ndr.NotifyFailure {
				t.Errorf("fixture-dsn delivered with envelope %+v, recipient %+v", env, rc)
			}
		case "carol@example.net":
			sawTLS = true
			if !env.RequireTLS || !env.SMTPUTF8 || env.Body != "8BITMIME" {
				t.Errorf("fixture-deferred delivered with envelope %+v", env)
			}
		}
	}
	if !sawDSN || !sawTLS {
		t.Errorf("envelopes delivered: %d; erin's seen %v, carol's seen %v", len(envs), sawDSN, sawTLS)
	}
	held, err := h.store.Get(context.Background(), "fixture-held")
	if err != nil || !held.Held || held.Recipients[0].State != transport.Pending {
		t.Errorf("fixture-held after the run: %+v, %v", held, err)
	}
	if m, err := h.store.Get(context.Background(), "fixture-held"); err == nil {
		// A record rewritten by this code carries the current format.
		if err := h.store.Update(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if m2, err := h.store.Get(context.Background(), "fixture-held"); err != nil || m2.Format != RecordFormat {
			t.Errorf("rewritten record: format %d, %v; want %d", m2.Format, err, RecordFormat)
		}
	}
}

// A record from a newer format is refused as corrupt, not misread.
func TestNewerRecordFormatRefused(t *testing.T) {
	_, err := DecodeMessage([]byte(`{"format": 99, "id": "x1", "recipients": [{"address": "a@b", "state": "pending"}]}`))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeMessage(format 99) = %v, want ErrCorrupt", err)
	}
}
