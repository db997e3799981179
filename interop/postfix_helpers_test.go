package interop

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testpki"
)

// postfixFreePort returns a loopback port that was free a moment ago.
func postfixFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// postfixWaitPort waits until addr accepts connections.
func postfixWaitPort(t *testing.T, addr string, what func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never listened:\n%s", addr, what())
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
	u, err := user.Lookup("postfix")
	if err != nil {
		if os.Getenv("MAILTLS_INTEROP") == "1" {
			t.Fatalf("no postfix user: %v", err)
		}
		t.Skipf("no postfix user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// postfixTempDir is a t.TempDir that the postfix user can traverse.
func postfixTempDir(t *testing.T) string {
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(d) == os.TempDir() {
			break
		}
	}
	return dir
}

type postfixInstance struct {
	dir  string
	addr string
	ca   *testpki.CA
}

func (p *postfixInstance) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// waitLog waits until the log contains s and returns it.
func (p *postfixInstance) waitLog(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := p.log()
		if strings.Contains(l, s) || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	uid, _ := postfixUser(t)

	dir := postfixTempDir(t)
	port := postfixFreePort(t)
	ca := testpki.MustCA("interop CA")
	leaf := ca.MustIssue(testpki.LeafOptions{DNSNames: []string{"mx.example.test"}})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "cert.pem"), leaf.CertPEM, 0o644))
	must(os.WriteFile(filepath.Join(dir, "key.pem"), leaf.KeyPEM, 0o600))
	must(os.Mkdir(filepath.Join(dir, "queue"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "data"), 0o700))
	must(os.Chown(filepath.Join(dir, "data"), uid, -1))
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
relay_domains = example.test
transport_maps = inline:{example.test=discard:}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
smtpd_tls_security_level = may
smtpd_tls_cert_file = %[1]s/cert.pem
smtpd_tls_key_file = %[1]s/key.pem
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
`, dir)
	masterCF := fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`, port)
	must(os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644))
	must(os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCF), 0o644))

	p := &postfixInstance{dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port), ca: ca}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(postfix, append([]string{"-c", dir}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("check"); err != nil {
		t.Fatalf("postfix check: %v\n%s\n%s", err, out, p.log())
	}
	if out, err := run("start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.log())
	}
	t.Cleanup(func() { postfixStop(t, p, run) })
	postfixWaitPort(t, p.addr, p.log)
	return p
}

// postfixStop stops the instance and makes sure its master is gone.
func postfixStop(t *testing.T, p *postfixInstance, run func(...string) (string, error)) {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(p.dir, "queue", "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if out, err := run("stop"); err != nil {
		t.Logf("postfix stop: %v\n%s", err, out)
	}
	if pid <= 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("postfix master %d still running after stop; killing it", pid)
	syscall.Kill(pid, syscall.SIGKILL)
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
	s := &smtpSink{addr: fmt.Sprintf("127.0.0.1:%d", postfixFreePort(t)), dump: filepath.Join(dir, "dump")}
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
