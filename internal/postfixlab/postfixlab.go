// Package postfixlab runs a private Postfix instance on loopback for tests
// and measurements: its own main.cf and master.cf in one directory, its own
// queue and data directories under it, "postfix -c DIR start" and
// "postfix -c DIR stop", and its log in a file (maillog_file) rather than
// syslog.
//
// It implements no RFC; it drives Postfix, which implements SMTP (RFC 5321)
// and STARTTLS (RFC 3207) for us to test against. It does not manage a
// system-wide Postfix, chroot(8) jails, or anything listening on a
// non-loopback address: inet_interfaces is always 127.0.0.1.
//
// Postfix must run as root ("postfix start" refuses otherwise) and needs a
// "postfix" account that owns the data directory and can traverse every
// directory down to the queue; [Start] creates queue and data with the
// ownership Postfix insists on, and [MakeTraversable] opens the path to a
// temporary directory.
package postfixlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timeouts of the process handling. They are what the three former copies
// of this code used.
const (
	commandTimeout = 30 * time.Second       // one "postfix check/start/stop"
	startTimeout   = 15 * time.Second       // start until ready
	stopTimeout    = 10 * time.Second       // stop until the master is gone
	pollInterval   = 100 * time.Millisecond // readiness, exit and log polling
)

// Config describes one private instance. The zero value is not usable: Dir
// is required.
type Config struct {
	// Dir is the instance's configuration directory (postfix -c Dir). It
	// must exist and be traversable by the postfix user (see
	// MakeTraversable). Start writes main.cf and master.cf into it and
	// creates Dir/queue (mode 0755) and Dir/data (mode 0700, owned by the
	// postfix user). Files main.cf refers to (certificates, CA files) are
	// the caller's to write before Start.
	Dir string

	// Command is the path of the postfix(1) command. If empty, "postfix" is
	// looked up in PATH and then in /usr/sbin.
	Command string

	// SMTPD is the address ("127.0.0.1:port") of an smtpd(8) inet listener
	// in master.cf. If empty the instance has no SMTP listener.
	SMTPD string

	// Pickup adds pickup(8), through which sendmail(1) -C Dir submits mail,
	// and a "relay" smtp(8) transport: the services of an instance that
	// only sends. If false neither is in master.cf.
	Pickup bool

	// MainCF holds the caller's main.cf parameters (name to value, the
	// value written verbatim, empty allowed). They are written after the
	// base settings (see BaseMainCF), sorted by name; a name that is also a
	// base setting replaces it.
	MainCF map[string]string
}

// Instance is a started private Postfix instance. Stop it with Stop; it is
// not stopped when the Instance is garbage collected.
type Instance struct {
	cfg     Config
	command string
}

// BaseMainCF returns the main.cf settings every instance in dir has: its
// own queue and data directories, mail_owner postfix, no local delivery or
// aliases, loopback IPv4 only, 127.0.0.0/8 as mynetworks, and the log
// written to dir/maillog. The order is that of main.cf.
func BaseMainCF(dir string) [][2]string {
	return [][2]string{
		{"compatibility_level", "3.6"},
		{"queue_directory", dir + "/queue"},
		{"data_directory", dir + "/data"},
		{"mail_owner", "postfix"},
		{"mydestination", ""},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"local_recipient_maps", ""},
		{"biff", "no"},
		{"inet_interfaces", "127.0.0.1"},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"maillog_file_prefixes", dir},
		{"maillog_file", dir + "/maillog"},
	}
}

