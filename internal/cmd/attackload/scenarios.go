package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/transport/smtpclient"
)

// attackFunc runs one scenario's attack against r while the normal client
// c is measured, and returns the measurement and the attack's own figures.
type attackFunc func(ctx context.Context, cfg *config, c *client, r *relayProc, out io.Writer) (*phase, []string, error)

var attacks = map[string]attackFunc{
	"fill":      fillAttack,
	"parallel":  parallelAttack,
	"slowloris": slowlorisAttack,
	"flood":     floodAttack,
	"idle":      idleAttack,
}

// attacker returns a client that dials from the address from, sharing c's
// TLS configuration.
func (c *client) attacker(from *net.TCPAddr) *client {
	return &client{tls: c.tls, from: from, body: c.body}
}

// fillPerNet addresses of each /24 are used by the fill; the rest of the
// /24 (.251 to .254) stays fresh for the check after it.
const fillPerNet = 250

// maxFill bounds -fill-n: the fill's /24s are 127.10.0.0 to 127.109.255.0.
const maxFill = fillPerNet * 256 * 100

// fillAddr is the fill's address number i: 250 addresses per /24, from
// 127.10.0.1 on.
func fillAddr(i int) *net.TCPAddr {
	k := i / fillPerNet
	return loopback(byte(10+k/256), byte(k%256), byte(i%fillPerNet+1))
}

// fillAttack is the AUTH table fill: each attempt from a new address, AUTH
// PLAIN with an authorization identity other than the user (refused before
// any password check), then the user's right password from fresh
// addresses.
func fillAttack(ctx context.Context, cfg *config, c *client, r *relayProc, out io.Writer) (*phase, []string, error) {
	var next, done atomic.Int64
	var replies counts
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, cfg.fillTime)
	defer cancel()
	p, _ := during(ctx, c, r, cfg.gap, func() error {
		progress := time.NewTicker(15 * time.Second)
		defer progress.Stop()
		finished := make(chan struct{})
		go func() {
			for {
				select {
				case <-finished:
					return
				case <-progress.C:
					n := done.Load()
					fmt.Fprintf(out, "  fill: %d attempts in %.0fs (%.0f/s)\n", n, time.Since(start).Seconds(), float64(n)/time.Since(start).Seconds())
				}
			}
		}()
		var wg sync.WaitGroup
		for range cfg.fillC {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= cfg.fillN || actx.Err() != nil {
						return
					}
					replies.add(fillAttempt(actx, c.attacker(fillAddr(i)), r.submission))
					done.Add(1)
				}
			})
		}
		wg.Wait()
		close(finished)
		return nil
	})
	elapsed := time.Since(start)
	n := int(done.Load())
	last := min(int(next.Load()), cfg.fillN) - 1
	notes := []string{
		fmt.Sprintf("fill attempts: %d of %d in %.1fs (%.0f/s) from %d addresses in %d /24s", n, cfg.fillN, elapsed.Seconds(),
			float64(n)/elapsed.Seconds(), last+1, last/fillPerNet+1),
		"fill replies: " + replies.String(),
	}
	if rss, ok := procRSS(r.cmd.Process.Pid); ok {
		notes = append(notes, fmt.Sprintf("relay resident memory after the fill: %.0f MiB", float64(rss)/(1<<20)))
	}
	// The user, with the right password, from a fresh address in a fresh
	// /24, then from an unused address of the last /24 the fill used.
	k := last / fillPerNet
	for _, a := range []struct {
		what string
		from *net.TCPAddr
	}{
		{"fresh /24", loopback(250, 0, 1)},
		{"fill's last /24", loopback(byte(10+k/256), byte(k%256), fillPerNet+1)},
	} {
		d, err := c.attacker(a.from).session(ctx, r.submission, true)
		res := fmt.Sprintf("accepted (235), whole session %.3fs", d.Seconds())
		if err != nil {
			res = "refused: " + outcome(err)
		}
		notes = append(notes, fmt.Sprintf("after the fill, %s with the right password from %s (%s): %s", user, a.from.IP, a.what, res))
	}
	return p, notes, ctx.Err()
}

