package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// tlsDialogue opens a connection, does STARTTLS and EHLO.
func tlsDialogue(t *testing.T, ts *testServer) *dialogue {
	t.Helper()
	d := dial(t, ts.addr)
	d.greet()
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	return d
}

// TestSizeAndRecipientLimits: SIZE is advertised; a declared or actual
// size over MaxMessageBytes gets 552 5.3.4 (RFC 1870), the handler sees a
// read error and nothing is accepted; the 3rd recipient over a limit of 2
// gets 452 4.5.3 (RFC 5321 §4.5.3.1.10); an over-long line closes with 500.
func TestSizeAndRecipientLimits(t *testing.T) {
	var handlerErr error
	h := HandlerFunc(func(_ context.Context, _ *Envelope, body io.Reader) error {
		_, handlerErr = io.Copy(io.Discard, body)
		return handlerErr
	})
	ts := startServer(t, &Server{Handler: h, MaxMessageBytes: 1000, MaxRecipients: 2, MaxLineLength: 200}, newSrvPKI(t))
	d := tlsDialogue(t, ts)
	d.expect("MAIL FROM:<a@example.org> SIZE=1001", "552 5.3.4 ")
	d.expect("MAIL FROM:<a@example.org> SIZE=1000", "250 ")
	d.expect("RCPT TO:<1@example.net>", "250 ")
	d.expect("RCPT TO:<2@example.net>", "250 ")
	d.expect("RCPT TO:<3@example.net>", "452 4.5.3 ")
	d.expect("DATA", "354 ")
	d.send(strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", 40) + ".\r\n")
	if got := d.read(); !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Fatalf("oversized DATA: %q", got)
	}
	if handlerErr == nil {
		t.Error("handler read the oversized body without error")
	}
	// BDAT over the limit.
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<1@example.net>", "250 ")
	chunk := strings.Repeat(strings.Repeat("x", 98)+"\r\n", 6)
	d.send("BDAT 600\r\n" + chunk)
	if got := d.read(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("BDAT: %q", got)
	}
	d.send("BDAT 600 LAST\r\n" + chunk)
	if got := d.read(); !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Fatalf("BDAT over the limit: %q", got)
	}
	// Line length.
	d.send("NOOP " + strings.Repeat("x", 300) + "\r\n")
	if got, _ := d.tryRead(); !strings.HasPrefix(got, "500 5.4.0 ") {
		t.Errorf("long line: %q", got)
	}
	ehlo := tlsDialogue(t, ts).cmd("EHLO again.test")
	if !strings.Contains(ehlo, "SIZE 1000") || !strings.Contains(ehlo, "LIMITS RCPTMAX=2") || !strings.Contains(ehlo, "CHUNKING") {
		t.Errorf("EHLO %q", ehlo)
	}
}

// TestCommandTimeout: an idle client gets 421 after Timeouts.Command.
func TestCommandTimeout(t *testing.T) {
	ts := startServer(t, &Server{Timeouts: ServerTimeouts{Command: 150 * time.Millisecond}}, newSrvPKI(t))
	d := dial(t, ts.addr)
	d.greet()
	start := time.Now()
	if got := d.read(); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("got %q", got)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 3*time.Second {
		t.Errorf("timeout after %v", el)
	}
	// Also under TLS.
	d2 := tlsDialogue(t, ts)
	if got := d2.read(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Fatalf("TLS idle: %q", got)
	}
}

// TestDataReadTimeout: a client that stalls in the middle of DATA is cut off
// after Timeouts.Read of silence, while one that keeps sending slowly is not
// (the timeout is per read, not per transfer).
func TestDataReadTimeout(t *testing.T) {
	rec := &recorder{}
	ts := startServer(t, &Server{Handler: rec, Timeouts: ServerTimeouts{Read: 400 * time.Millisecond, Command: 5 * time.Second}}, newSrvPKI(t))
	d := tlsDialogue(t, ts)
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	d.expect("DATA", "354 ")
	for i := 0; i < 6; i++ { // 6 × 150ms > Timeouts.Read, but no single gap exceeds it
		d.send(fmt.Sprintf("line %d\r\n", i))
		time.Sleep(150 * time.Millisecond)
	}
	d.send(".\r\n")
	if got := d.read(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("slow DATA: %q", got)
	}
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	d.expect("DATA", "354 ")
	d.send("partial\r\n")
	got, err := d.tryRead()
	if err == nil && !strings.HasPrefix(got, "4") {
		t.Fatalf("stalled DATA: %q", got)
	}
	if n := len(rec.all()); n != 1 {
		t.Errorf("%d messages accepted, want 1", n)
	}
}

// TestMaxConnections: the connection over the cap, when every connection
// is making progress (their clients had a reply to EHLO just now), gets 421
// 4.7.0 and is closed; once one closes, a new one is served.
func TestMaxConnections(t *testing.T) {
	ts := startServer(t, &Server{MaxConnections: 2}, newSrvPKI(t))
	d1, d2 := dial(t, ts.addr), dial(t, ts.addr)
	d1.greet()
	d2.greet()
	d3 := dial(t, ts.addr)
	if got := d3.read(); !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Fatalf("3rd connection: %q", got)
	}
	if _, err := d3.tryRead(); err == nil {
		t.Error("3rd connection not closed")
	}
	d1.expect("QUIT", "221 ")
	d1.conn.Close()
	waitFor(t, "slot freed", func() bool { return ts.active.Load() == 1 })
	if got := dial(t, ts.addr).read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("after close: %q", got)
	}
}