// MainCF returns the main.cf text for cfg: BaseMainCF(cfg.Dir) with
// cfg.MainCF's replacements, then cfg.MainCF's other parameters sorted by
// name, one "name = value" line each.
func MainCF(cfg Config) string {
	var b strings.Builder
	line := func(k, v string) {
		if v == "" {
			fmt.Fprintf(&b, "%s =\n", k)
		} else {
			fmt.Fprintf(&b, "%s = %s\n", k, v)
		}
	}
	base := map[string]bool{}
	for _, kv := range BaseMainCF(cfg.Dir) {
		base[kv[0]] = true
		if v, ok := cfg.MainCF[kv[0]]; ok {
			line(kv[0], v)
		} else {
			line(kv[0], kv[1])
		}
	}
	keys := make([]string, 0, len(cfg.MainCF))
	for k := range cfg.MainCF {
		if !base[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		line(k, cfg.MainCF[k])
	}
	return b.String()
}

// MasterCF returns the master.cf text for cfg: the smtpd listener if
// cfg.SMTPD is set, pickup if cfg.Pickup, and the services every instance
// needs (cleanup, qmgr, tlsmgr, trivial-rewrite, bounce, verify, flush,
// proxymap, smtp, showq, error, discard, anvil, scache, tlsproxy, postlogd), all
// unchrooted.
func MasterCF(cfg Config) string {
	var b strings.Builder
	if cfg.SMTPD != "" {
		fmt.Fprintf(&b, "%s inet n - n - - smtpd\n", cfg.SMTPD)
	}
	if cfg.Pickup {
		b.WriteString("pickup    unix  n - n 60 1 pickup\n")
	}
	b.WriteString(`cleanup   unix  n - n - 0 cleanup
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
`)
	if cfg.Pickup {
		b.WriteString("relay     unix  - - n - - smtp\n")
	}
	b.WriteString(`showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
tlsproxy  unix  - - n - 0 tlsproxy
postlog   unix-dgram n - n - 1 postlogd
`)
	return b.String()
}

// User returns the uid and gid of the postfix account.
func User() (uid, gid int, err error) {
	u, err := user.Lookup("postfix")
	if err != nil {
		return 0, 0, fmt.Errorf("postfixlab: no postfix user: %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("postfixlab: postfix uid %q: %w", u.Uid, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("postfixlab: postfix gid %q: %w", u.Gid, err)
	}
	return uid, gid, nil
}

// MakeTraversable sets mode 0755 on dir and on each of its parents below
// root (root itself, "/" and "." are left alone), so that the postfix user
// can reach a directory created under a private temporary directory
// (os.MkdirTemp and testing.T.TempDir create them 0700). Typically root is
// os.TempDir().
func MakeTraversable(dir, root string) error {
	for d := dir; d != root && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("postfixlab: %w", err)
		}
		if filepath.Dir(d) == root {
			break
		}
	}
	return nil
}

// FreeAddr returns a loopback address "127.0.0.1:port" whose port was free
// a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("postfixlab: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitListen waits until addr accepts TCP connections, polling every
// 100 ms with a 200 ms connect timeout. It returns ctx.Err() if ctx ends
// first.
func WaitListen(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
}

// Start writes cfg's main.cf and master.cf, creates the queue and data
// directories, runs "postfix -c Dir check" and "postfix -c Dir start", and
// waits until the instance is ready: its master has written its PID file,
// pickup's trigger socket exists if cfg.Pickup (postdrop wakes pickup
// through it), and cfg.SMTPD accepts connections if set. Readiness is
// awaited for at most 15 s or until ctx ends; if it does not come, Start
// stops the instance and returns an error holding the instance's log.
// Errors from check and start carry postfix's output and the log.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.Dir == "" {
		return nil, errors.New("postfixlab: Config.Dir is empty")
	}
	command := cfg.Command
	if command == "" {
		var err error
		if command, err = exec.LookPath("postfix"); err != nil {
			command = "/usr/sbin/postfix"
		}
	}
	uid, _, err := User()
	if err != nil {
		return nil, err
	}
	dir := cfg.Dir
	for _, step := range []func() error{
		func() error { return os.Mkdir(filepath.Join(dir, "queue"), 0o755) },
		func() error { return os.Mkdir(filepath.Join(dir, "data"), 0o700) },
		func() error { return os.Chown(filepath.Join(dir, "data"), uid, -1) },
		func() error { return os.WriteFile(filepath.Join(dir, "main.cf"), []byte(MainCF(cfg)), 0o644) },
		func() error { return os.WriteFile(filepath.Join(dir, "master.cf"), []byte(MasterCF(cfg)), 0o644) },
	} {
		if err := step(); err != nil {
			return nil, fmt.Errorf("postfixlab: %w", err)
		}
	}
	p := &Instance{cfg: cfg, command: command}
	if out, err := p.run("check"); err != nil {
		return nil, fmt.Errorf("postfixlab: postfix check: %v\n%s\n%s", err, out, p.logText())
	}
	if out, err := p.run("start"); err != nil {
		return nil, fmt.Errorf("postfixlab: postfix start: %v\n%s\n%s", err, out, p.logText())
	}
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := p.waitReady(wctx); err != nil {
		stopErr := p.Stop(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("postfixlab: instance in %s not ready: %w\n%s", dir, err, p.logText()), stopErr)
	}
	return p, nil
}

