package interop

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailtls/mailtls/internal/syncbuf"
)

// relayProc is the examples/relay binary running as a child process on
// free loopback ports.
type relayProc struct {
	cmd                           *exec.Cmd
	data                          string // -data
	cert                          string // the self-signed certificate it generated
	smtp, submission, submissions string
	log                           *lockedBuffer
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer = syncbuf.Buffer

// freePorts returns n loopback addresses whose ports were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// goTool returns the go command that runs this test.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// buildRelay compiles ./examples/relay into dir.
func buildRelay(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "relay")
	cmd := exec.Command(goTool(), "build", "-o", bin, "./examples/relay")
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/relay: %v\n%s", err, out)
	}
	return bin
}

// startRelayProc builds and starts the relay with a users file holding
// user:bcrypt(pass) and the given extra flags, and waits until all three
// listeners accept connections. The process is stopped (SIGTERM, then
// SIGKILL) by PID when the test ends.
func startRelayProc(t *testing.T, user, pass string, extra ...string) *relayProc {
	t.Helper()
	dir := t.TempDir()
	bin := buildRelay(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The local recipients the tests mail to (bare names: every local
	// domain); others get 550 5.1.1.
	rcpts := filepath.Join(dir, "recipients")
	if err := os.WriteFile(rcpts, []byte("user\nbob\ncarol\nsender\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := freePorts(t, 3)
	p := &relayProc{data: filepath.Join(dir, "data"), smtp: addrs[0], submission: addrs[1], submissions: addrs[2], log: &lockedBuffer{}}
	args := append([]string{"-data", p.data, "-hostname", "relay.test", "-users", users, "-recipients", rcpts,
		"-smtp", p.smtp, "-submission", p.submission, "-submissions", p.submissions}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		pid := p.cmd.Process.Pid
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-done
			t.Errorf("relay (pid %d) did not stop on SIGTERM within 15s", pid)
		}
		if !strings.Contains(p.log.String(), `msg=stopped`) {
			t.Errorf("relay did not log a clean stop")
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-done:
				t.Fatalf("relay exited early: %v\n%s", err, p.log.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay not listening on %s: %v\n%s", a, err, p.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p.cert = filepath.Join(p.data, "tls", "cert.pem")
	return p
}

// swaks runs the real swaks client and returns its exit code and transcript.
func swaks(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--helo", "client.test", "--timeout", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("swaks: %v", err)
	}
	return code, string(out)
}

func marker(t *testing.T) string {
	var b [8]byte
	rand.Read(b[:])
	return "X-Interop-Test: " + t.Name() + "-" + hex.EncodeToString(b[:])
}

// maildirWith returns the content of the one message in addr's Maildir
// new/ holding needle, or "" if there is none.
func (p *relayProc) maildirWith(t *testing.T, addr, needle string) string {
	t.Helper()
	dir := filepath.Join(p.data, "mail", addr, "new")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), needle) {
			return string(b)
		}
	}
	return ""
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s: missing %q in:\n%s", what, sub, s)
		}
	}
}

