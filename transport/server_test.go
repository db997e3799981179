package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
)

// TestPlaintextRefusedBeforeSTARTTLS: with the zero Inbound policy, only
// EHLO/HELO/STARTTLS/NOOP/RSET/QUIT are accepted before TLS (RFC 3207 §4);
// AUTH gets 538 5.7.11 (RFC 4954 §6); a refused BDAT's chunk is consumed.
func TestPlaintextRefusedBeforeSTARTTLS(t *testing.T) {
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{}, pki)
	d := dial(t, ts.addr)
	ehlo := d.greet()
	if !strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO reply lacks STARTTLS: %q", ehlo)
	}
	for _, no := range []string{"AUTH", "REQUIRETLS"} {
		if strings.Contains(ehlo, no) {
			t.Errorf("plaintext EHLO reply advertises %s: %q", no, ehlo)
		}
	}
	for _, step := range []struct{ cmd, want string }{
		{"NOOP", "250 "},
		{"RSET", "250 "},
		{"MAIL FROM:<a@example.org>", "530 5.7.0 Must issue a STARTTLS command first"},
		{"mail from:<a@example.org>", "530 5.7.0 Must issue a STARTTLS command first"},
		{"RCPT TO:<b@example.org>", "530 5.7.0 "},
		{"DATA", "530 5.7.0 "},
		{"VRFY postmaster", "530 5.7.0 "},
		{"HELP", "530 5.7.0 "},
		{"AUTH PLAIN AGZvbwBiYXI=", "538 5.7.11 Encryption required for requested authentication mechanism"},
		{"BDAT 15 LAST\r\nMAIL FROM:<x>", "530 5.7.0 "}, // the 15-byte chunk "MAIL FROM:<x>\r\n" is discarded
		{"NOOP", "250 "},
		{"HELO client.test", "250 "},
		{"QUIT", "221 "},
	} {
		d.expect(step.cmd, step.want)
	}
	if n := len(ts.rec.all()); n != 0 {
		t.Fatalf("handler got %d messages", n)
	}
}

// TestSTARTTLSBeforeEHLO: STARTTLS is learnt from EHLO (RFC 3207 §4).
func TestSTARTTLSBeforeEHLO(t *testing.T) {
	ts := startServer(t, &Server{}, newSrvPKI(t))
	d := dial(t, ts.addr)
	d.read()
	d.expect("STARTTLS", "503 5.5.1")
	d.expect("EHLO c.test", "250")
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
}

// TestSTARTTLSInjection is the CVE-2011-0411 test: a command pipelined in
// the same packet as STARTTLS is discarded, not executed inside TLS, and the
// EHLO state from before TLS is forgotten (RFC 3207 §4.2).
func TestSTARTTLSInjection(t *testing.T) {
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{}, pki)
	d := dial(t, ts.addr)
	d.greet()
	d.send("STARTTLS\r\nMAIL FROM:<evil@x>\r\n") // one write
	if r := d.read(); !strings.HasPrefix(r, "220 ") {
		t.Fatalf("STARTTLS: %q", r)
	}
	tc := tls.Client(d.conn, pki.clientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	d.conn, d.r = tc, bufio.NewReader(tc)
	// No MAIL is in effect: the injected one was never executed, and the
	// sequence error is 503 (RFC 5321 §4.1.4).
	d.expect("RCPT TO:<victim@example.org>", "503 5.5.1 Missing MAIL FROM")
	// Nor is the pre-TLS EHLO: MAIL before a new EHLO is refused.
	d.expect("MAIL FROM:<a@example.org>", "503 5.5.1 Please introduce yourself first")
	ehlo := d.expect("EHLO client.test", "250")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO under TLS: %q", ehlo)
	}
	d.expect("RCPT TO:<victim@example.org>", "503 5.5.1 Missing MAIL FROM")
	if got := d.sendMessage("good@example.org", "rcpt@example.org", "Subject: ok\r\nTLS-Required: No\r\n\r\nhi\r\n"); !strings.HasPrefix(got, "250 2.0.0") {
		t.Fatalf("DATA: %q", got)
	}
	msgs := ts.rec.all()
	if len(msgs) != 1 || msgs[0].env.From != "good@example.org" || !msgs[0].env.TLSRequiredNo {
		t.Fatalf("deliveries: %+v", msgs)
	}
	logs := ts.log.String()
	if strings.Contains(logs, "evil") {
		t.Errorf("injected command reached the session: %s", logs)
	}
	if !strings.Contains(logs, "discarded bytes pipelined after STARTTLS") || !strings.Contains(logs, "bytes=20") {
		t.Errorf("discard not logged with its size: %s", logs)
	}
}

