package queue

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

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
			ReceivedTLS: tlsIn, Recipients: []*Recipient{{Address: "bob@example.net", State: Pending, NextAttempt: at}}},
		{ID: "fixture-deferred", From: "alice@example.org", ReceivedAt: at, RequireTLS: true, SMTPUTF8: true, BodyType: "8BITMIME",
			Recipients: []*Recipient{{Address: "carol@example.net", State: Deferred, Attempts: 2, LastAttempt: at.Add(time.Minute), NextAttempt: at.Add(2 * time.Minute),
				RemoteMTA: "mx.example.net", TLS: tlsOut, Policy: "mta-sts:verify",
				LastError: &LastError{Code: 451, EnhancedCode: "4.7.5", Message: "certificate expired", RemoteMTA: "mx.example.net",
					TLSFailure: "certificate-expired", Policy: "mta-sts:verify", Local: true}}}},
		{ID: "fixture-dsn", From: "dave@example.org", ReceivedAt: at, Return: "HDRS", EnvelopeID: "env+2Bid",
			Recipients: []*Recipient{{Address: "erin@example.net", Notify: []string{"SUCCESS", "FAILURE"}, ORCPT: "rfc822;erin@example.net", State: Pending, NextAttempt: at}}},
		{ID: "fixture-held", From: "frank@example.org", ReceivedAt: at, Held: true, HeldAt: at.Add(time.Minute),
			Recipients: []*Recipient{{Address: "grace@example.net", State: Pending, NextAttempt: at}}},
		{ID: "fixture-partial", From: "heidi@example.org", ReceivedAt: at, AuthIdentity: "heidi",
			Recipients: []*Recipient{
				{Address: "ivan@example.net", State: Delivered, Attempts: 1, LastAttempt: at, RemoteMTA: "mx.example.net", TLS: tlsOut, Policy: "static:verify"},
				{Address: "judy@example.net", Notify: []string{"NEVER"}, State: Deferred, Attempts: 1, LastAttempt: at, NextAttempt: at.Add(time.Minute),
					LastError: &LastError{Code: 450, EnhancedCode: "4.2.1", Message: "mailbox busy", RemoteMTA: "mx.example.net"}},
			}},
	}
	for _, m := range msgs {
		if err := st.Create(context.Background(), m, strings.NewReader("Subject: fixture "+m.ID+"\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
	}
}