// TestSwaksAgainstRelay drives the built examples/relay with the real swaks
// client (Debian package swaks): plaintext MAIL refused with 530 when TLS
// is required (RFC 3207 §4); STARTTLS then AUTH PLAIN accepted and the
// message in the Maildir; AUTH in plaintext refused; implicit TLS on the
// submissions port working.
func TestSwaksAgainstRelay(t *testing.T) {
	sw := requireTool(t, "swaks")
	p := startRelayProc(t, "alice", "s3cret-pw", "-require-tls")

	t.Run("PlaintextMAILRefused530", func(t *testing.T) {
		m := marker(t)
		code, out := swaks(t, sw, "--server", p.smtp, "--from", "sender@example.org", "--to", "user@localhost",
			"--header", m)
		if code != 23 { // swaks: "error in MAIL transaction"
			t.Fatalf("swaks exit code %d, want 23 (MAIL refused):\n%s", code, out)
		}
		mustContain(t, "transcript", out, "250-STARTTLS", "-> MAIL FROM:<sender@example.org>",
			"<** 530 5.7.0 Must issue a STARTTLS command first")
		if strings.Contains(out, "-> RCPT TO") || strings.Contains(out, "-> DATA") {
			t.Fatalf("swaks got past MAIL:\n%s", out)
		}
		if got := p.maildirWith(t, "user@localhost", m); got != "" {
			t.Fatalf("message stored despite 530:\n%s", got)
		}
	})

	t.Run("STARTTLSThenAUTHPLAINDelivered", func(t *testing.T) {
		m := marker(t)
		code, out := swaks(t, sw, "--server", p.submission, "--tls", "--tls-verify", "--tls-ca-path", p.cert,
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret-pw",
			"--from", "alice@localhost", "--to", "bob@localhost", "--header", m)
		if code != 0 {
			t.Fatalf("swaks exit code %d:\n%s", code, out)
		}
		mustContain(t, "transcript", out, "-> STARTTLS", "<-  220", "=== TLS started with cipher TLSv1.3",
			"~> AUTH PLAIN", "<~  235 2.7.0 Authentication successful", "<~  250 2.0.0 Ok: queued as")
		msg := waitMaildir(t, p, "bob@localhost", m, 10*time.Second)
		if msg == "" {
			t.Fatal("message not in bob@localhost's Maildir new/ after the 250")
		}
		mustContain(t, "stored message", msg, "Return-Path: <alice@localhost>", "Received: from client.test",
			"(using TLSv1.3 with cipher TLS_", "with ESMTPSA", m)
	})

	t.Run("AUTHInPlaintextRefused", func(t *testing.T) {
		m := marker(t)
		code, out := swaks(t, sw, "--server", p.submission,
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret-pw",
			"--from", "alice@localhost", "--to", "bob@localhost", "--header", m)
		if code != 28 { // swaks: authentication not offered / failed
			t.Fatalf("swaks exit code %d, want 28 (no AUTH in plaintext):\n%s", code, out)
		}
		mustContain(t, "transcript", out, "Host did not advertise authentication")
		if strings.Contains(out, "250-AUTH") || strings.Contains(out, "-> AUTH") {
			t.Fatalf("AUTH advertised or sent in plaintext:\n%s", out)
		}
		// swaks will not send AUTH that is not advertised; a client that
		// does gets the server's refusal, and the credentials are not
		// checked (RFC 4954 §4).
		okBefore := strings.Count(p.log.String(), `msg="smtp auth ok"`)
		reply := rawDialogue(t, p.submission, "EHLO client.test",
			"AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00s3cret-pw")))
		t.Logf("server reply to AUTH PLAIN in plaintext: %q", reply)
		if !(strings.HasPrefix(reply, "538 5.7.11") || strings.HasPrefix(reply, "530 5.7.0") || strings.HasPrefix(reply, "523 5.7.10")) {
			t.Fatalf("AUTH in plaintext answered %q, want 538 5.7.11 (or 530 5.7.0)", reply)
		}
		if n := strings.Count(p.log.String(), `msg="smtp auth ok"`); n != okBefore {
			t.Fatalf("a plaintext AUTH was accepted (auth ok lines %d -> %d)", okBefore, n)
		}
		if got := p.maildirWith(t, "bob@localhost", m); got != "" {
			t.Fatal("message stored without AUTH")
		}
	})

	t.Run("ImplicitTLSSubmissions", func(t *testing.T) {
		m := marker(t)
		code, out := swaks(t, sw, "--server", p.submissions, "--tls-on-connect", "--tls-verify", "--tls-ca-path", p.cert,
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret-pw",
			"--from", "alice@localhost", "--to", "carol@localhost", "--header", m)
		if code != 0 {
			t.Fatalf("swaks exit code %d:\n%s", code, out)
		}
		mustContain(t, "transcript", out, "=== TLS started with cipher TLSv1.3", "<~  220 relay.test",
			"<~  235 2.7.0 Authentication successful", "<~  250 2.0.0 Ok: queued as")
		if strings.Contains(out, "-> STARTTLS") || strings.Contains(out, "250-STARTTLS") {
			t.Fatalf("STARTTLS on the implicit-TLS port:\n%s", out)
		}
		msg := waitMaildir(t, p, "carol@localhost", m, 10*time.Second)
		if msg == "" {
			t.Fatal("message not in carol@localhost's Maildir")
		}
		mustContain(t, "stored message", msg, "(using TLSv1.3 with cipher TLS_", "with ESMTPSA")
	})

	t.Run("RelayDeniedAtRCPT", func(t *testing.T) {
		// No AUTH, not in -relay-networks: the remote recipient is refused
		// in answer to RCPT, so swaks never gets to DATA.
		m := marker(t)
		code, out := swaks(t, sw, "--server", p.smtp, "--tls", "--tls-verify", "--tls-ca-path", p.cert,
			"--from", "sender@example.org", "--to", "victim@example.net", "--header", m)
		if code != 24 { // swaks: "error in RCPT transaction"
			t.Fatalf("swaks exit code %d, want 24 (RCPT refused):\n%s", code, out)
		}
		mustContain(t, "transcript", out, "~> RCPT TO:<victim@example.net>", "<~* 554 5.7.1 Relay access denied")
		if strings.Contains(out, "~> DATA") {
			t.Fatalf("swaks got to DATA:\n%s", out)
		}
	})

	t.Run("WrongPasswordRefused", func(t *testing.T) {
		code, out := swaks(t, sw, "--server", p.submissions, "--tls-on-connect",
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong",
			"--from", "alice@localhost", "--to", "bob@localhost")
		if code != 28 {
			t.Fatalf("swaks exit code %d, want 28:\n%s", code, out)
		}
		mustContain(t, "transcript", out, "<~* 535 5.7.8")
	})

	// The log has one line per handshake and per accepted message.
	mustContain(t, "relay log", p.log.String(), `msg="smtp listening"`, `msg="smtp tls handshake"`,
		"tls_version=TLSv1.3", `msg="message stored"`)
}

