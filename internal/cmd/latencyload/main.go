// Command latencyload measures outbound delivery over an emulated network
// round trip: n messages to one destination, from a sender in one network
// namespace to a TLS sink in another, over a veth pair. The delay is tc
// netem's on both ends of the pair where the kernel has it (-delay netem),
// else a userspace proxy in the sink's namespace that holds every chunk
// for half the round trip in each direction (-delay proxy; the default,
// since the machines here have no sch_netem). It reports msgs/s and the
// sink's round trips per message (client flights that followed a server
// reply) for each sender, in -rounds rounds whose order rotates, with
// the median [min, max] over the rounds and, per round, each sender's
// msgs/s and round trips per message over Postfix's:
//
//   - connector: transport.Connector, one message per Deliver call from c
//     workers, connection pool on, PIPELINING and CHUNKING used;
//   - sequential: the same with Connector.DisablePipelining (one command
//     per round trip);
//   - postfix: Postfix's smtp(8) client, relaying the same messages with
//     smtp_tls_security_level = verify, c connections to the destination
//     and TLS connection reuse (smtp_tls_connection_reuse, through
//     tlsproxy(8)), its best configuration for this.
//
// It needs root (namespaces, Postfix) and creates everything it uses,
// removing it at the end: the namespaces mtl-snd-PID and mtl-rcv-PID (with
// /etc/netns/NAME/hosts naming the sink), a veth pair with 10.201.0.1/30
// and 10.201.0.2/30, netem qdiscs if asked for, a private Postfix
// instance. No packet leaves the two namespaces.
//
//	go run ./internal/cmd/latencyload -n 1000 -c 4 -rtt 50ms -rounds 5
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/internal/postfixlab"
	"github.com/mailtls/mailtls/internal/stats"
	"github.com/mailtls/mailtls/internal/testmsg"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
)

const (
	sinkName = "sink.example"
	sndAddr  = "10.201.0.1"
	rcvAddr  = "10.201.0.2"
)

type config struct {
	n, c, size int
	rounds     int
	rtt        time.Duration
	delay      string // "proxy" or "netem"
	senders    []string
	// internal (child roles)
	role, cert, key, ca, listen string
	sequential                  bool
}

func main() {
	cfg := &config{}
	var senders string
	flag.IntVar(&cfg.n, "n", 1000, "messages per sender")
	flag.IntVar(&cfg.c, "c", 4, "concurrent deliveries (connections) per sender")
	flag.IntVar(&cfg.size, "size", 1024, "message size in octets")
	flag.IntVar(&cfg.rounds, "rounds", 1, "rounds; each runs every sender once, in an order that rotates")
	flag.DurationVar(&cfg.rtt, "rtt", 50*time.Millisecond, "emulated round-trip time (half on each side)")
	flag.StringVar(&cfg.delay, "delay", "proxy", "how the round trip is emulated: proxy (userspace, in the sink's namespace) or netem (tc)")
	flag.StringVar(&senders, "senders", "connector,sequential,postfix", "comma-separated senders")
	flag.StringVar(&cfg.role, "role", "", "internal: child role (sink, connector)")
	flag.StringVar(&cfg.cert, "cert", "", "internal: certificate file")
	flag.StringVar(&cfg.key, "key", "", "internal: key file")
	flag.StringVar(&cfg.ca, "ca", "", "internal: CA file")
	flag.StringVar(&cfg.listen, "listen", "", "internal: sink address")
	flag.BoolVar(&cfg.sequential, "sequential", false, "internal: Connector.DisablePipelining")
	flag.Parse()
	cfg.senders = strings.Split(senders, ",")
	ctx := context.Background()
	var err error
	switch cfg.role {
	case "sink":
		err = runSink(ctx, cfg, os.Stdin, os.Stdout)
	case "connector":
		err = runConnector(ctx, cfg, os.Stdout)
	case "":
		err = runParent(ctx, cfg, os.Stdout)
	default:
		err = fmt.Errorf("unknown -role %q", cfg.role)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// netns is the pair of namespaces and the link between them.
type netns struct{ snd, rcv string }

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func setupNetns(rtt time.Duration, netem bool) (*netns, error) {
	pid := os.Getpid()
	ns := &netns{snd: fmt.Sprintf("mtl-snd-%d", pid), rcv: fmt.Sprintf("mtl-rcv-%d", pid)}
	vs, vr := fmt.Sprintf("mtls%d", pid%100000), fmt.Sprintf("mtlr%d", pid%100000)
	delay := fmt.Sprintf("%dus", rtt.Microseconds()/2)
	steps := [][]string{
		{"ip", "netns", "add", ns.snd}, {"ip", "netns", "add", ns.rcv},
		{"ip", "link", "add", vs, "type", "veth", "peer", "name", vr},
		{"ip", "link", "set", vs, "netns", ns.snd}, {"ip", "link", "set", vr, "netns", ns.rcv},
		{"ip", "-n", ns.snd, "addr", "add", sndAddr + "/30", "dev", vs},
		{"ip", "-n", ns.rcv, "addr", "add", rcvAddr + "/30", "dev", vr},
		{"ip", "-n", ns.snd, "link", "set", "lo", "up"}, {"ip", "-n", ns.rcv, "link", "set", "lo", "up"},
		{"ip", "-n", ns.snd, "link", "set", vs, "up"}, {"ip", "-n", ns.rcv, "link", "set", vr, "up"},
	}
	if netem {
		steps = append(steps,
			[]string{"ip", "netns", "exec", ns.snd, "tc", "qdisc", "add", "dev", vs, "root", "netem", "delay", delay},
			[]string{"ip", "netns", "exec", ns.rcv, "tc", "qdisc", "add", "dev", vr, "root", "netem", "delay", delay})
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			ns.remove()
			return nil, err
		}
	}
	// ip netns exec bind-mounts /etc/netns/NAME/hosts over /etc/hosts.
	dir := filepath.Join("/etc/netns", ns.snd)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ns.remove()
		return nil, err
	}
	hosts := "127.0.0.1 localhost\n" + rcvAddr + " " + sinkName + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		ns.remove()
		return nil, err
	}
	return ns, nil
}

