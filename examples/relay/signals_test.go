package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport/queue"
)

// TestMain lets the signal tests run this test binary as the relay itself:
// with MAILTLS_RELAY_CHILD=1 the process is the relay's main, with the
// command-line arguments it was started with.
func TestMain(m *testing.M) {
	if os.Getenv("MAILTLS_RELAY_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m)) // stops the PostgreSQL cluster of -queue tests, if one ran
}

// childRelay is the relay running in a child process started by the test.
type childRelay struct {
	cmd     *exec.Cmd
	logs    *syncBuffer
	dataDir string
	done    chan struct{}
	err     error // Wait's result, once done is closed
}

var listeningRE = regexp.MustCompile(`msg=listening listener=(\w+) addr=(\S+)`)

// startChild starts the relay as a child process with the test defaults
// (as startRelay) and args, and waits until every listener is bound.
func startChild(t *testing.T, args ...string) *childRelay {
	t.Helper()
	c := &childRelay{logs: &syncBuffer{}, dataDir: t.TempDir(), done: make(chan struct{})}
	base := []string{
		"-data", c.dataDir, "-hostname", "relay.test", "-log-level", "debug",
		"-smtp", "127.0.0.1:0", "-submission", "127.0.0.1:0", "-submissions", "127.0.0.1:0",
		"-recipients", writeFile(t, "recipients", testRecipients),
	}
	c.cmd = exec.Command(os.Args[0], append(base, args...)...)
	c.cmd.Env = append(os.Environ(), "MAILTLS_RELAY_CHILD=1")
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		if !c.exited() {
			c.cmd.Process.Kill() // our child, by its PID
			<-c.done
		}
		if t.Failed() {
			t.Logf("child relay log:\n%s", c.logs.String())
		}
	})
	waitFor(t, "the child relay's listeners", 20*time.Second, func() bool {
		if c.exited() {
			t.Fatalf("child relay exited at start: %v\n%s", c.err, c.logs.String())
		}
		return len(listeningRE.FindAllString(c.logs.String(), -1)) == 3
	})
	return c
}

func (c *childRelay) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *childRelay) addr(name string) string {
	for _, m := range listeningRE.FindAllStringSubmatch(c.logs.String(), -1) {
		if m[1] == name {
			return m[2]
		}
	}
	return ""
}

// rotateCert writes a new self-signed certificate and key over the relay's
// default pair under dataDir/tls and returns the new certificate.
func rotateCert(t *testing.T, dataDir string) *x509.Certificate {
	t.Helper()
	certFile, keyFile := filepath.Join(dataDir, "tls", "cert.pem"), filepath.Join(dataDir, "tls", "key.pem")
	if err := certstore.WriteSelfSigned(certFile, keyFile, []string{"relay.test", "localhost"}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	return readCert(t, certFile)
}

func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	c, err := certstore.LoadFiles(file, filepath.Join(filepath.Dir(file), "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// servedCert makes a TLS handshake with the implicit-TLS listener at addr,
// verifying the server with want as the only root, and reports whether the
// server presented want.
func servedCert(addr string, want *x509.Certificate) bool {
	pool := x509.NewCertPool()
	pool.AddCert(want)
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "relay.test", RootCAs: pool})
	if err != nil {
		return false
	}
	defer conn.Close()
	peer := conn.ConnectionState().PeerCertificates
	return len(peer) > 0 && bytes.Equal(peer[0].Raw, want.Raw)
}

// TestSIGHUPReloadsCertificate: the relay, a child process, gets SIGHUP
// after its certificate files were replaced: it serves the new certificate
// on the next handshake and keeps running: SIGHUP reloads, it does not end
// the relay.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	c := startChild(t, "-cert-watch", "0")
	addr := c.addr("submissions")
	old := readCert(t, filepath.Join(c.dataDir, "tls", "cert.pem"))
	if !servedCert(addr, old) {
		t.Fatal("the first certificate is not served")
	}
	next := rotateCert(t, c.dataDir)
	time.Sleep(100 * time.Millisecond)
	if servedCert(addr, next) {
		t.Fatal("new certificate served before SIGHUP with -cert-watch 0")
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new certificate after SIGHUP", 10*time.Second, func() bool {
		if c.exited() {
			t.Fatalf("the relay exited on SIGHUP: %v", c.err)
		}
		return servedCert(addr, next)
	})
	if c.exited() {
		t.Fatalf("the relay exited on SIGHUP: %v", c.err)
	}
	// A second SIGHUP with unchanged files is harmless too.
	c.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	if c.exited() || !servedCert(addr, next) {
		t.Fatalf("after a second SIGHUP: exited %v, err %v", c.exited(), c.err)
	}
}

// TestCertificateFileChangeReload: with -cert-watch the relay picks up
// replaced certificate files without any signal.
func TestCertificateFileChangeReload(t *testing.T) {
	tr := startRelay(t, "-cert-watch", "50ms")
	next := rotateCert(t, tr.cfg.DataDir)
	waitFor(t, "the new certificate without a signal", 10*time.Second, func() bool {
		return servedCert(tr.Addr("submissions"), next)
	})
}

// TestSIGTERMDrains: SIGTERM in the middle of DATA lets that transaction
// finish (its 250 arrives and the message is in the Maildir), refuses new
// connections, and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	c := startChild(t, "-drain-timeout", "20s")
	cert := readCert(t, filepath.Join(c.dataDir, "tls", "cert.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	conn, err := net.DialTimeout("tcp", c.addr("smtp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: "relay.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mail("sender@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rcpt("user@localhost", nil); err != nil {
		t.Fatal(err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: in flight\r\n\r\nfirst half\r\n")

	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the relay to start shutting down", 10*time.Second, func() bool {
		return bytes.Contains([]byte(c.logs.String()), []byte("msg=\"shutting down\""))
	})
	if conn, err := net.DialTimeout("tcp", c.addr("submission"), time.Second); err == nil {
		conn.Close()
		t.Error("a new connection was accepted after SIGTERM")
	}
	if c.exited() {
		t.Fatalf("the relay exited with a transaction in progress: %v", c.err)
	}
	io.WriteString(w, "second half\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("final reply of the in-flight transaction: %v", err)
	}
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the relay did not exit after the transaction ended")
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) || c.err != nil {
		t.Fatalf("exit: %v, want status 0", c.err)
	}
	// Accepted means durable: the message is in the Maildir, or still in
	// the queue's spool if the queue stopped before delivering it.
	var found bool
	files := maildirFiles(t, &Config{DataDir: c.dataDir}, "user@localhost", "new")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		found = found || bytes.Contains(b, []byte("second half"))
	}
	st, err := queue.OpenLogStore(filepath.Join(c.dataDir, "log"), queue.LogStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	spooled, _ := st.List(context.Background())
	for _, m := range spooled {
		b, err := st.Body(context.Background(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
		b.Close()
		found = found || bytes.Contains(data, []byte("second half"))
	}
	if !found {
		t.Error("the drained message is neither in user@localhost's Maildir nor in the spool")
	}
}
