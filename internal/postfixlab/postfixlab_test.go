package postfixlab

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMainCF: base settings come first in their order, a caller's value
// for a base name replaces it in place, the caller's other names follow
// sorted, and empty values are written as "name =".
func TestMainCF(t *testing.T) {
	got := MainCF(Config{Dir: "/x", MainCF: map[string]string{
		"relay_domains":      "",
		"myhostname":         "mx.example.test",
		"inet_interfaces":    "127.0.0.1",
		"mydestination":      "example.test",
		"smtpd_tls_loglevel": "1",
	}})
	want := `compatibility_level = 3.6
queue_directory = /x/queue
data_directory = /x/data
mail_owner = postfix
mydestination = example.test
alias_maps =
alias_database =
local_recipient_maps =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = /x
maillog_file = /x/maillog
myhostname = mx.example.test
relay_domains =
smtpd_tls_loglevel = 1
`
	if got != want {
		t.Errorf("MainCF:\n%s\nwant:\n%s", got, want)
	}
}

// TestMasterCF: the smtpd listener and pickup/relay appear only when asked
// for; every instance has the common services; nothing is chrooted.
func TestMasterCF(t *testing.T) {
	common := []string{"cleanup", "qmgr", "tlsmgr", "rewrite", "bounce", "defer", "trace", "verify",
		"flush", "proxymap", "smtp", "showq", "error", "retry", "discard", "anvil", "scache", "tlsproxy", "postlog"}
	for _, tc := range []struct {
		cfg   Config
		extra []string
	}{
		{Config{SMTPD: "127.0.0.1:2525"}, []string{"127.0.0.1:2525"}},
		{Config{Pickup: true}, []string{"pickup", "relay"}},
		{Config{}, nil},
	} {
		var names []string
		sc := bufio.NewScanner(strings.NewReader(MasterCF(tc.cfg)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 8 {
				t.Fatalf("%+v: line %q has %d fields, want 8", tc.cfg, sc.Text(), len(f))
			}
			if f[4] != "n" {
				t.Errorf("%+v: %s is chrooted", tc.cfg, f[0])
			}
			names = append(names, f[0])
		}
		want := append(append([]string{}, common...), tc.extra...)
		if len(names) != len(want) {
			t.Errorf("%+v: services %v, want %v", tc.cfg, names, want)
		}
		for _, n := range want {
			if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+n+" ") {
				t.Errorf("%+v: no %s service in %v", tc.cfg, n, names)
			}
		}
	}
	if !strings.HasPrefix(MasterCF(Config{SMTPD: "127.0.0.1:2525"}), "127.0.0.1:2525 inet n - n - - smtpd\n") {
		t.Errorf("smtpd line:\n%s", MasterCF(Config{SMTPD: "127.0.0.1:2525"}))
	}
}

// TestMakeTraversable opens dir and its parents below root, and leaves
// root alone.
func TestMakeTraversable(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := MakeTraversable(dir, root); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want 0755", d, fi.Mode(), err)
		}
	}
	if fi, _ := os.Stat(root); fi.Mode().Perm() != 0o700 {
		t.Errorf("root changed to %v", fi.Mode())
	}
}

// TestStartErrors: no Dir, and a postfix command that fails its check.
func TestStartErrors(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Error("Start without Dir succeeded")
	}
	if _, _, err := User(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	_, err := Start(context.Background(), Config{Dir: dir, Command: "/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "postfix check") {
		t.Errorf("Start with /bin/false = %v, want a postfix check error", err)
	}
	for _, f := range []string{"main.cf", "master.cf", "queue", "data"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("Start did not create %s: %v", f, err)
		}
	}
}

// needPostfix skips unless this process can run a private Postfix.
func needPostfix(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, _, err := User(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat("/usr/lib/postfix/sbin/smtpd"); err != nil {
		t.Skip("Postfix is not installed")
	}
	if _, err := exec.LookPath("postfix"); err != nil {
		if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
			t.Skip("Postfix is not installed")
		}
	}
}

// masterPID reads the instance's master.pid.
func masterPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "queue", "pid", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestStopKillsMaster: when "postfix stop" does not end the master (here
// the command is swapped for /bin/true after start), Stop kills it by PID
// once ctx ends and says so.
func TestStopKillsMaster(t *testing.T) {
	needPostfix(t)
	dir := t.TempDir()
	if err := MakeTraversable(dir, os.TempDir()); err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Config{Dir: dir, Pickup: true})
	if err != nil {
		t.Fatal(err)
	}
	pid := masterPID(t, dir)
	realCommand := p.command
	p.command = "/bin/true"
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = p.Stop(ctx)
	p.command = realCommand
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want an error saying the master was killed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("master %d still running", pid)
		p.Stop(context.Background())
	}
}

// TestStartStop runs a real instance: it listens, answers with its
// myhostname, logs the session to maillog_file, and after Stop its master
// is gone and the port closed.
func TestStartStop(t *testing.T) {
	needPostfix(t)
	dir := t.TempDir()
	if err := MakeTraversable(dir, os.TempDir()); err != nil {
		t.Fatal(err)
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := Start(ctx, Config{Dir: dir, SMTPD: addr, MainCF: map[string]string{"myhostname": "lab.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Stop(context.Background())
		}
	}()
	pid := masterPID(t, dir)
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 lab.example.test ") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	c.Write([]byte("QUIT\r\n"))
	c.Close()
	// The readiness probe's session has no commands; ours has the QUIT.
	m, log, err := p.WaitLog(ctx, regexp.MustCompile(`postfix/smtpd\[(\d+)\]: disconnect from localhost\[127\.0\.0\.1\] quit=1 commands=1`))
	if err != nil {
		t.Fatalf("no disconnect line: %v\n%s", err, log)
	}
	t.Logf("log: %s", m[0])

	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	stopped = true
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("master %d still running after Stop", pid)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", addr)
	}
	// WaitLog gives up with ctx.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, _, err := p.WaitLog(short, regexp.MustCompile(`never logged`)); err != context.DeadlineExceeded {
		t.Errorf("WaitLog for an absent line = %v, want DeadlineExceeded", err)
	}
}
