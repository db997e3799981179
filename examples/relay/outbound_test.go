package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// countingTXT is an MTA-STS resolver that has no records and counts the
// questions it gets.
type countingTXT struct{ n atomic.Int32 }

func (c *countingTXT) LookupTXT(_ context.Context, name string) ([]string, error) {
	c.n.Add(1)
	return nil, notFound(name)
}

// A fixed route keeps the table's policy for its domain (the fallback
// "[host]:port" → route domain → -default-tls) with published policies
// enabled, without asking MTA-STS about it; a server without STARTTLS
// under "encrypt on-failure=bounce" gets no envelope, and the DSN gives
// the failure as this relay's finding (Diagnostic-Code X-mailtls, RFC 3464
// §2.3.6), with Remote-MTA because the relay did connect to it.
func TestRouteTablePolicyAndLocalDiagnostic(t *testing.T) {
	legacy := transporttest.NewPlainServer(t)
	pol := writeFile(t, "tls_policy", "legacy.example encrypt on-failure=bounce\n")
	users := writeUsers(t, "alice", "s3cret")
	txt := &countingTXT{}
	tr := startRelayWith(t, func(r *Relay) { r.mtasts.Resolver = txt },
		"-users", users, "-mta-sts", "-default-tls", "verify",
		"-route", "legacy.example=127.0.0.1:"+fmt.Sprint(legacy.Port), "-policy", pol)

	c := tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "alice@localhost", []string{"old@legacy.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DSN in alice's Maildir", 30*time.Second, func() bool {
		return len(maildirFiles(t, tr.cfg, "alice@localhost", "new")) == 1
	})
	raw, err := os.ReadFile(maildirFiles(t, tr.cfg, "alice@localhost", "new")[0])
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ndr.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN does not parse: %v", err)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("DSN recipients %+v", rep.Recipients)
	}
	rr := rep.Recipients[0]
	// encrypt from the table (not -default-tls verify, which would have
	// failed differently), bounced at once (5.7.4, one attempt).
	if rr.Action != ndr.ActionFailed || rr.Status != "5.7.4" || rr.RemoteMTA != "127.0.0.1" ||
		rr.DiagnosticType != queue.LocalDiagnosticType || !strings.Contains(rr.DiagnosticCode, "did not offer STARTTLS") {
		t.Fatalf("DSN recipient group %+v", rr)
	}
	if err := contains(string(raw), "Diagnostic-Code: X-mailtls; TLS is required", "Found by this mail system:"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "Server reply") || strings.Contains(string(raw), "smtp; ") {
		t.Fatalf("the DSN presents the relay's finding as a server reply:\n%s", raw)
	}
	if !transporttest.Contains(legacy.Seen(), "EHLO relay.test") || transporttest.Contains(legacy.Seen(), "MAIL FROM") {
		t.Fatalf("wire seen by the plaintext server:\n%s", legacy.Seen())
	}
	if err := contains(tr.logs.String(), "policy=encrypt/static"); err != nil {
		t.Fatal(err)
	}
	if n := txt.n.Load(); n != 0 {
		t.Fatalf("MTA-STS was asked %d times about a fixed next hop", n)
	}
}
