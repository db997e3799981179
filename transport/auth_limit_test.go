package transport

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialFrom is dial from the loopback source address ip (any 127.0.0.0/8
// address reaches the loopback listener on Linux), so that tests can be
// several clients.
func dialFrom(t testing.TB, ip, addr string) *dialogue {
	t.Helper()
	nd := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := nd.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &dialogue{t: t, conn: c, r: bufio.NewReader(c)}
}

// tlsSessionFrom connects from ip, upgrades with STARTTLS and sends EHLO.
func tlsSessionFrom(t testing.TB, ts *testServer, ip string) *dialogue {
	t.Helper()
	d := dialFrom(t, ip, ts.addr)
	d.greet()
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	d.expect("EHLO c.test", "250")
	return d
}

// sendAtOnce sends line(i) on every ds[i] at once and returns the replies
// ("error: ..." for a connection that failed).
func sendAtOnce(ds []*dialogue, line func(i int) string) []string {
	var wg sync.WaitGroup
	replies := make([]string, len(ds))
	for i, d := range ds {
		wg.Go(func() {
			if _, err := io.WriteString(d.conn, line(i)+"\r\n"); err != nil {
				replies[i] = "error: " + err.Error()
				return
			}
			r, err := d.tryRead()
			if err != nil {
				r = "error: " + err.Error()
			}
			replies[i] = r
		})
	}
	wg.Wait()
	return replies
}

// countingAuth is an Authenticator that counts the calls reaching it and
// the most running at once, accepts alice/wonderland after delay and
// refuses anything else.
type countingAuth struct {
	delay              time.Duration
	calls, running, hi atomic.Int64
}

func (a *countingAuth) Authenticate(ctx context.Context, user, pass string) error {
	a.calls.Add(1)
	n := a.running.Add(1)
	defer a.running.Add(-1)
	for {
		h := a.hi.Load()
		if n <= h || a.hi.CompareAndSwap(h, n) {
			break
		}
	}
	select {
	case <-time.After(a.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if user == "alice" && pass == "wonderland" {
		return nil
	}
	return fmt.Errorf("%w: wrong password", ErrAuthFailed)
}

// TestAuthTableFillNoLockout: more distinct failing client networks than the
// limiter's table holds do not lock out a legitimate user arriving from a
// fresh address: the table evicts instead of refusing. Each failure is the
// cheap one of the red-team run (an AUTH PLAIN authorization identity that
// differs, refused before any password check).
func TestAuthTableFillNoLockout(t *testing.T) {
	const bound = 16
	s := &Server{Kind: KindSubmission, Authenticator: testTable(t), authTableSize: bound}
	ts := startServer(t, s, newSrvPKI(t))
	for i := range bound + 8 {
		d := tlsSessionFrom(t, ts, fmt.Sprintf("127.1.%d.1", i+1))
		d.expect("AUTH PLAIN "+b64("mallory\x00alice\x00guess"), "535 5.7.8 ")
		d.conn.Close()
	}
	d := tlsSessionFrom(t, ts, "127.2.0.1")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
	d.expect("MAIL FROM:<alice@example.org>", "250 ")
}

// TestAuthParallelOneAddress: parallel AUTH attempts from one address, all
// sent at once on real TLS connections, let at most AuthMaxFailures
// password checks reach the Authenticator: each attempt is counted before
// the check runs. The others get 454 4.7.0.
func TestAuthParallelOneAddress(t *testing.T) {
	const parallel, limit = 40, 5
	auth := &countingAuth{delay: 100 * time.Millisecond}
	s := &Server{Kind: KindSubmission, Authenticator: auth, AuthMaxFailures: limit, AuthMaxConcurrent: parallel}
	ts := startServer(t, s, newSrvPKI(t))
	ds := make([]*dialogue, parallel)
	for i := range ds {
		ds[i] = tlsSessionFrom(t, ts, "127.0.0.1")
	}
	replies := sendAtOnce(ds, func(i int) string { return "AUTH PLAIN " + b64("\x00alice\x00guess"+fmt.Sprint(i)) })
	var failed, limited int
	for _, r := range replies {
		switch {
		case strings.HasPrefix(r, "535 5.7.8 "):
			failed++
		case strings.HasPrefix(r, "454 4.7.0 "):
			limited++
		default:
			t.Errorf("reply %q", r)
		}
	}
	if n := auth.calls.Load(); n > limit || n != int64(failed) {
		t.Errorf("%d password checks reached the Authenticator (%d answered 535), want at most %d", n, failed, limit)
	}
	if failed+limited != parallel || failed == 0 {
		t.Errorf("%d failed, %d limited of %d", failed, limited, parallel)
	}
}

// limiterStep is one operation on an authLimiter in TestAuthLimiter.
type limiterStep struct {
	at   time.Duration // since the test's epoch
	op   string        // "fail": begin, left counted; "ok": begin then release; "hold": begin, kept for "release"; "release"; "limited"
	addr string
	want bool // begin succeeded, or limited reported
}

func tcpAddr(ip string) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 25} }

// TestAuthLimiter runs the limiter as a pure structure with an injected
// clock: per-address and per-network limits, counting at begin, release,
// window expiry, and LRU eviction in a small table. Limits: 2 per address,
// 3 per network, 1-minute window, 3 entries per tier.
func TestAuthLimiter(t *testing.T) {
	cases := []struct {
		name  string
		steps []limiterStep
	}{
		{"address limit", []limiterStep{
			{0, "fail", "192.0.2.1", true},
			{0, "fail", "192.0.2.1", true},
			{0, "fail", "192.0.2.1", false},
			{0, "limited", "192.0.2.1", true},
			{0, "limited", "192.0.2.2", false},
			{0, "fail", "192.0.2.2", true},
		}},
		{"counted at begin", []limiterStep{
			{0, "hold", "192.0.2.1", true},
			{0, "hold", "192.0.2.1", true},
			{0, "fail", "192.0.2.1", false}, // two still in flight
			{0, "release", "192.0.2.1", false},
			{0, "fail", "192.0.2.1", true},
		}},
		{"success gives back", []limiterStep{
			{0, "ok", "192.0.2.1", true},
			{0, "ok", "192.0.2.1", true},
			{0, "ok", "192.0.2.1", true},
			{0, "fail", "192.0.2.1", true},
			{0, "fail", "192.0.2.1", true},
			{0, "limited", "192.0.2.1", true},
		}},
		{"window", []limiterStep{
			{0, "fail", "192.0.2.1", true},
			{30 * time.Second, "fail", "192.0.2.1", true},
			{59 * time.Second, "limited", "192.0.2.1", true},
			{time.Minute, "limited", "192.0.2.1", false},
			{time.Minute, "fail", "192.0.2.1", true},
		}},
		{"release after the window restarted", []limiterStep{
			{0, "hold", "192.0.2.1", true},
			{time.Minute, "fail", "192.0.2.1", true},
			{time.Minute, "fail", "192.0.2.1", true},
			{time.Minute, "release", "192.0.2.1", false}, // belongs to the old window
			{time.Minute, "limited", "192.0.2.1", true},
		}},
		{"IPv4 /24 tier", []limiterStep{
			{0, "fail", "192.0.2.1", true},
			{0, "fail", "192.0.2.2", true},
			{0, "fail", "192.0.2.3", true},
			{0, "limited", "192.0.2.4", true},
			{0, "fail", "192.0.2.4", false},
			{0, "fail", "192.0.3.1", true},
			{0, "fail", "::ffff:192.0.2.9", false}, // IPv4-mapped is IPv4
		}},
		{"IPv6 /64 and /48", []limiterStep{
			{0, "fail", "2001:db8:0:1::1", true},
			{0, "fail", "2001:db8:0:1:ffff::2", true},
			{0, "limited", "2001:db8:0:1::3", true}, // same /64
			{0, "fail", "2001:db8:0:2::1", true},    // same /48: its third
			{0, "fail", "2001:db8:0:3::1", false},
			{0, "fail", "2001:db8:1::1", true},
		}},
		{"full table evicts the least recently counted", []limiterStep{
			{0, "fail", "192.0.2.1", true},
			{0, "fail", "198.51.100.1", true},
			{0, "fail", "203.0.113.1", true},
			{0, "fail", "192.0.2.1", true}, // 192.0.2.1 is now the most recent
			{0, "limited", "192.0.2.1", true},
			{1, "fail", "10.0.0.1", true}, // evicts 198.51.100.1 on both tiers, never refuses
			{1, "limited", "192.0.2.1", true},
			{1, "fail", "198.51.100.1", true},
			{1, "fail", "198.51.100.1", true}, // its count started again
			{1, "fail", "198.51.100.1", false},
		}},
	}
	epoch := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newAuthLimiter(2, 3, time.Minute, 3)
			held := map[string][]authAttempt{}
			for i, st := range c.steps {
				now, a := epoch.Add(st.at), tcpAddr(st.addr)
				var got bool
				switch st.op {
				case "fail", "ok", "hold":
					att, ok := l.begin(a, now)
					got = ok
					if ok && st.op == "ok" {
						att.release()
					}
					if ok && st.op == "hold" {
						held[st.addr] = append(held[st.addr], att)
					}
				case "release":
					h := held[st.addr]
					h[0].release()
					held[st.addr] = h[1:]
				case "limited":
					got = l.limited(a, now)
				}
				if got != st.want {
					t.Fatalf("step %d %+v: got %v", i, st, got)
				}
			}
			if len(l.hosts.m) > 3 || len(l.nets.m) > 3 {
				t.Errorf("table over its bound: %d hosts, %d networks", len(l.hosts.m), len(l.nets.m))
			}
		})
	}
}

