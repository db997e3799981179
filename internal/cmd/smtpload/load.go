package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/internal/stats"
	"github.com/mailtls/mailtls/internal/testmsg"
	"github.com/mailtls/mailtls/transport/smtpclient"
)

// child is one target running in its own process.
type child struct {
	kind   string
	addr   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	out    *os.File // read end of the child's stdout, closed once it is reaped
	stderr *boundedBuffer
	done   chan error
	// sessions is the number of connections a go-smtp child (gosmtp, a
	// sink) served, as its final line said; 0 for the others.
	sessions int64
	// logged is the number of lines the relay child logged; 0 for the
	// others.
	logged int64
}

// boundedBuffer keeps the first 64 KiB written to it (a child's stderr).
type boundedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.b.Len(); room > 0 {
		b.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startChild re-executes this program with -serve kind and waits for its
// "listening ADDR" line.
func startChild(ctx context.Context, cfg *config, kind, certFile, keyFile string, extra ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{"-serve", kind, "-cert", certFile, "-key", keyFile,
		"-spool", cfg.spool, "-store", cfg.store, "-timeout", cfg.timeout.String(), "-cpuprofile", cfg.profileDir}, extra...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	c := &child{kind: kind, cmd: cmd, stderr: &boundedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	// An os.Pipe rather than cmd.StdoutPipe: Wait closes a StdoutPipe as
	// soon as the child exits, which raced with reading its final
	// "accepted N" line ("read |0: file already closed"). With our own pipe
	// the line stays readable after the exit; c.out is closed once the
	// child is reaped.
	out, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = w
	c.out, c.stdout = out, bufio.NewReader(out)
	err = cmd.Start()
	w.Close() // the child holds its own copy
	if err != nil {
		out.Close()
		return nil, err
	}
	// Reap the child as soon as it exits; with our own pipe this does not
	// cut short reading its output.
	go func() { c.done <- cmd.Wait() }()
	type res struct {
		line string
		err  error
	}
	lc := make(chan res, 1)
	go func() { l, err := readLine(c.stdout); lc <- res{l, err} }()
	select {
	case r := <-lc:
		addr, ok := strings.CutPrefix(r.line, "listening ")
		if r.err != nil || !ok {
			c.kill()
			return nil, fmt.Errorf("%s: %w (got %q, %v)\n%s", kind, errChildExited, r.line, r.err, c.stderr.String())
		}
		c.addr = addr
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		c.kill()
		return nil, fmt.Errorf("%s: no listening address within 30s\n%s", kind, c.stderr.String())
	}
	return c, nil
}

// kill ends the child by its PID and reaps it.
func (c *child) kill() {
	c.cmd.Process.Kill()
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	c.out.Close()
}

// count asks the child how many messages its handler has taken so far.
func (c *child) count(ctx context.Context) (int64, error) {
	if _, err := io.WriteString(c.stdin, "count\n"); err != nil {
		return 0, fmt.Errorf("%s: %w", c.kind, err)
	}
	type res struct {
		line string
		err  error
	}
	rc := make(chan res, 1)
	go func() { l, err := readLine(c.stdout); rc <- res{l, err} }()
	var r res
	select {
	case r = <-rc:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("%s: no count within 10s", c.kind)
	}
	s, ok := strings.CutPrefix(r.line, "count ")
	n, err := strconv.ParseInt(s, 10, 64)
	if r.err != nil || !ok || err != nil {
		return 0, fmt.Errorf("%s: bad count line %q (%v)", c.kind, r.line, r.err)
	}
	return n, nil
}

// stop closes the child's stdin, reads its final "accepted N sessions S
// logged L" line (see serveMain) and waits for it to exit; after 15 s it
// is killed.
func (c *child) stop() (int64, error) {
	c.stdin.Close()
	type res struct {
		n   int64
		err error
	}
	rc := make(chan res, 1)
	go func() {
		l, err := readLine(c.stdout)
		if err != nil {
			rc <- res{0, fmt.Errorf("%s: no final count: %w", c.kind, err)}
			return
		}
		s, ok := strings.CutPrefix(l, "accepted ")
		s, sess, _ := strings.Cut(s, " sessions ")
		sess, logged, _ := strings.Cut(sess, " logged ")
		n, perr := strconv.ParseInt(s, 10, 64)
		c.sessions, _ = strconv.ParseInt(sess, 10, 64)
		c.logged, _ = strconv.ParseInt(logged, 10, 64)
		if !ok || perr != nil {
			rc <- res{0, fmt.Errorf("%s: unexpected final line %q", c.kind, l)}
			return
		}
		rc <- res{n, nil}
	}()
	var r res
	select {
	case r = <-rc:
	case <-time.After(15 * time.Second):
		r.err = fmt.Errorf("%s: did not report within 15s", c.kind)
	}
	select {
	case err := <-c.done:
		if err != nil && r.err == nil {
			r.err = fmt.Errorf("%s: %v\n%s", c.kind, err, c.stderr.String())
		}
	case <-time.After(15 * time.Second):
		c.kill()
		if r.err == nil {
			r.err = fmt.Errorf("%s: did not exit within 15s; killed", c.kind)
		}
	}
	c.out.Close()
	return r.n, r.err
}

// measurement is one target's run in one round.
type measurement struct {
	target   string
	msgs     int
	elapsed  time.Duration
	accepted time.Duration // relay: until the last 250 (elapsed: until the sink had all)
	loadCPU  time.Duration // CPU time of the load process in the round
}

func (m measurement) rate() float64 { return float64(m.msgs) / m.elapsed.Seconds() }

// loadMain starts the targets, drives the rounds and prints the report.
func loadMain(ctx context.Context, cfg *config, stdout io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "smtpload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := certstore.WriteSelfSigned(certFile, keyFile, certNames, 24*time.Hour); err != nil {
		return err
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	// No ClientSessionCache: a full handshake on every connection. X25519
	// only, the key exchange Postfix (OpenSSL 3.0) and Go share; Go would
	// otherwise use its hybrid X25519MLKEM768 with Go servers only.
	clientTLS := &tls.Config{RootCAs: roots, ServerName: hostname, CurvePreferences: []tls.CurveID{tls.X25519}}

	targets := slices.Clone(cfg.targets)
	isPostfix := func(t string) bool { return t == "postfix" || t == "postfix-relay" }
	if slices.ContainsFunc(targets, isPostfix) {
		if why := postfixUnavailable(); why != "" {
			if cfg.requirePostfix {
				return fmt.Errorf("postfix target: %s", why)
			}
			fmt.Fprintf(stdout, "skipping the postfix targets: %s (-require-postfix makes this an error)\n", why)
			targets = slices.DeleteFunc(targets, isPostfix)
		}
	}

	children := map[string]*child{}
	pfs := map[string]*postfixServer{}
	defer func() {
		for _, c := range children {
			c.kill()
		}
		for _, pf := range pfs {
			pf.stop()
		}
	}()
	// sinkOf is the sink child a target delivers to, if it relays.
	sinkOf := map[string]string{"relay": "sink", "postfix-relay": "pfsink"}
	addrs := map[string]string{}
	for _, t := range targets {
		switch t {
		case "postfix":
			pf, err := startPostfix(ctx, dir, certFile, keyFile, "")
			if err != nil {
				return err
			}
			pfs[t], addrs[t] = pf, pf.addr
		case "postfix-relay":
			sink, err := startChild(ctx, cfg, "sink", certFile, keyFile, "-profile-name", "pfsink")
			if err != nil {
				return err
			}
			children["pfsink"] = sink
			pf, err := startPostfix(ctx, dir, certFile, keyFile, sink.addr)
			if err != nil {
				return err
			}
			pfs[t], addrs[t] = pf, pf.addr
		case "relay":
			sink, err := startChild(ctx, cfg, "sink", certFile, keyFile)
			if err != nil {
				return err
			}
			children["sink"] = sink
			c, err := startChild(ctx, cfg, t, certFile, keyFile, "-sink", sink.addr)
			if err != nil {
				return err
			}
			children[t], addrs[t] = c, c.addr
		default:
			c, err := startChild(ctx, cfg, t, certFile, keyFile)
			if err != nil {
				return err
			}
			children[t], addrs[t] = c, c.addr
		}
	}

	mode := "DATA"
	if cfg.bdat {
		mode = "BDAT"
	}
	fmt.Fprintf(stdout, "smtpload %s %s %s/%s NumCPU=%d GOMAXPROCS=%d c=%d n=%d size=%d per-conn=%d mode=%s rounds=%d targets=%s spool=%s store=%s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0),
		cfg.conc, cfg.n, cfg.size, cfg.perConn, mode, cfg.rounds, strings.Join(targets, ","), cfg.spool, cfg.store)
	for _, pf := range pfs {
		fmt.Fprintf(stdout, "postfix %s\n", pf.version)
		break
	}

	// The CPU time each target's processes use over the whole run (its
	// children, or the Postfix master and every daemon it forks, and the
	// sink it relays to), sampled now and once every message is
	// confirmed delivered.
	// The sinks are measured alone too: they stand for the next hop's
	// MTA, on another machine in production, but share these cores here.
	sinkPID := func(t string) []int {
		if c := children[sinkOf[t]]; c != nil {
			return []int{c.cmd.Process.Pid}
		}
		return nil
	}
	pidsOf := func(t string) []int {
		pids := sinkPID(t)
		if pf := pfs[t]; pf != nil {
			pids = append(pids, pf.MasterPID())
		}
		if c := children[t]; c != nil {
			pids = append(pids, c.cmd.Process.Pid)
		}
		return pids
	}
	// sample reads the CPU time of every target's processes and of its
	// sink alone into all and sink; the first error stops it.
	sample := func(all, sink map[string]time.Duration) error {
		for _, t := range targets {
			var err error
			if all[t], err = cpuOf(pidsOf(t)...); err != nil {
				return err
			}
			if sink[t], err = cpuOf(sinkPID(t)...); err != nil {
				return err
			}
		}
		return nil
	}
	cpuStart, sinkStart := map[string]time.Duration{}, map[string]time.Duration{}
	cpuErr := sample(cpuStart, sinkStart)

	body := makeBody(cfg.size)
	byTarget := map[string][]measurement{}
	for r := 0; r < cfg.rounds; r++ {
		k := len(targets)
		for i := 0; i < k; i++ {
			t := targets[(r+i)%k] // ABC, BCA, CAB, ...
			var m measurement
			var err error
			load0, lerr := selfCPU()
			if sink, ok := sinkOf[t]; ok {
				m, err = driveRelay(ctx, cfg, addrs[t], clientTLS, body, children[sink])
			} else {
				m, err = drive(ctx, cfg, addrs[t], clientTLS, body)
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, t, err)
			}
			load1, lerr2 := selfCPU()
			if lerr == nil && lerr2 == nil {
				m.loadCPU = load1 - load0
			}
			m.target = t
			byTarget[t] = append(byTarget[t], m)
			extra := ""
			if _, ok := sinkOf[t]; ok {
				extra = fmt.Sprintf(" (end to end; all accepted after %.3fs)", m.accepted.Seconds())
			}
			fmt.Fprintf(stdout, "round %d %-7s %d msgs in %.3fs = %.1f msgs/s%s\n", r+1, t, m.msgs, m.elapsed.Seconds(), m.rate(), extra)
		}
	}

	// Every message the client saw accepted must have reached the handler
	// (for relay: the relay's handler and then the sink; for postfix: the
	// discard transport, as its log says).
	want := int64(cfg.rounds * cfg.n)
	// Postfix first: its CPU is sampled once its log shows every message
	// delivered.
	delivered := map[string]int64{}
	for t, pf := range pfs {
		n, err := pf.waitDelivered(ctx, want, 60*time.Second)
		if err != nil {
			return err
		}
		delivered[t] = n
	}
	cpuUsed, sinkUsed := map[string]time.Duration{}, map[string]time.Duration{}
	if cpuErr == nil {
		cpuErr = sample(cpuUsed, sinkUsed)
	}
	if cpuErr == nil {
		for _, t := range targets {
			cpuUsed[t] -= cpuStart[t]
			sinkUsed[t] -= sinkStart[t]
		}
	}
	for _, t := range append(slices.Clone(targets), "sink", "pfsink") {
		if pf := pfs[t]; pf != nil {
			what := "discarded"
			if pf.relays {
				what = "sent to its sink"
			}
			fmt.Fprintf(stdout, "accepted %-7s %d (250 replies; its log shows %d %s)\n", t, want, delivered[t], what)
			continue
		}
		c := children[t]
		if c == nil {
			continue
		}
		n, err := c.stop()
		delete(children, t)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%s: the server accepted %d messages, the client sent %d", t, n, want)
		}
		if c.kind == "sink" && c.sessions > 0 {
			// The sink's connections are the relay's (or Postfix's) outbound
			// ones: messages per connection is how often reuse hit.
			fmt.Fprintf(stdout, "accepted %-7s %d over %d connections (%.1f messages each)\n", t, n, c.sessions, float64(n)/float64(c.sessions))
			continue
		}
		if t == "relay" {
			if err := checkRelayLog(n, c.logged); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "accepted %-7s %d (its log has %d lines)\n", t, n, c.logged)
			continue
		}
		fmt.Fprintf(stdout, "accepted %-7s %d\n", t, n)
	}
	for t, pf := range pfs {
		if err := pf.stop(); err != nil {
			return err
		}
		delete(pfs, t)
	}

	for _, t := range targets {
		var rates []float64
		for _, m := range byTarget[t] {
			rates = append(rates, m.rate())
		}
		med, lo, hi := stats.Spread(rates)
		fmt.Fprintf(stdout, "result %-7s msgs/s median %.1f min %.1f max %.1f\n", t, med, lo, hi)
	}
	// CPU per message: the target's processes over the run, and the load
	// process while it drove that target.
	perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(want) }
	if cpuErr != nil {
		fmt.Fprintf(stdout, "cpu not measured: %v\n", cpuErr)
	} else {
		for _, t := range targets {
			var load time.Duration
			for _, m := range byTarget[t] {
				load += m.loadCPU
			}
			sink := ""
			if _, ok := sinkOf[t]; ok {
				sink = fmt.Sprintf(" (%.0f in its sink)", perMsg(sinkUsed[t]))
			}
			fmt.Fprintf(stdout, "cpu %-7s %.0f µs/msg in its processes%s, %.0f µs/msg in the load process\n", t, perMsg(cpuUsed[t]), sink, perMsg(load))
		}
		for _, pf := range []string{"postfix", "postfix-relay"} {
			if !contains(targets, "relay") || !contains(targets, pf) || cpuUsed["relay"] <= 0 {
				continue
			}
			// The share without the sinks only when the relay's own time
			// was counted (10 ms ticks: a short run may have none).
			without := ""
			if own := cpuUsed["relay"] - sinkUsed["relay"]; own > 0 {
				without = fmt.Sprintf("; %.3f without the sinks", float64(cpuUsed[pf]-sinkUsed[pf])/float64(own))
			}
			fmt.Fprintf(stdout, "cpu %s/relay %.3f (CPU per message%s)\n", pf, float64(cpuUsed[pf])/float64(cpuUsed["relay"]), without)
		}
	}
	ratio := func(a, b string) {
		var ratios []float64
		for i, m := range byTarget[a] {
			ratios = append(ratios, m.rate()/byTarget[b][i].rate())
		}
		med, lo, hi := stats.Spread(ratios)
		fmt.Fprintf(stdout, "ratio %s/%s median %.3f min %.3f max %.3f\n", a, b, med, lo, hi)
	}
	for _, t := range targets[1:] {
		ratio(t, "gosmtp")
	}
	for _, pf := range []string{"postfix", "postfix-relay"} {
		if contains(targets, "relay") && contains(targets, pf) {
			ratio("relay", pf)
		}
	}
	return nil
}

