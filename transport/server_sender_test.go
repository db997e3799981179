package transport

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mailtls/mailtls/ndr"
)

// senderChecker is a recording Handler that is also a SenderChecker: it
// refuses "spoof@" senders with an *Error, fails with an internal error for
// "broken@" senders, and records the Envelope of every call.
type senderChecker struct {
	recorder
	mu    sync.Mutex
	calls []Envelope
}

func (h *senderChecker) CheckSender(_ context.Context, env *Envelope) error {
	h.mu.Lock()
	h.calls = append(h.calls, *env)
	h.mu.Unlock()
	switch {
	case strings.HasPrefix(env.From, "spoof@"):
		return &Error{Code: 553, EnhancedCode: EnhancedCode{5, 7, 1}, Message: "<" + env.From + ">: Sender address rejected: not owned by user " + env.AuthIdentity}
	case strings.HasPrefix(env.From, "broken@"):
		return errors.New("disk probe on fire: secret detail")
	}
	return nil
}

func (h *senderChecker) lastCall(t *testing.T) Envelope {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) == 0 {
		t.Fatal("CheckSender never called")
	}
	return h.calls[len(h.calls)-1]
}

var _ SenderChecker = (*senderChecker)(nil)

// TestSenderChecker: a Handler that implements SenderChecker is asked at
// MAIL with the reverse-path, its parameters and the session's facts; its
// *Error is the MAIL reply as is, another error is 451 4.3.0 without its
// text, and a refused MAIL starts no transaction (RCPT then gets 503
// 5.5.1, RFC 5321 §4.1.4). The
// Server's own checks come first: a submission client that did not
// authenticate gets 530 without the Handler being asked.
func TestSenderChecker(t *testing.T) {
	h := &senderChecker{}
	ts := startServer(t, &Server{Kind: KindSubmission, Handler: h, Authenticator: testTable(t)}, newSrvPKI(t))
	d := tlsSessionFrom(t, ts, "127.0.0.1")
	d.expect("MAIL FROM:<spoof@example.org>", "530 5.7.0 Authentication required")
	h.mu.Lock()
	n := len(h.calls)
	h.mu.Unlock()
	if n != 0 {
		t.Fatalf("CheckSender called %d times before the Server's own checks passed", n)
	}
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")

	d.expect("MAIL FROM:<spoof@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=e1 SMTPUTF8",
		"553 5.7.1 <spoof@example.org>: Sender address rejected: not owned by user alice")
	c := h.lastCall(t)
	if c.From != "spoof@example.org" || c.Size != 1234 || c.Body != "8BITMIME" || c.Return != ndr.ReturnHeaders ||
		c.EnvelopeID != "e1" || !c.SMTPUTF8 || c.AuthIdentity != "alice" || c.Helo != "c.test" ||
		c.ClientAddr == nil || c.TLS == nil || len(c.Recipients) != 0 {
		t.Errorf("envelope at MAIL %+v", c)
	}
	d.expect("RCPT TO:<r@example.net>", "503 5.5.1 Missing MAIL FROM") // no transaction was started

	got := d.expect("MAIL FROM:<broken@example.org>", "451 4.3.0 ")
	if strings.Contains(got, "fire") {
		t.Errorf("internal error text leaked: %q", got)
	}
	d.expect("RCPT TO:<r@example.net>", "503 5.5.1 Missing MAIL FROM")

	d.expect("MAIL FROM:<alice@example.org> REQUIRETLS", "250 ")
	if c := h.lastCall(t); c.From != "alice@example.org" || !c.RequireTLS {
		t.Errorf("envelope at MAIL %+v", c)
	}
	d.expect("RCPT TO:<r@example.net>", "250 ")
	d.expect("DATA", "354 ")
	d.send("Subject: t\r\n\r\nbody\r\n.\r\n")
	if r := d.read(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	if msgs := h.all(); len(msgs) != 1 || msgs[0].env.From != "alice@example.org" {
		t.Fatalf("deliveries %+v", msgs)
	}
	if !strings.Contains(ts.log.String(), "smtp sender refused by handler") {
		t.Error("refusal not logged")
	}
}
