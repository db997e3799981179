package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport/transporttest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if relayBin != "" {
		os.RemoveAll(filepath.Dir(relayBin))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	relayBin  string
	buildErr  error
)

// relayBinary builds examples/relay once per test binary.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clustertest")
		if err != nil {
			buildErr = err
			return
		}
		relayBin = filepath.Join(dir, "relay")
		goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goCmd, "build", "-o", relayBin, "github.com/mailtls/mailtls/examples/relay").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building examples/relay: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return relayBin
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// event is a moment the rig broke something: a node killed or paused, or
// the database restarted.
type event struct {
	at, until time.Time // from the signal or the restart to the process's end or the database's return
	node      string    // "" for the database
	what      string    // "kill", "stop", "cont", "db-restart"
}

// world is one sink, one database and the relays sharing it.
type world struct {
	t     *testing.T
	dir   string
	sink  *transporttest.Server
	dsn   string // "" for DirStore
	ca    *transporttest.CA
	nodes []*node
	// stall, when set, is called at each RCPT; it may block.
	stall func(addr string)

	mu     sync.Mutex
	events []event
}

func (w *world) note(node, what string) {
	w.mu.Lock()
	w.events = append(w.events, event{time.Now(), time.Now(), node, what})
	w.mu.Unlock()
}

// restartDB restarts PostgreSQL with "pg_ctl restart -m immediate"'s
// signals (pgtest.Cluster.RestartImmediate) and notes the outage.
func (w *world) restartDB() {
	e := event{at: time.Now(), what: "db-restart"}
	if err := pgtest.Shared(w.t).RestartImmediate(); err != nil {
		w.t.Fatal(err)
	}
	e.until = time.Now()
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
}

func (w *world) eventList() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events...)
}

// newWorld starts the sink. Recipients bad-* are refused with 550 (the
// sender gets a DSN), slow-* get 451 half the time, the rest are accepted.
func newWorld(t *testing.T, dsn string) *world {
	w := &world{t: t, dir: t.TempDir(), dsn: dsn}
	ca, err := transporttest.NewCA("clustertest CA")
	if err != nil {
		t.Fatal(err)
	}
	w.ca = ca
	w.sink = transporttest.NewServer(t, transporttest.ServerConfig{
		Hostname: "mx.sink.test", Cert: transporttest.GoodCert, CA: ca, DSN: true,
		Rcpt: func(addr string) error {
			if w.stall != nil {
				w.stall(addr)
			}
			return transporttest.MixedRcpt(addr)
		},
	})
	return w
}

