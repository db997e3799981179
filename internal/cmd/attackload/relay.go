package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailtls/mailtls/certstore"
)

// hostname is the relay's name and the one its certificate carries.
const hostname = "mx.load.test"

// The one user, and the local domain its mail goes to.
const (
	user        = "alice"
	password    = "alice's right password"
	localDomain = "load.test"
	address     = user + "@" + localDomain
)

// fixture is what every relay of a run shares: the certificate, the users
// file, and the client TLS configuration that trusts the certificate.
type fixture struct {
	dir               string
	certFile, keyFile string
	usersFile         string
	clientTLS         *tls.Config
}

func newFixture(dir string) (*fixture, error) {
	f := &fixture{dir: dir, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), usersFile: filepath.Join(dir, "users")}
	if err := certstore.WriteSelfSigned(f.certFile, f.keyFile, []string{hostname}, 24*time.Hour); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(f.certFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	// No ClientSessionCache: a full handshake on every connection, as
	// from an attacker or an MTA that does not resume.
	f.clientTLS = &tls.Config{RootCAs: roots, ServerName: hostname}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.usersFile, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return f, nil
}

// relayProc is one relay child process.
type relayProc struct {
	cmd              *exec.Cmd
	dataDir, logPath string
	smtp, submission string // listener addresses
	done             chan struct{}
	waitErr          error
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (free when
// asked; the relay binds them a moment later).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startRelay starts the relay binary with a fresh data directory under
// cfg.dir and waits until both listeners greet.
func startRelay(ctx context.Context, cfg *config, fx *fixture, name string, extra ...string) (*relayProc, error) {
	dataDir, err := os.MkdirTemp(cfg.dir, "attackload-"+name+"-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	r := &relayProc{
		dataDir:    dataDir,
		logPath:    filepath.Join(dataDir, "relay.log"),
		smtp:       fmt.Sprintf("127.0.0.1:%d", ports[0]),
		submission: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		done:       make(chan struct{}),
	}
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	args := append([]string{
		"-data", filepath.Join(dataDir, "data"),
		"-hostname", hostname,
		"-cert", fx.certFile, "-key", fx.keyFile,
		"-users", fx.usersFile,
		"-local-domains", localDomain,
		"-smtp", r.smtp, "-submission", r.submission, "-submissions", "",
	}, extra...)
	args = append(args, cfg.relayArgs...)
	r.cmd = exec.Command(cfg.relay, args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = childAttr()
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { r.waitErr = r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range []string{r.smtp, r.submission} {
		for {
			err := greets(a)
			if err == nil {
				break
			}
			select {
			case <-r.done:
				return nil, fmt.Errorf("relay exited at start (%v); its log:\n%s", r.waitErr, r.logTail())
			case <-ctx.Done():
				r.stop()
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				r.stop()
				return nil, fmt.Errorf("relay: %s not greeting within 30s (%v); its log:\n%s", a, err, r.logTail())
			}
		}
	}
	return r, nil
}

// greets reports whether addr answers a connection with a 220 greeting.
func greets(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(l))
	}
	return nil
}

// alive reports whether the relay is still running.
func (r *relayProc) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// cpu returns the relay's user+system CPU time so far, if known.
func (r *relayProc) cpu() (time.Duration, bool) { return procCPU(r.cmd.Process.Pid) }

// stop ends the relay by its PID: SIGTERM, then SIGKILL after 10 s.
func (r *relayProc) stop() {
	if !r.alive() {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// logTail returns the last 4 KiB of the relay's log.
func (r *relayProc) logTail() string {
	f, err := os.Open(r.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 4096 {
		f.Seek(-4096, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
