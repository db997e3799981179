package transport

import (
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/syncbuf"
	"github.com/mailtls/mailtls/policy"
)

// TestCommandDeadlineKeyUpdate: under TLS 1.3 a client that trickles a
// command and, between its bytes, sends KeyUpdate messages asking for an
// update (RFC 8446 §4.6.3; crypto/tls answers each with a KeyUpdate of its
// own, a write on the connection) cannot stretch the command past
// Timeouts.Command: the server's KeyUpdate is no SMTP reply. Go's TLS client
// cannot send a KeyUpdate, so openssl s_client (its "K" command) plays the
// client; the test is skipped without it.
func TestCommandDeadlineKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ts := startServer(t, &Server{Timeouts: ServerTimeouts{Command: 600 * time.Millisecond}, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
	cmd := exec.Command(openssl, "s_client", "-starttls", "smtp", "-tls1_3", "-connect", ts.addr, "-servername", "mx.test")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "openssl's TLS session", func() bool { return strings.Contains(out.String(), "Verify return code") })
	time.Sleep(50 * time.Millisecond) // s_client reads stdin once the handshake is done
	start := time.Now()
	// One byte of a command, then a KeyUpdate asking for one back, every
	// 150 ms for 3 s: each well inside Timeouts.Command, together far past it.
	for time.Since(start) < 3*time.Second && !strings.Contains(out.String(), "421 ") {
		if _, err := io.WriteString(stdin, "N"); err != nil {
			break
		}
		time.Sleep(75 * time.Millisecond)
		if _, err := io.WriteString(stdin, "K\n"); err != nil {
			break
		}
		time.Sleep(75 * time.Millisecond)
	}
	el := time.Since(start)
	stdin.Close()
	if !strings.Contains(out.String(), "KEYUPDATE") {
		t.Skipf("openssl sent no KeyUpdate: %q", out.String())
	}
	if !strings.Contains(out.String(), "421 ") || el > 2*time.Second {
		t.Errorf("trickled command with KeyUpdates: still open after %v, want a 421 at about 600ms; openssl printed %q", el, tail(out.String(), 300))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