func (ns *netns) remove() {
	exec.Command("ip", "netns", "del", ns.snd).Run()
	exec.Command("ip", "netns", "del", ns.rcv).Run()
	os.RemoveAll(filepath.Join("/etc/netns", ns.snd))
}

// child is a process started in a namespace, spoken to over its stdio.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startChild(ns string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, self}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &child{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

func (c *child) line() (string, error) {
	l, err := c.out.ReadString('\n')
	return strings.TrimSpace(l), err
}

func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// sinkCounts asks the sink for its message and round-trip counters.
func (c *child) sinkCounts() (msgs, turns int64, err error) {
	if _, err := io.WriteString(c.in, "count\n"); err != nil {
		return 0, 0, err
	}
	l, err := c.line()
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(l, "count %d %d", &msgs, &turns); err != nil {
		return 0, 0, fmt.Errorf("sink said %q", l)
	}
	return msgs, turns, nil
}

func runParent(ctx context.Context, cfg *config, stdout io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("latencyload needs root: network namespaces, tc netem and Postfix")
	}
	dir, err := os.MkdirTemp("", "latencyload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, err := certtest.NewCA("latencyload CA")
	if err != nil {
		return err
	}
	leaf, err := ca.Issue(certtest.LeafOptions{DNSNames: []string{sinkName}})
	if err != nil {
		return err
	}
	files := map[string][]byte{"cert.pem": leaf.CertPEM, "key.pem": leaf.KeyPEM, "ca.pem": ca.CertPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	if cfg.delay != "proxy" && cfg.delay != "netem" {
		return fmt.Errorf("-delay %q: want proxy or netem", cfg.delay)
	}
	if cfg.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", cfg.rounds)
	}
	ns, err := setupNetns(cfg.rtt, cfg.delay == "netem")
	if err != nil {
		return err
	}
	defer ns.remove()
	fmt.Fprintf(stdout, "%d messages of %d bytes, %d connections, emulated RTT %v (%s, %v each way), %d rounds\n",
		cfg.n, cfg.size, cfg.c, cfg.rtt, cfg.delay, cfg.rtt/2, cfg.rounds)
	fmt.Fprintf(stdout, "%-5s %-10s %8s %10s %12s\n", "round", "sender", "seconds", "msgs/s", "RTT/msg")
	rate, rtt := map[string][]float64{}, map[string][]float64{}
	for r := 0; r < cfg.rounds; r++ {
		for i := range cfg.senders {
			s := cfg.senders[(r+i)%len(cfg.senders)] // ABC, BCA, CAB, ...
			elapsed, perMsg, err := measure(ctx, cfg, ns, dir, s)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, s, err)
			}
			rate[s] = append(rate[s], float64(cfg.n)/elapsed.Seconds())
			rtt[s] = append(rtt[s], perMsg)
			fmt.Fprintf(stdout, "%-5d %-10s %8.2f %10.1f %12.2f\n", r+1, s, elapsed.Seconds(), float64(cfg.n)/elapsed.Seconds(), perMsg)
		}
	}
	for _, s := range cfg.senders {
		fmt.Fprintf(stdout, "result %-10s msgs/s %s RTT/msg %s\n", s, stats.Format(rate[s], "%.1f"), stats.Format(rtt[s], "%.2f"))
	}
	// Per round: how many times Postfix's msgs/s the sender reached, and
	// how many of Postfix's round trips per message it needed.
	if len(rate["postfix"]) > 0 {
		for _, s := range cfg.senders {
			if s == "postfix" {
				continue
			}
			var rr, tr []float64
			for i := range rate[s] {
				rr = append(rr, rate[s][i]/rate["postfix"][i])
				tr = append(tr, rtt[s][i]/rtt["postfix"][i])
			}
			fmt.Fprintf(stdout, "ratio %s/postfix msgs/s %s RTT/msg %s\n", s, stats.Format(rr, "%.3f"), stats.Format(tr, "%.3f"))
		}
	}
	return nil
}

