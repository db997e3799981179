package interop

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/internal/postfixlab"
)

// startPostfixClient runs a private Postfix instance (postfix -c DIR start)
// that has no SMTP listener and sends everything it is given to relayhost
// [host]:port with smtp_tls_security_level = encrypt, trusting caFile for
// the "Trusted"/"Untrusted" verdict it logs (encrypt never checks the
// certificate, as Postfix documents). Mail enters it through its own
// sendmail(1) (postfixSendmail). It is stopped (postfix stop, then the
// master killed by PID if need be) at test end.
func startPostfixClient(t *testing.T, relayAddr, caFile string) *postfixInstance {
	t.Helper()
	postfix := requireTool(t, "postfix")
	requireTool(t, "smtp")   // /usr/lib/postfix/sbin/smtp
	requireTool(t, "pickup") // /usr/lib/postfix/sbin/pickup
	requireTool(t, "sendmail")
	requireTool(t, "postdrop")
	postfixUser(t)

	dir := postfixTempDir(t)
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relay-ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	// No DNS anywhere: the relayhost is a bracketed IP literal (no MX or A
	// lookup), myhostname is set, and there is no smtpd. Start returns once
	// the master has written its PID and pickup's trigger socket exists
	// (postdrop wakes pickup through it).
	inst := startPostfixLab(t, postfixlab.Config{
		Dir:     dir,
		Command: postfix,
		Pickup:  true,
		MainCF: map[string]string{
			"myhostname":              "pfclient.example.test",
			"mydomain":                "example.test",
			"myorigin":                "example.test",
			"relay_domains":           "",
			"relayhost":               "[" + host + "]:" + port,
			"smtp_tls_security_level": "encrypt",
			"smtp_tls_CAfile":         dir + "/relay-ca.pem",
			"smtp_tls_loglevel":       "1",
			"smtp_connect_timeout":    "10s",
			"smtp_helo_timeout":       "20s",
			"queue_run_delay":         "5s",
			"minimal_backoff_time":    "5s",
			"maximal_backoff_time":    "10s",
		},
	})
	return &postfixInstance{Instance: inst}
}

// postfixSendmail submits msg through the instance's sendmail(1) (and so
// postdrop and pickup), with envelope sender from and recipient to.
func postfixSendmail(t *testing.T, p *postfixInstance, from, to, msg string) {
	t.Helper()
	bin := requireTool(t, "sendmail")
	cmd := exec.Command(bin, "-C", p.Dir(), "-f", from, "--", to)
	cmd.Stdin = strings.NewReader(msg)
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() {
		select {
		case <-done:
		default:
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
		}
	})
	out, err := cmd.CombinedOutput()
	close(done)
	timer.Stop()
	if err != nil {
		t.Fatalf("sendmail -C %s: %v\n%s\n%s", p.Dir(), err, out, p.log())
	}
}

// writeCAFile writes pem to a file for -outbound-ca.
func writeCAFile(t *testing.T, pem []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// token returns a random string for Message-IDs and markers.
func token() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// relayClient connects to the relay's addr, says EHLO client.test, starts
// TLS verifying the relay's certificate (the one it generated under -data)
// and says EHLO again.
func relayClient(t *testing.T, p *relayProc, addr string) *smtp.Client {
	t.Helper()
	pem, err := os.ReadFile(p.cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", p.cert)
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: pool, ServerName: "relay.test"})
	if err != nil {
		conn.Close()
		t.Fatalf("STARTTLS to the relay at %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO over TLS: %v", err)
	}
	if st, ok := c.TLSConnectionState(); !ok || st.Version != tls.VersionTLS13 {
		t.Fatalf("client connection to the relay is not TLS 1.3: %v %x", ok, st.Version)
	}
	return c
}

// relaySend runs MAIL, RCPT, DATA (and AUTH PLAIN first if user != "").
func relaySend(t *testing.T, c *smtp.Client, user, pass, from, to, msg string) {
	t.Helper()
	if user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			t.Fatalf("AUTH PLAIN: %v", err)
		}
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", from, err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatalf("RCPT TO:<%s>: %v", to, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatalf("DATA body: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Logf("QUIT: %v", err)
	}
}

// waitMaildir waits up to timeout for a message holding needle in addr's
// Maildir new/ and returns it ("" on timeout).
func waitMaildir(t *testing.T, p *relayProc, addr, needle string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := p.maildirWith(t, addr, needle); m != "" || time.Now().After(deadline) {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRelayLog waits up to timeout until the relay's log matches re and
// returns the submatches, or nil.
func waitRelayLog(p *relayProc, re *regexp.Regexp, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.log.String()); m != nil || time.Now().After(deadline) {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
}