// TestDeliveryOverSTARTTLS sends through go-smtp's client with DSN, SMTPUTF8,
// SIZE and REQUIRETLS parameters and checks the Envelope and the Received
// header.
func TestDeliveryOverSTARTTLS(t *testing.T) {
	pki := newSrvPKI(t)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ts := startServer(t, &Server{Now: func() time.Time { return now }}, pki)
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO client.test", "250")
	d.expect("MAIL FROM:<s@example.org> RET=HDRS ENVID=QQ+2BID+3D1 SMTPUTF8 BODY=8BITMIME SIZE=100 REQUIRETLS", "250 ")
	d.expect("RCPT TO:<r1@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1+2Balias@example.net", "250 ")
	d.expect("RCPT TO:<r2@example.net> NOTIFY=NEVER", "250 ")
	d.expect("RCPT TO:<r3@example.net>", "250 ")
	d.expect("DATA", "354 ")
	d.send("Subject: hi\r\nTLS-Required: No\r\n\r\n..dot-stuffed\r\nbody\r\n.\r\n") // ignored: REQUIRETLS wins (RFC 8689 §3)
	final := d.read()
	if !strings.HasPrefix(final, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("DATA reply %q", final)
	}
	msgs := ts.rec.all()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages", len(msgs))
	}
	env, body := msgs[0].env, msgs[0].body
	if !strings.HasSuffix(final, env.ID) {
		t.Errorf("reply %q does not name id %s", final, env.ID)
	}
	if env.From != "s@example.org" || env.Return != ndr.ReturnHeaders || env.EnvelopeID != "QQ+ID=1" || !env.SMTPUTF8 ||
		env.Body != "8BITMIME" || env.Size != 100 || !env.RequireTLS || env.TLSRequiredNo || env.Helo != "client.test" {
		t.Errorf("envelope %+v", env)
	}
	if len(env.Recipients) != 3 {
		t.Fatalf("recipients %+v", env.Recipients)
	}
	r1, r2, r3 := env.Recipients[0], env.Recipients[1], env.Recipients[2]
	if r1.Address != "r1@example.net" || r1.Notify.String() != "SUCCESS,FAILURE" || r1.ORCPT != "rfc822;r1+alias@example.net" {
		t.Errorf("r1 %+v", r1)
	}
	if r2.Notify.String() != "NEVER" || r3.Notify != 0 || r3.ORCPT != "" {
		t.Errorf("r2 %+v r3 %+v", r2, r3)
	}
	if env.TLS == nil || env.TLS.Version != tls.VersionTLS13 || env.TLS.ServerName != "mx.test" {
		t.Fatalf("TLS %+v", env.TLS)
	}
	if !env.ReceivedAt.Equal(now) {
		t.Errorf("ReceivedAt %v", env.ReceivedAt)
	}
	wantHdr := "Received: from client.test ([127.0.0.1])\r\n\t(" + env.TLS.String() + ")\r\n\tby mx.test (mailtls) with UTF8SMTPS id " +
		env.ID + ";\r\n\tFri, 27 Nov 2026 12:00:00 +0000\r\n"
	if !strings.HasPrefix(body, wantHdr) {
		t.Errorf("body starts %q\nwant %q", body[:min(len(body), 300)], wantHdr)
	}
	if !strings.Contains(body, "(using TLSv1.3 with cipher TLS_") || !strings.HasSuffix(body, "Subject: hi\r\nTLS-Required: No\r\n\r\n.dot-stuffed\r\nbody\r\n") {
		t.Errorf("body %q", body)
	}
	logs := ts.log.String()
	if !strings.Contains(logs, "msg=\"smtp tls handshake\"") || !strings.Contains(logs, "result=ok") || !strings.Contains(logs, "tls_version=TLSv1.3") {
		t.Errorf("handshake not logged: %s", logs)
	}
}

