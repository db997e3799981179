package interop

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/postfixlab"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// postfixFreePort returns a loopback address whose port was free a moment
// ago.
func postfixFreePort(t *testing.T) string {
	t.Helper()
	addr, err := postfixlab.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// postfixWaitPort waits up to 15 s until addr accepts connections.
func postfixWaitPort(t *testing.T, addr string, what func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := postfixlab.WaitListen(ctx, addr); err != nil {
		t.Fatalf("%s never listened:\n%s", addr, what())
	}
}

// postfixUser returns the uid and gid of the postfix account, skipping (or
// failing in CI) when the test cannot run Postfix.
func postfixUser(t *testing.T) (int, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("MAILTLS_INTEROP") == "1" {
			t.Fatal("Postfix interop tests must run as root (postfix start)")
		}
		t.Skip("Postfix interop tests need root")
	}
	uid, gid, err := postfixlab.User()
	if err != nil {
		if os.Getenv("MAILTLS_INTEROP") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return uid, gid
}

// postfixTempDir is a t.TempDir that the postfix user can traverse.
func postfixTempDir(t *testing.T) string {
	dir := t.TempDir()
	if err := postfixlab.MakeTraversable(dir, os.TempDir()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// postfixInstance is a private Postfix instance started for one test.
type postfixInstance struct {
	*postfixlab.Instance
	addr string            // smtpd's address, "" for a client instance
	ca   *transporttest.CA // issuer of smtpd's certificate, nil for a client instance
}

func (p *postfixInstance) log() string {
	b, _ := p.Log()
	return string(b)
}

// waitLog waits up to 20 s until the log contains s and returns it.
func (p *postfixInstance) waitLog(t *testing.T, s string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, l, _ := p.WaitLog(ctx, regexp.MustCompile(regexp.QuoteMeta(s)))
	return string(l)
}

// waitLogMatch waits up to 30 s until the Postfix log matches re and
// returns the submatches (nil on timeout) and the log.
func (p *postfixInstance) waitLogMatch(re *regexp.Regexp) ([]string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, l, _ := p.WaitLog(ctx, re)
	var sm []string
	for _, b := range m {
		sm = append(sm, string(b))
	}
	return sm, string(l)
}

// startPostfixLab starts cfg (its Dir from postfixTempDir) and stops it at
// test end, logging what Stop reports (a master killed by PID included).
func startPostfixLab(t *testing.T, cfg postfixlab.Config) *postfixlab.Instance {
	t.Helper()
	inst, err := postfixlab.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Stop(context.Background()); err != nil {
			t.Log(err)
		}
	})
	return inst
}

// startPostfix runs a private Postfix instance (postfix -c DIR start): its
// own main.cf and master.cf, smtpd with TLS on a loopback port, its own
// queue and data directories under t.TempDir(), mail for example.test
// relayed to the discard transport, and maillog_file for the log. The
// instance is stopped (and its master killed by PID if need be) at test end.
func startPostfix(t *testing.T) *postfixInstance {
	t.Helper()
	postfix := requireTool(t, "postfix")
	requireTool(t, "smtpd") // /usr/lib/postfix/sbin/smtpd
	postfixUser(t)

	dir := postfixTempDir(t)
	ca := transporttest.MustCA("interop CA")
	leaf := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mx.example.test"}})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), leaf.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), leaf.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	inst := startPostfixLab(t, postfixlab.Config{
		Dir:     dir,
		Command: postfix,
		SMTPD:   postfixFreePort(t),
		MainCF: map[string]string{
			"myhostname":                "mx.example.test",
			"mydomain":                  "example.test",
			"myorigin":                  "example.test",
			"relay_domains":             "example.test",
			"transport_maps":            "inline:{example.test=discard:}",
			"smtpd_tls_security_level":  "may",
			"smtpd_tls_cert_file":       dir + "/cert.pem",
			"smtpd_tls_key_file":        dir + "/key.pem",
			"smtpd_tls_loglevel":        "1",
			"smtpd_tls_received_header": "yes",
		},
	})
	return &postfixInstance{Instance: inst, addr: inst.Addr(), ca: ca}
}

type smtpSink struct {
	addr string
	dump string
	mu   sync.Mutex
	out  bytes.Buffer
}

func (s *smtpSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(b)
}

func (s *smtpSink) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *smtpSink) dumps(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(s.dump, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// startSmtpSink runs Postfix's smtp-sink (no TLS) on a loopback port with
// -v (conversation log) and -d (one dump file per transaction). It is
// killed by PID at test end.
func startSmtpSink(t *testing.T) *smtpSink {
	t.Helper()
	bin := requireTool(t, "smtp-sink")
	uid, gid := postfixUser(t)
	dir := postfixTempDir(t)
	s := &smtpSink{addr: postfixFreePort(t), dump: filepath.Join(dir, "dump")}
	if err := os.Mkdir(s.dump, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.dump, uid, gid); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-u", "postfix", "-v", "-h", "sink.example.test", "-d", s.dump+"/%M.", s.addr, "10")
	cmd.Stdout, cmd.Stderr = s, s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	postfixWaitPort(t, s.addr, s.output)
	return s
}