// TestShutdownDrains: Shutdown closes the listener, sends 421 to idle
// connections, lets a transaction in progress finish with its 250, and
// returns nil once all are done.
func TestShutdownDrains(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, _ *Envelope, body io.Reader) error {
		io.Copy(io.Discard, body)
		close(entered)
		<-release
		return nil
	})
	ts := startServer(t, &Server{Handler: h}, newSrvPKI(t))
	busy := tlsDialogue(t, ts)
	idleTLS := tlsDialogue(t, ts)
	idlePlain := dial(t, ts.addr)
	idlePlain.greet()
	busy.expect("MAIL FROM:<a@example.org>", "250 ")
	busy.expect("RCPT TO:<b@example.net>", "250 ")
	busy.expect("DATA", "354 ")
	busy.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	<-entered

	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(context.Background()) }()
	if got := idleTLS.read(); !strings.HasPrefix(got, "421 ") {
		t.Errorf("idle TLS connection: %q", got)
	}
	if got := idlePlain.read(); !strings.HasPrefix(got, "421 4.3.2 ") {
		t.Errorf("idle plaintext connection: %q", got)
	}
	waitFor(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transaction in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if got := busy.read(); !strings.HasPrefix(got, "250 2.0.0 ") {
		t.Fatalf("transaction in progress: %q", got)
	}
	// After its reply the connection is closed at the next command.
	if got, _ := busy.tryRead(); got != "" && !strings.HasPrefix(got, "421") {
		t.Errorf("after drain: %q", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := <-ts.err; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
}

// TestShutdownDeadline: a transaction that does not finish before ctx ends
// is cut, its Handler's context cancelled, and Shutdown returns ctx's error.
func TestShutdownDeadline(t *testing.T) {
	cancelled := make(chan struct{})
	entered := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, _ *Envelope, body io.Reader) error {
		io.Copy(io.Discard, body)
		close(entered)
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	})
	ts := startServer(t, &Server{Handler: h}, newSrvPKI(t))
	d := tlsDialogue(t, ts)
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	d.expect("DATA", "354 ")
	d.send("x\r\n.\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled")
	}
	if got, err := d.tryRead(); err == nil && strings.HasPrefix(got, "250") {
		t.Fatalf("message accepted after forced close: %q", got)
	}
}

// TestPlaintextServerWithoutTLS: InsecureAllowPlaintext with no TLSConfig is
// a plaintext-only MX: no STARTTLS offered, mail accepted.
func TestPlaintextServerWithoutTLS(t *testing.T) {
	ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, nil)
	d := dial(t, ts.addr)
	if ehlo := d.greet(); strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO %q", ehlo)
	}
	d.expect("STARTTLS", "502 ")
	if got := d.sendMessage("a@example.org", "b@example.net", "x\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA %q", got)
	}
}

// TestTooManyRefusals: a plaintext client that keeps sending refused
// commands is disconnected after the tenth with 421.
func TestTooManyRefusals(t *testing.T) {
	ts := startServer(t, &Server{}, newSrvPKI(t))
	d := dial(t, ts.addr)
	d.greet()
	for i := 0; i < maxFilterRejects-1; i++ {
		d.expect("MAIL FROM:<a@example.org>", "530 5.7.0 ")
	}
	d.send("MAIL FROM:<a@example.org>\r\n")
	if got := d.read(); !strings.HasPrefix(got, "530 5.7.0 ") {
		t.Fatalf("10th: %q", got)
	}
	if got := d.read(); !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Fatalf("after 10th: %q", got)
	}
	if _, err := d.tryRead(); err == nil {
		t.Error("connection left open")
	}
}

// TestLongDataLine: a message line longer than MaxLineLength is a permanent
// failure of the message (554 5.6.0), not "451 Message incomplete", so that
// the client bounces it instead of retrying it for days; in plaintext and
// under TLS, and nothing reaches the Handler. A client that sends the whole
// message (7 MB here, far more than socket buffers hold) before reading
// gets to send it all and then reads the 554.
func TestLongDataLine(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}, MaxLineLength: 200}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			msg := "Subject: x\r\nX-Long: " + strings.Repeat("y", 300) + "\r\n\r\n" + strings.Repeat(strings.Repeat("z", 68)+"\r\n", 100000) + ".\r\n"
			if _, err := io.WriteString(d.conn, msg); err != nil {
				t.Fatalf("sending the %d-byte message: %v", len(msg), err)
			}
			if got := d.read(); !strings.HasPrefix(got, "554 5.6.0 ") {
				t.Fatalf("over-long line: %q, want 554 5.6.0", got)
			}
			if n := len(ts.rec.all()); n != 0 {
				t.Errorf("%d messages accepted", n)
			}
		})
	}
}