// TestPlaintextAllowed: InsecureAllowPlaintext accepts mail without TLS, but
// never MAIL ... REQUIRETLS (RFC 8689), which is not advertised there.
func TestPlaintextAllowed(t *testing.T) {
	ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
	d := dial(t, ts.addr)
	if ehlo := d.greet(); strings.Contains(ehlo, "REQUIRETLS") || strings.Contains(ehlo, "AUTH") {
		t.Errorf("plaintext EHLO: %q", ehlo)
	}
	d.expect("MAIL FROM:<s@example.org> REQUIRETLS", "530 5.7.10 ")
	d.expect("AUTH LOGIN", "538 5.7.11 ")
	// A body line that looks like a command must not be filtered.
	got := d.sendMessage("s@example.org", "r@example.net", "Subject: x\r\n\r\nAUTH PLAIN\r\nSTARTTLS\r\n")
	if !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA: %q", got)
	}
	// BDAT in plaintext: chunk bytes pass unfiltered.
	d.expect("MAIL FROM:<s@example.org>", "250 ")
	d.expect("RCPT TO:<r@example.net>", "250 ")
	d.expect("BDAT 10\r\nSTARTTLS", "250 ")
	d.expect("BDAT 6 LAST\r\nAUTH", "250 2.0.0 Ok")
	d.expect("NOOP", "250 ")
	msgs := ts.rec.all()
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	if msgs[0].env.TLS != nil || !strings.Contains(msgs[0].body, "with ESMTP id") || strings.Contains(msgs[0].body, "ESMTPS") {
		t.Errorf("plaintext message: %+v %q", msgs[0].env, msgs[0].body)
	}
	if !strings.HasSuffix(msgs[1].body, "+0000\r\nSTARTTLS\r\nAUTH\r\n") {
		t.Errorf("BDAT body %q", msgs[1].body)
	}
}

// TestHandlerErrors: an *Error goes out as is; anything else is 451 4.3.0
// without its text; a Handler that stops reading early still gets a clean
// 250 only when the body ended properly.
func TestHandlerErrors(t *testing.T) {
	var mode string
	h := HandlerFunc(func(ctx context.Context, env *Envelope, body io.Reader) error {
		switch mode {
		case "smtp":
			io.Copy(io.Discard, body)
			return &Error{Code: 550, EnhancedCode: EnhancedCode{5, 7, 1}, Message: "Relaying denied"}
		case "wrapped":
			io.Copy(io.Discard, body)
			return errors.Join(errors.New("context"), &Error{Code: 452, EnhancedCode: EnhancedCode{4, 3, 1}, Message: "Spool full"})
		case "internal":
			return errors.New("open /var/spool/secret: no space left on device")
		case "bad-code":
			return &Error{Code: 250, Message: "not an error code"}
		}
		return nil // "early": returns without reading
	})
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{Handler: h}, pki)
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	for _, c := range []struct{ mode, want string }{
		{"smtp", "550 5.7.1 Relaying denied"},
		{"wrapped", "452 4.3.1 Spool full"},
		{"internal", "451 4.3.0 Local error in processing, try again later"},
		{"bad-code", "451 4.3.0 "},
		{"early", "250 2.0.0 "},
	} {
		mode = c.mode
		got := d.sendMessage("s@example.org", "r@example.net", "Subject: x\r\n\r\n"+strings.Repeat("line\r\n", 2000))
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: got %q want %q", c.mode, got, c.want)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("%s: internal error text leaked: %q", c.mode, got)
		}
	}
	if !strings.Contains(ts.log.String(), "no space left on device") {
		t.Error("internal error not logged")
	}
}

