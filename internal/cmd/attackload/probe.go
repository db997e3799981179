package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/transport/smtpclient"
)

// normalAddr is the normal client's own address; no attack uses it.
var normalAddr = loopback(0, 0, 2)

// loopback returns 127.b.c.d with port 0, for smtpclient.Dialer.LocalAddr.
func loopback(b, c, d byte) *net.TCPAddr { return &net.TCPAddr{IP: net.IPv4(127, b, c, d)} }

// client dials and runs sessions as one loopback address.
type client struct {
	tls  *tls.Config
	from *net.TCPAddr
	body string
}

// dial connects from c.from to addr: greeting, EHLO, STARTTLS, handshake,
// EHLO.
func (c *client) dial(ctx context.Context, addr, hello string) (*smtpclient.Client, error) {
	d := smtpclient.Dialer{TLSConfig: c.tls, Hello: hello, LocalAddr: c.from}
	return d.Dial(ctx, addr)
}

// session is the normal client's whole session: dial, [AUTH PLAIN as the
// user], MAIL, RCPT, DATA of c.body, QUIT. It returns how long it took.
func (c *client) session(ctx context.Context, addr string, auth bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	sc, err := c.dial(ctx, addr, "client.load.test")
	if err != nil {
		return 0, err
	}
	defer sc.Close()
	if auth {
		if err := sc.AuthPlain(ctx, "", user, password); err != nil {
			return 0, err
		}
	}
	if err := sc.Send(ctx, address, address, c.body, false); err != nil {
		return 0, err
	}
	if err := sc.Quit(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// series is what the normal client saw on one port in one phase.
type series struct {
	ok    []time.Duration // successful sessions' latencies
	fails map[string]int  // failed sessions by outcome
}

func (s *series) failed() int {
	n := 0
	for _, v := range s.fails {
		n += v
	}
	return n
}

// stats returns the p50, p95 (nearest rank) and maximum of s.ok, or ok
// false when there are none.
func (s *series) stats() (p50, p95, hi time.Duration, ok bool) {
	if len(s.ok) == 0 {
		return 0, 0, 0, false
	}
	v := slices.Clone(s.ok)
	slices.Sort(v)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(v))+0.999999) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	return rank(0.50), rank(0.95), v[len(v)-1], true
}

// normalRun runs normal sessions to addr one after another, gap apart,
// until n are done (n > 0) or stop is closed (n == 0; a session under way
// is finished), or ctx ends.
func (c *client) normalRun(ctx context.Context, addr string, auth bool, n int, gap time.Duration, stop <-chan struct{}) *series {
	s := &series{fails: map[string]int{}}
	for i := 0; n == 0 || i < n; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return s
			case <-stop:
				return s
			case <-time.After(gap):
			}
		}
		if ctx.Err() != nil {
			return s
		}
		d, err := c.session(ctx, addr, auth)
		if err != nil {
			s.fails[outcome(err)]++
			continue
		}
		s.ok = append(s.ok, d)
	}
	return s
}

// phase is one measurement of both ports.
type phase struct {
	mx, sub *series
	wall    time.Duration
	cpu     time.Duration // the relay's CPU time during the phase
	cpuOK   bool
}

// measure runs the normal client on both ports at once: n sessions each,
// or, with n == 0, until stop is closed.
func measure(ctx context.Context, c *client, r *relayProc, n int, gap time.Duration, stop <-chan struct{}) *phase {
	p := &phase{}
	cpu0, ok0 := r.cpu()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { p.mx = c.normalRun(ctx, r.smtp, false, n, gap, stop) })
	wg.Go(func() { p.sub = c.normalRun(ctx, r.submission, true, n, gap, stop) })
	wg.Wait()
	p.wall = time.Since(start)
	cpu1, ok1 := r.cpu()
	p.cpu, p.cpuOK = cpu1-cpu0, ok0 && ok1
	return p
}

// during runs the normal client on both ports while attack runs, and
// returns the attack's error and the measurement.
func during(ctx context.Context, c *client, r *relayProc, gap time.Duration, attack func() error) (*phase, error) {
	stop := make(chan struct{})
	pc := make(chan *phase, 1)
	go func() { pc <- measure(ctx, c, r, 0, gap, stop) }()
	err := attack()
	close(stop)
	return <-pc, err
}

// outcome names how an attempt ended, for counting: the server's reply
// line for a refusal (its code, enhanced code and text, cut at 60
// characters), else a short kind of network error.
func outcome(err error) string {
	var re *smtpclient.ReplyError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &re):
		step := re.Command
		if step == "" {
			step = "greeting"
		} else if f := strings.Fields(step); len(f) > 0 && f[0] != "AUTH" {
			step = f[0]
		}
		line := re.Reply.String()
		if len(line) > 60 {
			line = line[:60] + "…"
		}
		return step + ": " + line
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the server"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local address"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// counts is a concurrency-safe tally of outcomes.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
}

func (c *counts) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

// matching returns the total of the outcomes starting with prefix.
func (c *counts) matching(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// String lists the outcomes, most frequent first: "N × outcome; ...".
func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tally(c.m)
}

func tally(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d × %s", m[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