// measure runs one sender once against a new sink: how long it took
// until the sink had every message, and the sink's round trips per
// message.
func measure(ctx context.Context, cfg *config, ns *netns, dir, s string) (time.Duration, float64, error) {
	proxyDelay := time.Duration(0)
	if cfg.delay == "proxy" {
		proxyDelay = cfg.rtt
	}
	sink, err := startChild(ns.rcv, "-role", "sink", "-cert", filepath.Join(dir, "cert.pem"),
		"-key", filepath.Join(dir, "key.pem"), "-listen", net.JoinHostPort(rcvAddr, "25"), "-rtt", proxyDelay.String())
	if err != nil {
		return 0, 0, err
	}
	defer sink.stop()
	if l, err := sink.line(); err != nil || !strings.HasPrefix(l, "listening") {
		return 0, 0, fmt.Errorf("sink: %q %v", l, err)
	}
	elapsed, err := runSender(ctx, cfg, ns, dir, s, sink)
	if err != nil {
		return 0, 0, err
	}
	msgs, turns, err := sink.sinkCounts()
	if err != nil {
		return 0, 0, err
	}
	if msgs != int64(cfg.n) {
		return 0, 0, fmt.Errorf("the sink has %d messages, want %d", msgs, cfg.n)
	}
	return elapsed, float64(turns) / float64(msgs), nil
}

func runSender(ctx context.Context, cfg *config, ns *netns, dir, sender string, sink *child) (time.Duration, error) {
	switch sender {
	case "connector", "sequential":
		args := []string{"-role", "connector", "-ca", filepath.Join(dir, "ca.pem"), "-n", strconv.Itoa(cfg.n),
			"-c", strconv.Itoa(cfg.c), "-size", strconv.Itoa(cfg.size)}
		if sender == "sequential" {
			args = append(args, "-sequential")
		}
		ch, err := startChild(ns.snd, args...)
		if err != nil {
			return 0, err
		}
		defer ch.stop()
		l, err := ch.line()
		if err != nil {
			return 0, err
		}
		var secs float64
		if _, err := fmt.Sscanf(l, "elapsed %g", &secs); err != nil {
			return 0, fmt.Errorf("sender said %q", l)
		}
		return time.Duration(secs * float64(time.Second)), nil
	case "postfix":
		return runPostfix(ctx, cfg, ns, dir, sink)
	}
	return 0, fmt.Errorf("unknown sender %q", sender)
}