// driveRelay drives the relay target like drive, but the round ends when
// the sink has received every message: the rate is end to end.
func driveRelay(ctx context.Context, cfg *config, addr string, tlsCfg *tls.Config, body string, sink *child) (measurement, error) {
	base, err := sink.count(ctx)
	if err != nil {
		return measurement{}, err
	}
	start := time.Now()
	m, err := drive(ctx, cfg, addr, tlsCfg, body)
	if err != nil {
		return m, err
	}
	m.accepted = time.Since(start)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := sink.count(ctx)
		if err != nil {
			return m, err
		}
		if n-base == int64(cfg.n) {
			break
		}
		if n-base > int64(cfg.n) {
			return m, fmt.Errorf("the sink received %d messages, %d were sent", n-base, cfg.n)
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("the sink received %d of %d messages within 2 minutes of the last 250", n-base, cfg.n)
		}
		time.Sleep(time.Millisecond)
	}
	m.elapsed = time.Since(start)
	return m, nil
}

// makeBody returns a message of exactly size octets with CRLF lines, none
// starting with '.'.
func makeBody(size int) string { return testmsg.Body("smtpload", size) }

// drive sends cfg.n messages to addr over cfg.conc concurrent connections
// of up to cfg.perConn messages each, and times the whole.
func drive(ctx context.Context, cfg *config, addr string, tlsCfg *tls.Config, body string) (measurement, error) {
	var left atomic.Int64
	left.Store(int64(cfg.n))
	take := func() int {
		for {
			l := left.Load()
			if l <= 0 {
				return 0
			}
			k := min(l, int64(cfg.perConn))
			if left.CompareAndSwap(l, l-k) {
				return int(k)
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for range cfg.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := take(); k > 0; k = take() {
				if err := session(ctx, addr, tlsCfg, body, k, cfg.bdat); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return measurement{}, firstErr
	}
	return measurement{msgs: cfg.n, elapsed: time.Since(start)}, nil
}

// session is one client connection: EHLO, STARTTLS, EHLO, msgs × (MAIL,
// RCPT, DATA or BDAT LAST), QUIT, in lock step. Every reply is checked; the
// whole connection gets at most 2 minutes.
func session(ctx context.Context, addr string, tlsCfg *tls.Config, body string, msgs int, bdat bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d := smtpclient.Dialer{TLSConfig: tlsCfg, Hello: "load.test", AfterWrite: quickAck}
	c, err := d.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for range msgs {
		if err := c.Send(ctx, "sender@load.test", "rcpt@load.test", body, bdat); err != nil {
			return err
		}
	}
	if err := c.Quit(ctx); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// checkRelayLog refuses a relay run whose log has fewer than two lines a
// message: at least the Queue's and the Connector's delivery attempt are
// logged for each, so fewer means its logging was off and it was measured
// doing less than Postfix, which logs every message.
func checkRelayLog(msgs, lines int64) error {
	if lines < 2*msgs {
		return fmt.Errorf("relay: its log has %d lines for %d messages, want at least 2 a message", lines, msgs)
	}
	return nil
}