// rawDialogue reads the greeting, sends each command and returns the reply
// to the last one (its last line).
func rawDialogue(t *testing.T, addr string, cmds ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 0, 4096)
	readReply := func() string {
		for {
			lines := strings.Split(string(buf), "\r\n")
			for i, l := range lines[:len(lines)-1] {
				if len(l) >= 4 && l[3] == ' ' {
					buf = []byte(strings.Join(lines[i+1:], "\r\n"))
					return l
				}
			}
			tmp := make([]byte, 1024)
			n, err := c.Read(tmp)
			if err != nil {
				t.Fatalf("reading reply: %v (have %q)", err, buf)
			}
			buf = append(buf, tmp[:n]...)
		}
	}
	readReply()
	var last string
	for _, cmd := range cmds {
		fmt.Fprintf(c, "%s\r\n", cmd)
		last = readReply()
	}
	return last
}

// TestOpenSSLAgainstRelay checks the relay's STARTTLS with openssl
// s_client: TLS 1.1 is refused by the server with the protocol_version
// alert (the client is told to allow it), TLS 1.3 is negotiated by default.
func TestOpenSSLAgainstRelay(t *testing.T) {
	ossl := requireTool(t, "openssl")
	p := startRelayProc(t, "alice", "pw", "-require-tls")

	run := func(args ...string) (int, string) {
		cmd := exec.Command(ossl, append([]string{"s_client", "-starttls", "smtp", "-connect", p.smtp,
			"-name", "client.test", "-servername", "relay.test"}, args...)...)
		cmd.Stdin = strings.NewReader("QUIT\r\n")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		return 0, string(out)
	}

	// SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all, so the refusal comes
	// from the server, not from the client's own configuration.
	code, out := run("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
	if code == 0 || !strings.Contains(out, "Cipher is (NONE)") {
		t.Fatalf("TLS 1.1 handshake was not refused (exit %d):\n%s", code, out)
	}
	// The server refuses with the protocol_version alert (70, RFC 5246
	// Appendix E.1), which OpenSSL prints as "tlsv1 alert protocol
	// version ... SSL alert number 70"; internal_error (80) would blame the
	// server instead of the client's offer.
	mustContain(t, "openssl output for TLS 1.1", out, "alert protocol version", "SSL alert number 70")
	waitLog(t, p, `result=failed`)
	mustContain(t, "relay log", p.log.String(), "TLS 1.1")

	code, out = run("-CAfile", p.cert, "-verify_return_error")
	if code != 0 {
		t.Fatalf("openssl s_client default handshake failed (exit %d):\n%s", code, out)
	}
	mustContain(t, "openssl output", out, "New, TLSv1.3, Cipher is TLS_", "Verify return code: 0 (ok)")
}

func waitLog(t *testing.T, p *relayProc, needle string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.log.String(), needle) {
		if time.Now().After(deadline) {
			t.Fatalf("relay log lacks %q:\n%s", needle, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