// fillAttempt is one fill connection: dial, AUTH PLAIN with a foreign
// authorization identity, close.
func fillAttempt(ctx context.Context, a *client, addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sc, err := a.dial(ctx, addr, "attacker.load.test")
	if err != nil {
		return outcome(err)
	}
	defer sc.Close()
	return outcome(sc.AuthPlain(ctx, "postmaster", user, "a guess"))
}

// parallelAttack opens cfg.parallelN connections from one address, then
// sends AUTH PLAIN with a wrong password on all of them at once.
func parallelAttack(ctx context.Context, cfg *config, c *client, r *relayProc, _ io.Writer) (*phase, []string, error) {
	a := c.attacker(loopback(20, 0, 1))
	var connects, auths counts
	var took time.Duration
	p, _ := during(ctx, c, r, cfg.gap, func() error {
		dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		conns := make([]*smtpclient.Client, cfg.parallelN)
		var wg sync.WaitGroup
		for i := range conns {
			wg.Go(func() {
				sc, err := a.dial(dctx, r.submission, "attacker.load.test")
				connects.add(outcome(err))
				conns[i] = sc
			})
		}
		wg.Wait()
		start := time.Now()
		for i, sc := range conns {
			if sc == nil {
				continue
			}
			wg.Go(func() {
				defer sc.Close()
				auths.add(outcome(sc.AuthPlain(dctx, "", user, fmt.Sprintf("wrong password %d", i))))
				sc.Quit(dctx)
			})
		}
		wg.Wait()
		took = time.Since(start)
		return nil
	})
	checked, limited := auths.matching("AUTH PLAIN: 535"), auths.matching("AUTH PLAIN: 454")
	notes := []string{
		fmt.Sprintf("connections from %s: %d of %d opened; %s", a.from.IP, connects.get("ok"), cfg.parallelN, connects.String()),
		fmt.Sprintf("AUTH replies (all sent at once, answered within %.2fs): %s", took.Seconds(), auths.String()),
		fmt.Sprintf("password checked (535): %d; refused by the limiter (454): %d", checked, limited),
	}
	return p, notes, ctx.Err()
}

// slowConn is one slowloris connection.
type slowConn struct {
	conn   net.Conn
	opened time.Time
	closed chan struct{} // closed when the connection has ended
	lived  time.Duration // until it ended

	mu   sync.Mutex
	last string // the server's last line so far
}

func (s *slowConn) lastLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// slowAddr is the address of slowloris slot j with n addresses: 127.30.0.1
// on, 250 per /24.
func slowAddr(j, n int) *net.TCPAddr {
	k := j % n
	return loopback(30+byte(k/(fillPerNet*256)), byte(k/fillPerNet%256), byte(k%fillPerNet+1))
}

