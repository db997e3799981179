package transport

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
)

// rcptChecker is a recording Handler that is also a RecipientChecker: it
// refuses recipients in example.net for clients that did not authenticate,
// and fails with an internal error for "broken@" recipients.
type rcptChecker struct {
	recorder
	mu    sync.Mutex
	calls []rcptCall
}

type rcptCall struct {
	env  Envelope
	rcpt Recipient
}

var errTestRelayDenied = &Error{Code: 554, EnhancedCode: EnhancedCode{5, 7, 1}, Message: "Relay access denied"}

func (h *rcptChecker) CheckRecipient(_ context.Context, env *Envelope, rcpt Recipient) error {
	h.mu.Lock()
	h.calls = append(h.calls, rcptCall{*env, rcpt})
	h.mu.Unlock()
	switch {
	case strings.HasPrefix(rcpt.Address, "broken@"):
		return errors.New("database on fire: secret detail")
	case strings.HasSuffix(rcpt.Address, "@example.net") && env.AuthIdentity == "":
		return errTestRelayDenied
	}
	return nil
}

var _ RecipientChecker = (*rcptChecker)(nil)

// TestRecipientChecker: a Handler that implements RecipientChecker is asked
// at RCPT with the transaction so far; its *Error is the RCPT reply as is,
// another error is 451 4.3.0 without its text; refused recipients are not
// in the Envelope given to ServeSMTP, and a transaction with none accepted
// never reaches DATA.
func TestRecipientChecker(t *testing.T) {
	h := &rcptChecker{}
	ts := startServer(t, &Server{Handler: h, Authenticator: testTable(t)}, newSrvPKI(t))
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	d.expect("MAIL FROM:<a@example.org> RET=HDRS ENVID=e1", "250 ")
	d.expect("RCPT TO:<x@example.org>", "250 ")
	d.expect("RCPT TO:<y@example.net> NOTIFY=NEVER", "554 5.7.1 Relay access denied")
	got := d.expect("RCPT TO:<broken@example.org>", "451 4.3.0 ")
	if strings.Contains(got, "fire") {
		t.Errorf("internal error text leaked: %q", got)
	}
	d.expect("RCPT TO:<z@example.org>", "250 ")
	d.expect("DATA", "354 ")
	d.send("Subject: t\r\n\r\nbody\r\n.\r\n")
	if r := d.read(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}

	// Every RCPT was refused: DATA has nothing to deliver to.
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<y@example.net>", "554 5.7.1 ")
	d.expect("DATA", "503 5.5.1 ") // RFC 5321 §4.1.4

	msgs := h.all()
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(msgs))
	}
	var rcpts []string
	for _, r := range msgs[0].env.Recipients {
		rcpts = append(rcpts, r.Address)
	}
	if strings.Join(rcpts, ",") != "x@example.org,z@example.org" {
		t.Errorf("envelope recipients %v", rcpts)
	}

	h.mu.Lock()
	calls := append([]rcptCall(nil), h.calls...)
	h.mu.Unlock()
	if len(calls) != 5 {
		t.Fatalf("%d CheckRecipient calls, want 5", len(calls))
	}
	c := calls[1] // y@example.net, after x@example.org was accepted
	if c.rcpt.Address != "y@example.net" || c.rcpt.Notify != ndr.NotifyNever {
		t.Errorf("recipient %+v", c.rcpt)
	}
	if c.env.From != "a@example.org" || c.env.Return != ndr.ReturnHeaders || c.env.EnvelopeID != "e1" ||
		c.env.Helo != "c.test" || c.env.ClientAddr == nil || c.env.TLS == nil || c.env.AuthIdentity != "" {
		t.Errorf("partial envelope %+v", c.env)
	}
	if len(c.env.Recipients) != 1 || c.env.Recipients[0].Address != "x@example.org" {
		t.Errorf("recipients so far %+v", c.env.Recipients)
	}
	if calls[3].rcpt.Address != "z@example.org" || len(calls[3].env.Recipients) != 1 {
		t.Errorf("refused recipients counted in the transaction: %+v", calls[3].env.Recipients)
	}

	// The authenticated identity is visible at RCPT: the same recipient
	// is accepted after AUTH.
	d.expect("RSET", "250 ")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
	d.expect("MAIL FROM:<alice@example.org>", "250 ")
	d.expect("RCPT TO:<y@example.net>", "250 ")
	h.mu.Lock()
	last := h.calls[len(h.calls)-1]
	h.mu.Unlock()
	if last.env.AuthIdentity != "alice" {
		t.Errorf("AuthIdentity at RCPT %q", last.env.AuthIdentity)
	}
	if !strings.Contains(ts.log.String(), "smtp recipient refused by handler") {
		t.Error("refusal not logged")
	}
}