// TestAuthLimiterDropsExpired: a new entry first drops the expired ones
// from the least recently used end, so an idle table shrinks.
func TestAuthLimiterDropsExpired(t *testing.T) {
	l := newAuthLimiter(2, 3, time.Minute, 3)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, ip := range []string{"192.0.2.1", "198.51.100.1", "203.0.113.1"} {
		l.begin(tcpAddr(ip), now)
	}
	l.begin(tcpAddr("198.51.100.1"), now.Add(time.Second)) // its window started at now: expires with the others
	if _, ok := l.begin(tcpAddr("10.0.0.1"), now.Add(time.Minute)); !ok {
		t.Fatal("refused")
	}
	if len(l.hosts.m) != 1 || len(l.nets.m) != 1 {
		t.Errorf("%d hosts, %d networks left, want 1 each", len(l.hosts.m), len(l.nets.m))
	}
}

// TestAuthLimiterRealBound fills the limiter at its real bound with more
// distinct client networks than it holds, as the red team did: no begin is
// refused, memory stays bounded, and a fresh address still gets its
// attempts.
func TestAuthLimiterRealBound(t *testing.T) {
	l := newAuthLimiter(DefaultAuthMaxFailures, DefaultAuthMaxNetworkFailures, DefaultAuthFailureWindow, authLimiterMaxEntries)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ip := make(net.IP, 16)
	ip[0], ip[1] = 0x20, 0x01
	a := &net.TCPAddr{IP: ip}
	for i := range authLimiterMaxEntries + 1000 {
		ip[2], ip[3], ip[4] = byte(i>>16), byte(i>>8), byte(i) // a new /48 each time
		if _, ok := l.begin(a, now); !ok {
			t.Fatalf("attempt %d from a new network refused", i)
		}
	}
	if len(l.hosts.m) != authLimiterMaxEntries || len(l.nets.m) != authLimiterMaxEntries {
		t.Fatalf("table sizes %d, %d; want the bound %d", len(l.hosts.m), len(l.nets.m), authLimiterMaxEntries)
	}
	fresh := tcpAddr("192.0.2.1")
	for i := range DefaultAuthMaxFailures {
		if _, ok := l.begin(fresh, now); !ok {
			t.Fatalf("fresh address refused at attempt %d", i)
		}
	}
	if !l.limited(fresh, now) {
		t.Error("fresh address not limited after its own failures")
	}
}

