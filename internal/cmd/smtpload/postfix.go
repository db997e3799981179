package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// postfixBin is where Debian's postfix package installs the command.
const postfixBin = "/usr/sbin/postfix"

// postfixUnavailable says why the postfix target cannot run, or "".
func postfixUnavailable() string {
	if _, err := os.Stat(postfixBin); err != nil {
		return "Postfix is not installed (" + postfixBin + ")"
	}
	if _, err := os.Stat("/usr/lib/postfix/sbin/smtpd"); err != nil {
		return "Postfix's smtpd is not installed"
	}
	if os.Geteuid() != 0 {
		return "starting a private Postfix instance needs root"
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return "no postfix user"
	}
	return ""
}

// postfixServer is a private Postfix instance (postfix -c DIR): smtpd on a
// loopback port with STARTTLS required (TLS 1.3, the same certificate as
// the other targets), every message handed to the discard transport.
type postfixServer struct {
	dir, addr, version string
}

// startPostfix writes main.cf and master.cf under a new directory in
// parent, starts the instance and waits until it listens.
func startPostfix(ctx context.Context, parent, certFile, keyFile string) (*postfixServer, error) {
	u, err := user.Lookup("postfix")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	dir, err := os.MkdirTemp(parent, "postfix-")
	if err != nil {
		return nil, err
	}
	// The postfix user must traverse every directory down to the queue.
	for _, d := range []string{parent, dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{certFile, "cert.pem", 0o644}, {keyFile, "key.pem", 0o600}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f.to), b, f.mode); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "queue"), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(filepath.Join(dir, "data"), uid, -1); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	// Postfix 3.7 defaults otherwise: smtpd with STARTTLS required
	// (encrypt), TLS 1.3 only, mail for load.test to discard(8). The
	// queue file is fsynced before the 250, as Postfix always does.
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
myhostname = %[2]s
mydomain = load.test
myorigin = load.test
mydestination =
relay_domains = load.test
transport_maps = inline:{load.test=discard:}
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
smtpd_tls_security_level = encrypt
smtpd_tls_protocols = >=TLSv1.3
smtpd_tls_mandatory_protocols = >=TLSv1.3
smtpd_tls_cert_file = %[1]s/cert.pem
smtpd_tls_key_file = %[1]s/key.pem
smtpd_tls_loglevel = 0
smtpd_tls_session_cache_timeout = 0
tls_session_ticket_cipher =
`, dir, hostname)
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
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCF), 0o644); err != nil {
		return nil, err
	}
	p := &postfixServer{dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	if out, err := p.run("check"); err != nil {
		return nil, fmt.Errorf("postfix check: %v\n%s\n%s", err, out, p.log())
	}
	if out, err := p.run("start"); err != nil {
		return nil, fmt.Errorf("postfix start: %v\n%s\n%s", err, out, p.log())
	}
	if out, err := exec.Command("/usr/sbin/postconf", "-c", dir, "-h", "mail_version").Output(); err == nil {
		p.version = "mail_version=" + strings.TrimSpace(string(out))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("postfix never listened on %s:\n%s", p.addr, p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *postfixServer) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, postfixBin, append([]string{"-c", p.dir}, args...)...).CombinedOutput()
	return string(out), err
}

// log returns Postfix's log (maillog_file), at most its last 64 KiB.
func (p *postfixServer) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

// delivered counts the messages the log says went to discard(8).
func (p *postfixServer) delivered() int64 {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	var n int64
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, []byte(" postfix/discard[")) && bytes.Contains(l, []byte(" status=sent ")) {
			n++
		}
	}
	return n
}

// waitDelivered waits until the log shows want discarded messages.
func (p *postfixServer) waitDelivered(ctx context.Context, want int64, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	for {
		n := p.delivered()
		if n == want {
			return n, nil
		}
		if n > want {
			return n, fmt.Errorf("postfix: its log shows %d messages discarded, %d were sent", n, want)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return n, fmt.Errorf("postfix: its log shows %d of %d messages discarded\n%s", n, want, p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop runs postfix stop and makes sure the master process (by the PID in
// its pid file) is gone, killing it after 10 s.
func (p *postfixServer) stop() error {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(p.dir, "queue", "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	out, err := p.run("stop")
	if err != nil {
		err = fmt.Errorf("postfix stop: %v\n%s", err, out)
	}
	if pid <= 0 {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return errors.Join(err, fmt.Errorf("postfix master %d still running 10s after stop; killed", pid))
}