// node is one relay process; it keeps its ports, data directory and
// arguments across restarts.
type node struct {
	w    *world
	name string // its -hostname, which it says in EHLO
	addr string // its -smtp listener
	args []string
	log  *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// addNode prepares a relay process (not started). extra are more flags.
func (w *world) addNode(extra ...string) *node {
	t := w.t
	name := fmt.Sprintf("node%d.test", len(w.nodes)+1)
	dir := filepath.Join(w.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	leaf, err := w.ca.Issue(transporttest.LeafOptions{DNSNames: []string{name}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(f string, b []byte) string {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	n := &node{w: w, name: name, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	n.args = []string{
		"-data", filepath.Join(dir, "data"), "-hostname", name,
		"-smtp", n.addr, "-submission", "", "-submissions", "",
		"-cert", write("cert.pem", leaf.CertPEM), "-key", write("key.pem", leaf.KeyPEM),
		"-relay-networks", "127.0.0.0/8", "-retry", "500ms,1s,2s",
		"-route", "*=" + w.sink.Addr, "-outbound-ca", write("ca.pem", w.ca.CertPEM),
		"-policy", write("tls_policy", fmt.Appendf(nil, "[%s]:%d secure match=%s\n", w.sink.Host, w.sink.Port, w.sink.Hostname)),
		"-log-format", "json", "-cert-watch", "0", "-drain-timeout", "2s",
	}
	if w.dsn != "" {
		n.args = append(n.args, "-queue", w.dsn)
	} else {
		n.args = append(n.args, "-spool", "dir") // the baseline of issue 11: one relay on DirStore
	}
	n.args = append(n.args, extra...)
	n.log, err = os.Create(filepath.Join(dir, "relay.log"))
	if err != nil {
		t.Fatal(err)
	}
	w.nodes = append(w.nodes, n)
	t.Cleanup(func() { n.stop(); n.log.Close() })
	return n
}

// start runs the process and waits until its listener answers.
func (n *node) start() {
	t := n.w.t
	cmd := exec.Command(relayBinary(t), n.args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", n.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("%s exited at start; log:\n%s", n.name, n.tail(20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after 30s: %v", n.name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the process and, for SIGKILL, waits for its end.
func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-done
	}
}

// kill ends the process with SIGKILL and notes when: between the call
// and the process's end, since a transaction may finish in between.
func (n *node) kill() {
	e := event{at: time.Now(), node: n.name, what: "kill"}
	n.signal(syscall.SIGKILL)
	e.until = time.Now()
	n.w.mu.Lock()
	n.w.events = append(n.w.events, e)
	n.w.mu.Unlock()
}

// stop ends the process with SIGTERM (SIGKILL after 10s), by its PID.
func (n *node) stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (n *node) tail(lines int) string {
	b, _ := os.ReadFile(n.log.Name())
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// grep returns the lines of the node's log that hold s.
func (n *node) grep(s string) string {
	b, _ := os.ReadFile(n.log.Name())
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// logged reports whether the node's log holds s.
func (n *node) logged(s string) bool {
	b, _ := os.ReadFile(n.log.Name())
	return bytes.Contains(b, []byte(s))
}

// accepted is one message a relay answered 250 for.
type accepted struct {
	node  string
	rcpts []string
}

// sender sends messages to the nodes from several goroutines until ctx
// ends, each to a node chosen at random, and keeps those that got 250.
type sender struct {
	w  *world
	mu sync.Mutex
	ok []accepted
	n  int // attempts
}

func (s *sender) run(ctx context.Context, workers int, pause time.Duration) {
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				s.one(fmt.Sprintf("%d-%d", i, seq))
				time.Sleep(pause)
			}
		})
	}
	wg.Wait()
}

func (s *sender) one(tag string) {
	n := s.w.nodes[rand.IntN(len(s.w.nodes))]
	rcpts := []string{"ok-" + tag + "@a.test", "slow-" + tag + "@b.test", "bad-" + tag + "@c.test"}
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	if err := s.send(n, "sender-"+tag+"@origin.test", rcpts); err == nil {
		s.mu.Lock()
		s.ok = append(s.ok, accepted{n.name, rcpts})
		s.mu.Unlock()
	}
}

// send runs one transaction over STARTTLS; nil means the relay said 250
// to the final dot.
func (s *sender) send(n *node, from string, rcpts []string) error {
	conn, err := net.DialTimeout("tcp", n.addr, 2*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: n.name, RootCAs: s.w.ca.Pool})
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(wc, "From: <%s>\r\nSubject: cluster test\r\nMessage-ID: <%s>\r\n\r\n%s\r\n", from, from, strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 28))
	if err := wc.Close(); err != nil {
		return err
	}
	c.Quit()
	return nil
}

func (s *sender) accepted() []accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]accepted(nil), s.ok...)
}

// delivery is one transaction the sink accepted for one recipient.
type delivery struct {
	node       string
	begin, end time.Time
	report     bool   // a DSN about the recipient, not the message to it
	msgID      string // the DSN's Message-ID: one per report the queue created
}

// sinkDeliveries indexes what the sink accepted by recipient: the
// messages by their recipients, the DSNs by the failed recipient they
// report.
func (w *world) sinkDeliveries() map[string][]delivery {
	t := w.t
	out := map[string][]delivery{}
	for _, m := range w.sink.Messages() {
		if m.TLS == nil {
			t.Errorf("a message reached the sink without TLS (from %s)", m.Envelope.Helo)
		}
		d := delivery{node: m.Envelope.Helo, begin: m.MailAt, end: m.Envelope.ReceivedAt}
		if m.Envelope.From != "" {
			for _, r := range m.Envelope.Recipients {
				out[r.Address] = append(out[r.Address], d)
			}
			continue
		}
		rep, err := ndr.Parse(bytes.NewReader(m.Data))
		if err != nil {
			t.Errorf("a DSN does not parse: %v", err)
			continue
		}
		d.report = true
		if h, err := mail.ReadMessage(bytes.NewReader(m.Data)); err == nil {
			d.msgID = h.Header.Get("Message-ID")
		}
		for _, r := range rep.Recipients {
			addr := r.FinalRecipient
			if i := strings.IndexByte(addr, ';'); i >= 0 {
				addr = strings.TrimSpace(addr[i+1:])
			}
			out[addr] = append(out[addr], d)
		}
	}
	for _, ds := range out {
		sort.Slice(ds, func(i, j int) bool { return ds[i].begin.Before(ds[j].begin) })
	}
	return out
}