// runPostfix queues n messages in a private Postfix (delivery deferred),
// then releases them and times until the sink has them all.
func runPostfix(ctx context.Context, cfg *config, ns *netns, dir string, sink *child) (time.Duration, error) {
	pdir, err := os.MkdirTemp(dir, "postfix-")
	if err != nil {
		return 0, err
	}
	if err := os.Chmod(pdir, 0o755); err != nil {
		return 0, err
	}
	if err := postfixlab.MakeTraversable(pdir, "/"); err != nil {
		return 0, err
	}
	wrapper := filepath.Join(dir, "postfix-in-netns")
	script := "#!/bin/sh\nexec ip netns exec " + ns.snd + " /usr/sbin/postfix \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return 0, err
	}
	c := strconv.Itoa(cfg.c)
	inst, err := postfixlab.Start(ctx, postfixlab.Config{Dir: pdir, Command: wrapper, Pickup: true, MainCF: map[string]string{
		"myhostname":                            "client.example",
		"relayhost":                             "[" + sinkName + "]:25",
		"smtp_host_lookup":                      "native",
		"smtp_tls_security_level":               "verify",
		"smtp_tls_CAfile":                       filepath.Join(dir, "ca.pem"),
		"smtp_tls_verify_cert_match":            "nexthop",
		"default_transport":                     "smtp",
		"relay_transport":                       "smtp",
		"defer_transports":                      "smtp",
		"smtp_destination_concurrency_limit":    c,
		"initial_destination_concurrency":       c,
		"default_destination_concurrency_limit": c,
		"smtp_connection_cache_on_demand":       "yes",
		"smtp_tls_connection_reuse":             "yes",
		"smtp_connection_cache_destinations":    "[" + sinkName + "]:25",
		// A delivery that fails is retried within seconds, not after
		// the default 300 s backoff that once stalled a small run for
		// five minutes; the report counts such deferrals.
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "2s",
		"queue_run_delay":      "1s",
	}})
	if err != nil {
		return 0, err
	}
	defer inst.Stop(context.WithoutCancel(ctx))
	body := testmsg.Body("latencyload", cfg.size)
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 8)
	for i := 0; i < cfg.n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			cmd := exec.Command("/usr/sbin/sendmail", "-C", pdir, "-f", "sender@client.example", "--", fmt.Sprintf("r%d@dest.example", i))
			cmd.Stdin = strings.NewReader("Subject: latencyload\r\n\r\n" + body)
			if out, err := cmd.CombinedOutput(); err != nil {
				failed.Add(1)
				log.Printf("sendmail: %v %s", err, out)
			}
		}(i)
	}
	wg.Wait()
	if failed.Load() > 0 {
		return 0, fmt.Errorf("%d sendmail calls failed", failed.Load())
	}
	// Wait until all are queued (deferred), then release them.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := exec.Command("/usr/sbin/postqueue", "-c", pdir, "-j").Output()
		if strings.Count(string(out), "\"queue_id\"") >= cfg.n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("postfix queued %d of %d", strings.Count(string(out), "\"queue_id\""), cfg.n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := sh("/usr/sbin/postconf", "-c", pdir, "-e", "defer_transports="); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := sh(wrapper, "-c", pdir, "reload"); err != nil {
		return 0, err
	}
	// Right after a reload the master may still be restarting its
	// services: retry the flush for a few seconds.
	for try := 0; ; try++ {
		err := sh("/usr/sbin/postqueue", "-c", pdir, "-f")
		if err == nil {
			break
		}
		if try == 50 {
			log, _ := inst.Log()
			return 0, fmt.Errorf("%w\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		msgs, _, err := sink.sinkCounts()
		if err != nil {
			return 0, err
		}
		if msgs >= int64(cfg.n) {
			if log, err := inst.Log(); err == nil {
				fmt.Fprintf(os.Stderr, "postfix: %d of %d deliveries on a reused connection (conn_use= in its log), %d deferred and retried\n",
					strings.Count(string(log), "conn_use="), cfg.n, retried(log))
			}
			return time.Since(start), nil
		}
		if time.Since(start) > 10*time.Minute {
			return 0, fmt.Errorf("postfix delivered %d of %d", msgs, cfg.n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// retried counts the deliveries a Postfix log shows deferred after a
// failed attempt, leaving out the deferrals defer_transports made while
// the messages were being queued.
func retried(log []byte) int {
	n := 0
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "status=deferred") && !strings.Contains(l, "(deferred transport)") {
			n++
		}
	}
	return n
}

// runConnector delivers n messages through a Connector from c workers, one
// message per Deliver call, and prints "elapsed SECONDS".
func runConnector(ctx context.Context, cfg *config, stdout io.Writer) error {
	pem, err := os.ReadFile(cfg.ca)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in -ca")
	}
	conn := &transport.Connector{
		Hostname:          "client.example",
		Policy:            policy.Fixed{Level: policy.Verify},
		Routes:            []transport.Route{{Domain: "*", NextHop: sinkName + ":25"}},
		RootCAs:           roots,
		Pool:              transport.PoolConfig{MaxIdle: cfg.c},
		DisablePipelining: cfg.sequential,
	}
	defer conn.Close()
	body := []byte("Subject: latencyload\r\n\r\n" + testmsg.Body("latencyload", cfg.size))
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, cfg.c)
	start := time.Now()
	for w := 0; w < cfg.c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(cfg.n) {
					return
				}
				env := &transport.Envelope{ID: fmt.Sprintf("m%d", i), From: "sender@client.example",
					Recipients: []transport.Recipient{{Address: fmt.Sprintf("r%d@dest.example", i)}}}
				res, err := conn.Deliver(ctx, env, strings.NewReader(string(body)), int64(len(body)))
				if err == nil && res.Recipients[0].Status != transport.Delivered {
					err = fmt.Errorf("message %d: %v %v", i, res.Recipients[0].Status, res.Recipients[0].Reply)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errc:
		return err
	default:
	}
	fmt.Fprintf(stdout, "elapsed %g\n", elapsed.Seconds())
	return nil
}

// runSink serves a TLS sink (go-smtp, STARTTLS, body discarded) and answers
// "count" on stdin with "count MESSAGES TURNS": the messages accepted and
// the client flights that followed a server reply, summed over every
// connection (the round trips the client waited for).
func runSink(ctx context.Context, cfg *config, stdin io.Reader, stdout io.Writer) error {
	cert, err := tls.LoadX509KeyPair(cfg.cert, cfg.key)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	var msgs, turns atomic.Int64
	s := smtp.NewServer(countBackend{&msgs})
	s.Domain = sinkName
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.ErrorLog = log.New(io.Discard, "", 0)
	inner := l
	if cfg.rtt > 0 {
		// The userspace round trip: clients reach the proxy on -listen,
		// the server listens on loopback behind it.
		if inner, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		go proxy(l, inner.Addr().String(), cfg.rtt/2)
	}
	go s.Serve(turnListener{Listener: inner, turns: &turns})
	fmt.Fprintf(stdout, "listening %s\n", l.Addr())
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if sc.Text() == "count" {
			fmt.Fprintf(stdout, "count %d %d\n", msgs.Load(), turns.Load())
		}
	}
	s.Close()
	return nil
}

type countBackend struct{ n *atomic.Int64 }

func (b countBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return countSession(b), nil }

type countSession countBackend

func (countSession) Reset()                               {}
func (countSession) Logout() error                        { return nil }
func (countSession) Mail(string, *smtp.MailOptions) error { return nil }
func (countSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s countSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.n.Add(1)
	return nil
}

// turnListener counts, per connection, the reads that follow a write: each
// is a flight the client sent after waiting for the server.
type turnListener struct {
	net.Listener
	turns *atomic.Int64
}

func (l turnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &turnConn{Conn: c, turns: l.turns}, nil
}

type turnConn struct {
	net.Conn
	turns *atomic.Int64
	mu    sync.Mutex
	wrote bool
}

func (c *turnConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.wrote {
			c.turns.Add(1)
			c.wrote = false
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *turnConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.wrote = true
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// proxy forwards every connection accepted on l to target, holding each
// chunk read in either direction for delay before writing it on: a link
// with a round trip of twice delay and no bandwidth limit.
func proxy(l net.Listener, target string, delay time.Duration) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			go delayedCopy(s, c, delay)
			delayedCopy(c, s, delay)
		}()
	}
}

func delayedCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range ch {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			ch <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(delay)}
		}
		if err != nil {
			close(ch)
			<-done
			return
		}
	}
}