// TestBDATUnderTLS: CHUNKING (RFC 3030) delivers the chunks in order; RSET
// in the middle of a transfer aborts it, the Handler sees a read error and
// nothing is accepted.
func TestBDATUnderTLS(t *testing.T) {
	var handlerErrs []error
	var mu sync.Mutex
	rec := &recorder{}
	h := HandlerFunc(func(ctx context.Context, env *Envelope, body io.Reader) error {
		err := rec.ServeSMTP(ctx, env, body)
		mu.Lock()
		handlerErrs = append(handlerErrs, err)
		mu.Unlock()
		return err
	})
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{Handler: h}, pki)
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	d.expect("MAIL FROM:<a@example.org> BODY=8BITMIME", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	bdat := func(cmd, chunk, want string) {
		t.Helper()
		d.send(cmd + "\r\n" + chunk)
		if got := d.read(); !strings.HasPrefix(got, want) {
			t.Fatalf("%s: %q, want %q", cmd, got, want)
		}
	}
	bdat("BDAT 13", "Subject: x\r\n\r", "250 ")
	bdat("BDAT 8 LAST", "\n.body\r\n", "250 2.0.0 Ok: queued")
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	bdat("BDAT 5", "abcde", "250 ")
	d.expect("RSET", "250 ")
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	msgs := rec.all()
	if len(msgs) != 1 || !strings.HasSuffix(msgs[0].body, "+0000\r\nSubject: x\r\n\r\n.body\r\n") || msgs[0].env.Body != "8BITMIME" {
		t.Fatalf("messages %+v", msgs)
	}
	waitFor(t, "aborted handler", func() bool { mu.Lock(); defer mu.Unlock(); return len(handlerErrs) == 2 })
	if handlerErrs[1] == nil {
		t.Error("handler read an aborted BDAT transfer without error")
	}
}

// TestBadSequence: a command out of order gets 503 5.5.1 (RFC 5321 §4.1.4,
// §4.2.2 "503 Bad sequence of commands"), in plaintext and after STARTTLS.
func TestBadSequence(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			d := dial(t, ts.addr)
			d.read()
			if mode == "tls" {
				d.expect("EHLO c.test", "250")
				if err := d.startTLS(ts.pki.clientConfig()); err != nil {
					t.Fatal(err)
				}
			}
			d.expect("MAIL FROM:<a@example.org>", "503 5.5.1 ") // before EHLO
			d.expect("EHLO c.test", "250")
			d.expect("RCPT TO:<b@example.net>", "503 5.5.1 ")
			d.expect("DATA", "503 5.5.1 ")
			d.expect("BDAT 5 LAST\r\nabc", "503 5.5.1 ") // the chunk "abc\r\n" is read and dropped
			d.expect("MAIL FROM:<a@example.org>", "250 ")
			d.expect("MAIL FROM:<a@example.org>", "503 5.5.1 ") // nested
			d.expect("DATA", "503 5.5.1 ")                      // no recipient
			d.expect("RCPT TO:<b@example.net>", "250 ")
			d.expect("BDAT 4\r\nab", "250 ")
			d.expect("MAIL FROM:<a@example.org>", "503 5.5.1 ") // during a BDAT transfer
			d.expect("DATA", "503 5.5.1 ")
			d.expect("BDAT 3 LAST\r\nc", "250 2.0.0 Ok: queued")
			d.expect("QUIT", "221 ")
		})
	}
}