// counts is what the crash and lease tests check.
type counts struct {
	accepted, recipients int
	lost                 int // a recipient of an accepted message neither delivered nor reported
	overlaps             int // two transactions for one recipient at the same time
	dupDeliveries        int // a recipient delivered again after a kill or a restart in between
	dupReports           int // the same DSN (same Message-ID) delivered again, likewise
	unexplained          int // a repeat with no kill of the first node and no database restart in between, or a second DSN created
}

func (c counts) String() string {
	return fmt.Sprintf("%d messages accepted (250), %d recipients; lost %d; concurrent deliveries %d; "+
		"duplicates %d deliveries + %d DSNs explained by a kill or restart between the sink's 250 and the next attempt, %d unexplained",
		c.accepted, c.recipients, c.lost, c.overlaps, c.dupDeliveries, c.dupReports, c.unexplained)
}

// check compares what the sender got 250 for with what the sink holds.
// A repeat is explained when the node of the earlier transaction was
// killed (or the database restarted) after that transaction's 250 and
// before the repeat began: the window between the remote's 250 and the
// queue's state write (RFC 5321 §6.1), which no store can close.
func (w *world) check(acc []accepted) (c counts, problems []string) {
	got := w.sinkDeliveries()
	events := w.eventList()
	explained := func(a, b delivery) bool {
		for _, e := range events {
			if (e.node == a.node && e.what == "kill" || e.what == "db-restart") && !e.until.Before(a.end) && e.at.Before(b.begin) {
				return true
			}
		}
		return false
	}
	c.accepted = len(acc)
	for _, m := range acc {
		for _, r := range m.rcpts {
			c.recipients++
			ds := got[r]
			var want []delivery
			for _, d := range ds {
				if d.report == strings.HasPrefix(r, "bad-") {
					want = append(want, d)
				} else {
					problems = append(problems, fmt.Sprintf("%s: unexpected %s", r, map[bool]string{true: "DSN", false: "delivery"}[d.report]))
				}
			}
			if len(want) == 0 {
				c.lost++
				problems = append(problems, fmt.Sprintf("lost: %s (accepted by %s)", r, m.node))
				continue
			}
			for i := 1; i < len(want); i++ {
				a, b := want[i-1], want[i]
				switch {
				case b.begin.Before(a.end):
					c.overlaps++
					problems = append(problems, fmt.Sprintf("%s delivered by %s and %s at the same time (%s–%s, %s–%s)", r,
						a.node, b.node, a.begin.Format("15:04:05.000"), a.end.Format("15:04:05.000"), b.begin.Format("15:04:05.000"), b.end.Format("15:04:05.000")))
				case !explained(a, b):
					c.unexplained++
					problems = append(problems, fmt.Sprintf("%s delivered by %s at %s, again by %s at %s, with no kill of %s or database restart between", r,
						a.node, a.end.Format("15:04:05.000"), b.node, b.begin.Format("15:04:05.000"), a.node))
				case a.report && a.msgID != b.msgID:
					c.unexplained++
					problems = append(problems, fmt.Sprintf("two DSNs created about %s: %s by %s, %s by %s", r, a.msgID, a.node, b.msgID, b.node))
				case a.report:
					c.dupReports++
				default:
					c.dupDeliveries++
				}
			}
		}
	}
	return c, problems
}

// drained waits until every recipient of acc is delivered or reported,
// for at most d.
func (w *world) drained(acc []accepted, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		got := w.sinkDeliveries()
		all := true
		for _, m := range acc {
			for _, r := range m.rcpts {
				if len(got[r]) == 0 {
					all = false
				}
			}
		}
		if all {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}