// TestPostmasterWithoutDomain: "RCPT TO:<postmaster>" must be accepted
// (RFC 5321 §4.5.1); the Handler sees postmaster@Hostname. In plaintext and
// under TLS.
func TestPostmasterWithoutDomain(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) { testPostmasterWithoutDomain(t, mode) })
	}
}

func testPostmasterWithoutDomain(t *testing.T, mode string) {
	h := &rcptChecker{}
	ts := startServer(t, &Server{Handler: h, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
	d := modeDialogue(t, ts, mode)
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<Postmaster> NOTIFY=NEVER", "250 ")
	d.expect("rcpt to: <postmaster>", "250 ")
	d.expect("RCPT TO:<postmaster@example.org>", "250 ")
	d.expect("RCPT TO:<postmasterx>", "501 ")
	d.expect("DATA", "354 ")
	d.send("Subject: t\r\n\r\nbody\r\n.\r\n")
	if r := d.read(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	msgs := h.all()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	var got []string
	for _, r := range msgs[0].env.Recipients {
		got = append(got, r.Address+"/"+r.Notify.String())
	}
	if want := "postmaster@mx.test/NEVER,postmaster@mx.test/,postmaster@example.org/"; strings.Join(got, ",") != want {
		t.Errorf("recipients %q, want %q", strings.Join(got, ","), want)
	}
	h.mu.Lock()
	first := h.calls[0].rcpt.Address
	h.mu.Unlock()
	if first != "postmaster@mx.test" {
		t.Errorf("RecipientChecker saw %q", first)
	}
}

// TestParseForwardPath is the table of the RCPT path parser: the bare
// "<postmaster>" of RFC 5321 §4.5.1, any case, becomes postmaster@Hostname;
// other paths are taken as they are.
func TestParseForwardPath(t *testing.T) {
	for _, c := range []struct{ in, addr, rest string }{
		{"<postmaster>", "postmaster@mx.test", ""},
		{"<POSTMASTER> NOTIFY=NEVER", "postmaster@mx.test", " NOTIFY=NEVER"},
		{"  <postmaster>", "postmaster@mx.test", ""},
		{"<postmaster@example.org>", "postmaster@example.org", ""},
		{"<@relay.example:a@example.org> X", "a@example.org", " X"},
		{`<"a b"@example.org>`, "a b@example.org", ""},
		{"<postmasters>", "", ""},
		{"postmaster", "", ""},
		{"<a@>", "", ""},
		{"<@example.org>", "", ""},
		{"<a@b@example.org>", "", ""},
	} {
		addr, rest, err := parseForwardPath(c.in, "mx.test")
		if addr != c.addr || rest != c.rest || (err == nil) != (c.addr != "") {
			t.Errorf("%q: got %q %q %v; want %q %q", c.in, addr, rest, err, c.addr, c.rest)
		}
	}
}

// TestParseRcptParams is the table of the DSN parameter decoders of RCPT
// (RFC 3461 §4.1, §4.2; RFC 6533 §3 for utf-8 addresses).
func TestParseRcptParams(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // "" for an error
	}{
		{"NEVER", "NEVER"},
		{"success,Failure,DELAY", "SUCCESS,FAILURE,DELAY"},
		{"NEVER,SUCCESS", ""},
		{"FAILURE,FAILURE", ""},
		{"", ""},
		{"SOMETIMES", ""},
	} {
		got, err := parseNotify(c.in)
		if got.String() != c.want || (err == nil) != (c.want != "") {
			t.Errorf("NOTIFY=%s: %q %v, want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"rfc822;a+2Bb@example.net", "rfc822;a+b@example.net"},
		{"RFC822;a@example.net", "rfc822;a@example.net"},
		{"rfc822;a+2b@example.net", ""}, // lower-case hex
		{"rfc822;a+2@example.net", ""},
		{"rfc822;ü@example.net", ""}, // rfc822 is ASCII
		{"utf-8;\\x{FC}@example.net", "utf-8;ü@example.net"},
		{"utf-8;ü@example.net", "utf-8;ü@example.net"},
		{"utf-8;\\x{41}@example.net", ""},  // "A" needs no escape
		{"utf-8;\\x{0FC}@example.net", ""}, // not the shortest form
		{"utf-8;\\x{D800}@example.net", ""},
		{"utf-8;a b@example.net", ""},
		{"utf-8;a=b@example.net", ""},
		{"x400;a@example.net", ""},
		{"rfc822;", ""},
		{"a@example.net", ""},
	} {
		got, err := parseORCPT(c.in)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("ORCPT=%s: %q %v, want %q", c.in, got, err, c.want)
		}
	}
}