// slowlorisAttack keeps up to cfg.slowConns connections to the MX listener
// open from cfg.slowAddrs addresses, each trickling one byte of an endless
// command line every cfg.slowEvery, for cfg.slowTime after every slot has
// made its first attempt. A connection the relay ends is opened again at
// once, a refused one after cfg.slowEvery, as a determined attacker would.
func slowlorisAttack(ctx context.Context, cfg *config, c *client, r *relayProc, out io.Writer) (*phase, []string, error) {
	var refused, lasts, stillOpen counts
	var open, peak, admitted atomic.Int64
	var lmu sync.Mutex
	var lived []time.Duration
	stop := make(chan struct{})
	sleep := func(d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	jitter := func() time.Duration { return time.Duration(float64(cfg.slowEvery) * (0.5 + rand.Float64())) }
	sem := make(chan struct{}, 50) // connections being opened at once
	var wg, firstTry sync.WaitGroup
	firstTry.Add(cfg.slowConns)
	start := time.Now()
	for j := range cfg.slowConns {
		from := slowAddr(j, cfg.slowAddrs)
		wg.Go(func() {
			first := true
			for {
				select {
				case <-stop:
					return
				default:
				}
				sem <- struct{}{}
				s, why := slowOpen(ctx, from, r.smtp, slowModes[cfg.slowMode].prefix)
				<-sem
				if first {
					firstTry.Done()
					first = false
				}
				if s == nil {
					refused.add(why)
					if !sleep(jitter()) {
						return
					}
					continue
				}
				admitted.Add(1)
				n := open.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				s.trickle(cfg.slowMode, cfg.slowEvery, stop)
				open.Add(-1)
				select {
				case <-stop:
					stillOpen.add(s.lastLine())
					s.conn.Close()
					return
				default:
				}
				// The relay ended it (trickle saw the end, or a write
				// failed and the reader is about to see it).
				select {
				case <-s.closed:
				case <-time.After(5 * time.Second):
					s.conn.Close()
					<-s.closed
				}
				s.conn.Close()
				lmu.Lock()
				lived = append(lived, s.lived)
				lmu.Unlock()
				lasts.add(s.lastLine())
				if !sleep(100 * time.Millisecond) {
					return
				}
			}
		})
	}
	firstTry.Wait()
	fmt.Fprintf(out, "  slowloris: %d of %d connections admitted at the first try in %.1fs; holding for %s\n", admitted.Load(), cfg.slowConns,
		time.Since(start).Seconds(), cfg.slowTime)
	p, _ := during(ctx, c, r, cfg.gap, func() error {
		sleep(cfg.slowTime)
		return nil
	})
	atEnd := open.Load()
	close(stop)
	wg.Wait()
	addrs := slowFrom(cfg.slowAddrs)
	notes := []string{
		fmt.Sprintf("slowloris (%s) from %s to 25, %d slots, one byte per %s each: %d open at the end of %.0fs, at most %d at once; %d admitted in all; refused: %s",
			cfg.slowMode, addrs, cfg.slowConns, cfg.slowEvery, atEnd, time.Since(start).Seconds(), peak.Load(), admitted.Load(), refused.String()),
	}
	if atEnd > 0 {
		notes = append(notes, "the relay's last reply on those still open: "+stillOpen.String())
	}
	if len(lived) > 0 {
		s := &series{ok: lived}
		p50, _, hi, _ := s.stats()
		lo := slices.Min(lived)
		notes = append(notes, fmt.Sprintf("ended by the relay: %d, after %.1fs (first) / %.1fs (median) / %.1fs (longest); its last words: %s",
			len(lived), lo.Seconds(), p50.Seconds(), hi.Seconds(), lasts.String()))
	} else {
		notes = append(notes, "ended by the relay: none")
	}
	return p, notes, ctx.Err()
}

// slowFrom describes the slowloris addresses.
func slowFrom(n int) string {
	if n == 1 {
		return "one address (127.30.0.1)"
	}
	return fmt.Sprintf("%d addresses (127.30.0.1 to %s)", n, slowAddr(n-1, n).IP)
}

// slowOpen connects from one address, reads the greeting and writes
// prefix; it returns the connection if the relay greeted with 220, else nil
// and what happened.
func slowOpen(ctx context.Context, from *net.TCPAddr, addr, prefix string) (*slowConn, string) {
	d := net.Dialer{LocalAddr: from, Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "connect: " + outcome(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	l, err := br.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, "greeting: " + outcome(err)
	}
	if !strings.HasPrefix(l, "220") {
		conn.Close()
		return nil, "greeting: " + cut(strings.TrimSpace(l))
	}
	conn.SetReadDeadline(time.Time{})
	if _, err := io.WriteString(conn, prefix); err != nil {
		conn.Close()
		return nil, "commands: " + outcome(err)
	}
	s := &slowConn{conn: conn, opened: time.Now(), closed: make(chan struct{}), last: cut(strings.TrimSpace(l))}
	go func() {
		// Whatever the server says before the connection ends; the last
		// line is its reason.
		for {
			l, err := br.ReadString('\n')
			s.mu.Lock()
			if l = strings.TrimSpace(l); l != "" {
				s.last = cut(l)
			}
			if err != nil && s.last == "" {
				s.last = "(closed without a reply)"
			}
			s.mu.Unlock()
			if err != nil {
				s.lived = time.Since(s.opened)
				close(s.closed)
				return
			}
		}
	}()
	return s, ""
}

// slowModes are what a slowloris connection trickles, one byte at a time:
//
//	line  "NOOP " and then 'x' for ever: one command line that never ends
//	noop  "NOOP\r\n" over and over: complete commands, each taking
//	      6 × -slow-every
//	data  after EHLO, MAIL, RCPT to the user and DATA (sent at once), a
//	      message body that never ends
var slowModes = map[string]struct {
	prefix string
	byteAt func(i int) byte
}{
	"line": {"", func(i int) byte {
		if i < 5 {
			return "NOOP "[i]
		}
		return 'x'
	}},
	"noop": {"", func(i int) byte { return "NOOP\r\n"[i%6] }},
	"data": {"EHLO slow.load.test\r\nMAIL FROM:<slow@slow.load.test>\r\nRCPT TO:<" + address + ">\r\nDATA\r\n", func(i int) byte {
		if i%72 >= 70 {
			return "\r\n"[i%72-70]
		}
		return 'x'
	}},
}

// trickle writes one byte of mode's pattern every every (jittered ±50%),
// until stop or the connection ends.
func (s *slowConn) trickle(mode string, every time.Duration, stop <-chan struct{}) {
	byteAt := slowModes[mode].byteAt
	for i := 0; ; i++ {
		if _, err := s.conn.Write([]byte{byteAt(i)}); err != nil {
			return
		}
		wait := time.Duration(float64(every) * (0.5 + rand.Float64()))
		select {
		case <-stop:
			return
		case <-s.closed:
			return
		case <-time.After(wait):
		}
	}
}

// cut shortens a server line to 60 characters.
func cut(l string) string {
	if len(l) > 60 {
		return l[:60] + "…"
	}
	return l
}

// floodAttack is the bcrypt flood: cfg.floodRate AUTH attempts per second
// with the user's name and wrong passwords, each from a new /24.
func floodAttack(ctx context.Context, cfg *config, c *client, r *relayProc, _ io.Writer) (*phase, []string, error) {
	total := max(1, int(cfg.floodRate*cfg.floodTime.Seconds()))
	interval := time.Duration(float64(time.Second) / cfg.floodRate)
	var replies counts
	var skipped atomic.Int64
	var lmu sync.Mutex
	authLat := &series{}
	var elapsed time.Duration
	p, _ := during(ctx, c, r, cfg.gap, func() error {
		sem := make(chan struct{}, 200)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range total {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
			if ctx.Err() != nil {
				break
			}
			select {
			case sem <- struct{}{}:
			default:
				skipped.Add(1)
				continue
			}
			a := c.attacker(loopback(byte(40+i/256), byte(i%256), 1))
			wg.Go(func() {
				defer func() { <-sem }()
				actx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				sc, err := a.dial(actx, r.submission, "attacker.load.test")
				if err != nil {
					replies.add(outcome(err))
					return
				}
				defer sc.Close()
				t0 := time.Now()
				err = sc.AuthPlain(actx, "", user, fmt.Sprintf("wrong password %d", i))
				d := time.Since(t0)
				o := outcome(err)
				replies.add(o)
				if strings.HasPrefix(o, "AUTH PLAIN: ") {
					lmu.Lock()
					authLat.ok = append(authLat.ok, d)
					lmu.Unlock()
				}
				sc.Quit(actx)
			})
		}
		elapsed = time.Since(start)
		wg.Wait()
		return nil
	})
	sent := total - int(skipped.Load())
	notes := []string{
		fmt.Sprintf("flood: %d AUTH attempts in %.1fs (%.1f/s), each from its own /24; %d not sent (200 in flight)", sent, elapsed.Seconds(),
			float64(sent)/elapsed.Seconds(), skipped.Load()),
		"flood replies: " + replies.String(),
	}
	if p50, p95, hi, ok := authLat.stats(); ok {
		notes = append(notes, fmt.Sprintf("flood AUTH reply time: p50 %.3fs, p95 %.3fs, max %.3fs", p50.Seconds(), p95.Seconds(), hi.Seconds()))
	}
	return p, notes, ctx.Err()
}