// TestAuthNetworkTier: failures from different addresses of one IPv4 /24
// add up to AuthMaxNetworkFailures, after which even good credentials from
// a new address of that network get 454 4.7.0; another /24 is unaffected.
func TestAuthNetworkTier(t *testing.T) {
	s := &Server{Kind: KindSubmission, Authenticator: testTable(t), AuthMaxFailures: 2, AuthMaxNetworkFailures: 3}
	ts := startServer(t, s, newSrvPKI(t))
	for i := range 3 {
		d := tlsSessionFrom(t, ts, fmt.Sprintf("127.3.0.%d", i+1))
		d.expect("AUTH PLAIN "+b64("\x00alice\x00guess"), "535 5.7.8 ")
	}
	d := tlsSessionFrom(t, ts, "127.3.0.200")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "454 4.7.0 Too many failed authentication attempts")
	d = tlsSessionFrom(t, ts, "127.4.0.1")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
}

// TestAuthConcurrencyBound: more concurrent AUTHs than AuthMaxConcurrent
// slots, against a slow Authenticator: no more than the bound run at once,
// those that wait past AuthQueueTimeout get "454 4.7.0 Temporary
// authentication failure", and that does not count as their failure (with
// AuthMaxFailures 1 their retry succeeds).
func TestAuthConcurrencyBound(t *testing.T) {
	const clients, slots = 8, 2
	auth := &countingAuth{delay: 300 * time.Millisecond}
	s := &Server{Kind: KindSubmission, Authenticator: auth, AuthMaxFailures: 1,
		AuthMaxConcurrent: slots, AuthQueueTimeout: 400 * time.Millisecond}
	ts := startServer(t, s, newSrvPKI(t))
	ds := make([]*dialogue, clients)
	for i := range ds {
		ds[i] = tlsSessionFrom(t, ts, fmt.Sprintf("127.5.%d.1", i+1))
	}
	replies := sendAtOnce(ds, func(int) string { return "AUTH PLAIN " + b64("\x00alice\x00wonderland") })
	var ok, busy int
	for i, r := range replies {
		switch {
		case strings.HasPrefix(r, "235 "):
			ok++
		case r == "454 4.7.0 Temporary authentication failure":
			busy++
			ds[i].expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
		default:
			t.Errorf("reply %q", r)
		}
	}
	if hi := auth.hi.Load(); hi > slots {
		t.Errorf("%d password checks ran at once, bound %d", hi, slots)
	}
	if ok < slots || busy == 0 {
		t.Errorf("%d succeeded, %d timed out waiting; want at least %d and 1", ok, busy, slots)
	}
	if !strings.Contains(ts.log.String(), "no password check slot free") {
		t.Error("queue timeout not logged")
	}
}