func (p *Instance) waitReady(ctx context.Context) error {
	need := []string{filepath.Join(p.cfg.Dir, "queue", "pid", "master.pid")}
	if p.cfg.Pickup {
		need = append(need, filepath.Join(p.cfg.Dir, "queue", "public", "pickup"))
	}
	for _, f := range need {
		for {
			if _, err := os.Stat(f); err == nil {
				break
			}
			if err := sleep(ctx, pollInterval); err != nil {
				return fmt.Errorf("no %s: %w", f, err)
			}
		}
	}
	if p.cfg.SMTPD != "" {
		if err := WaitListen(ctx, p.cfg.SMTPD); err != nil {
			return fmt.Errorf("%s never listened: %w", p.cfg.SMTPD, err)
		}
	}
	return nil
}

// Dir returns the instance's configuration directory (Config.Dir).
func (p *Instance) Dir() string { return p.cfg.Dir }

// Addr returns the smtpd listener's address (Config.SMTPD), or "".
func (p *Instance) Addr() string { return p.cfg.SMTPD }

// Command returns the path of the postfix(1) command the instance runs.
func (p *Instance) Command() string { return p.command }

// run runs "postfix -c Dir args...", bounded by 30 s.
func (p *Instance) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.command, append([]string{"-c", p.cfg.Dir}, args...)...).CombinedOutput()
	return string(out), err
}

// Stop runs "postfix -c Dir stop" (bounded by 30 s) and makes sure the
// master process named by the PID file it had before the stop is gone:
// it waits up to 10 s, or until ctx ends, for the process to exit, and
// then kills it with SIGKILL and says so in the error. Stop is safe to
// call more than once.
func (p *Instance) Stop(ctx context.Context) error {
	pid := p.MasterPID()
	var err error
	if out, rerr := p.run("stop"); rerr != nil {
		err = fmt.Errorf("postfixlab: postfix stop: %v\n%s", rerr, out)
	}
	if pid <= 0 {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	for syscall.Kill(pid, 0) == nil {
		if sleep(wctx, pollInterval) != nil {
			syscall.Kill(pid, syscall.SIGKILL)
			return errors.Join(err, fmt.Errorf("postfixlab: postfix master %d still running after stop; killed", pid))
		}
	}
	return err
}

// MasterPID returns the PID of the instance's master process, from its
// PID file, or 0 if there is none.
func (p *Instance) MasterPID() int {
	b, err := os.ReadFile(filepath.Join(p.cfg.Dir, "queue", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Log returns the instance's log (Dir/maillog, maillog_file in main.cf).
func (p *Instance) Log() ([]byte, error) {
	return os.ReadFile(filepath.Join(p.cfg.Dir, "maillog"))
}

// logText is Log for error messages: the text, or nothing.
func (p *Instance) logText() string {
	b, _ := p.Log()
	return string(b)
}

// WaitLog waits until the log matches re, polling every 100 ms, and
// returns the submatches (as regexp.Regexp.FindSubmatch) and the log it
// matched. If ctx ends first it returns nil, the last log read and
// ctx.Err().
func (p *Instance) WaitLog(ctx context.Context, re *regexp.Regexp) ([][]byte, []byte, error) {
	for {
		l, _ := p.Log()
		if m := re.FindSubmatch(l); m != nil {
			return m, l, nil
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return nil, l, err
		}
	}
}

// sleep waits d or until ctx ends, returning ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