// TestAuthQueueHonoursContext: an AUTH waiting for a password-check slot
// stops waiting when its connection's context ends (Server.Close), long
// before AuthQueueTimeout.
func TestAuthQueueHonoursContext(t *testing.T) {
	block := AuthenticatorFunc(func(ctx context.Context, _, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	})
	s := &Server{Kind: KindSubmission, Authenticator: block, AuthMaxConcurrent: 1, AuthQueueTimeout: time.Hour}
	ts := startServer(t, s, newSrvPKI(t))
	holder := tlsSessionFrom(t, ts, "127.6.0.1")
	holder.send("AUTH PLAIN " + b64("\x00alice\x00x") + "\r\n")
	waitFor(t, "the slot taken", func() bool { return len(s.authSlots) == 1 })
	waiter := tlsSessionFrom(t, ts, "127.6.1.1")
	waiter.send("AUTH PLAIN " + b64("\x00alice\x00y") + "\r\n")
	time.Sleep(50 * time.Millisecond)
	if strings.Contains(ts.log.String(), "no password check slot free") {
		t.Fatal("waiter gave up before the context ended")
	}
	s.Close()
	waitFor(t, "the waiter to give up", func() bool {
		return strings.Contains(ts.log.String(), "no password check slot free") && strings.Contains(ts.log.String(), "context canceled")
	})
}
