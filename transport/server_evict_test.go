package transport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// evictedReply is what a connection closed for a newcomer is told.
const evictedReply = "421 4.7.0 mx.test Server busy, closing idle connection"

// holder is one connection an attacker keeps open: idle after the greeting,
// or trickling a command line that never ends. When the server closes it,
// the holder records the server's last line and, while churn is on, opens
// a new connection from the same address at once, as a determined attacker
// does.
type holder struct {
	from, addr string
	trickle    bool

	mu     sync.Mutex
	conn   net.Conn
	ended  []string // the last line of each connection the server ended
	opened int      // connections greeted with 220
	refuse []string // greetings other than 220
}

// open connects and reads the greeting; it reports whether it got a 220.
func (h *holder) open() bool {
	nd := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(h.from)}}
	c, err := nd.Dial("tcp", h.addr)
	if err != nil {
		h.mu.Lock()
		h.refuse = append(h.refuse, "dial: "+err.Error())
		h.mu.Unlock()
		return false
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	l, err := br.ReadString('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	if !strings.HasPrefix(l, "220 ") {
		h.refuse = append(h.refuse, strings.TrimSpace(l)+errText(err))
		c.Close()
		return false
	}
	h.opened++
	h.conn = c
	done := make(chan struct{})
	if h.trickle {
		go func() {
			for i := 0; ; i++ {
				b := byte('x')
				if i < 5 {
					b = "NOOP "[i]
				}
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	go func() {
		defer close(done)
		var last string
		for {
			l, err := br.ReadString('\n')
			if l = strings.TrimSpace(l); l != "" {
				last = l
			}
			if err != nil {
				h.mu.Lock()
				h.ended = append(h.ended, last)
				h.mu.Unlock()
				c.Close()
				return
			}
		}
	}()
	return true
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func (h *holder) snapshot() (ended, refused []string, opened int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ended...), append([]string(nil), h.refuse...), h.opened
}

// churn reopens h's connection whenever the server ends it (a refused
// attempt is retried after 100 ms) until stop is closed.
func (h *holder) churn(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		h.mu.Lock()
		n := len(h.ended)
		open := h.opened
		h.mu.Unlock()
		if n == open { // the current connection ended (or none is open)
			if !h.open() {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (h *holder) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.conn.Close()
	}
}

// TestMaxConnectionsEvictsIdle: with every slot of the listener held by
// idle or trickling connections from several addresses, which reconnect at
// once whenever the server closes them, a normal client from another
// address is admitted and completes a whole session (EHLO, STARTTLS, MAIL,
// RCPT, DATA, QUIT); the connections closed to make room got "421 4.7.0
// ... Server busy, closing idle connection", and the listener never holds
// more than MaxConnections. A newcomer over MaxConnectionsPerClient is still
// refused, and closes no one.
func TestMaxConnectionsEvictsIdle(t *testing.T) {
	const maxConns = 10
	ts := startServer(t, &Server{MaxConnections: maxConns, MaxConnectionsPerClient: 3, Timeouts: ServerTimeouts{Stress: -1, Command: time.Minute}}, newSrvPKI(t))
	var holders []*holder
	for i := 0; i < maxConns; i++ {
		h := &holder{from: "127.0.0." + string(rune('1'+i/3)), addr: ts.addr, trickle: i%2 == 1}
		if !h.open() {
			_, refused, _ := h.snapshot()
			t.Fatalf("filling connection %d from %s: %q", i, h.from, refused)
		}
		holders = append(holders, h)
	}
	defer func() {
		for _, h := range holders {
			h.close()
		}
	}()
	time.Sleep(evictGrace + 200*time.Millisecond) // every holder is now past the grace

	// Over its per-client limit: refused, and nobody is closed for it.
	over := dialFrom(t, "127.0.0.1", ts.addr)
	if got := over.read(); !strings.HasPrefix(got, "421 4.7.0 ") || !strings.Contains(got, "from your address") {
		t.Fatalf("4th connection from 127.0.0.1 at the cap: %q", got)
	}
	time.Sleep(200 * time.Millisecond)
	for _, h := range holders {
		if ended, _, _ := h.snapshot(); len(ended) != 0 {
			t.Fatalf("a newcomer over its per-client limit closed %s's connection: %q", h.from, ended)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Add(1)
		go h.churn(stop, &wg)
	}
	var peak int64
	peakDone := make(chan struct{})
	go func() {
		defer close(peakDone)
		for {
			peak = max(peak, ts.active.Load())
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	// The normal client: whole sessions, one after another for 3 s, with a
	// pause of 100 ms before each command after EHLO, as a client on a slow
	// link.
	sessions := 0
	for start := time.Now(); time.Since(start) < 3*time.Second; sessions++ {
		normalSession(t, ts, "127.0.0.9", 100*time.Millisecond)
	}
	close(stop)
	wg.Wait()
	<-peakDone

	if n := len(ts.rec.all()); n != sessions {
		t.Errorf("%d messages accepted, want %d", n, sessions)
	}
	evicted, retried := 0, 0
	for _, h := range holders {
		ended, refused, _ := h.snapshot()
		for _, l := range ended {
			if l != evictedReply {
				t.Errorf("%s's connection ended with %q, want %q", h.from, l, evictedReply)
			}
			evicted++
		}
		for _, l := range refused {
			if l != "421 4.7.0 mx.test Too many connections, try again later" {
				t.Errorf("%s's connection refused with %q", h.from, l)
			}
			retried++
		}
	}
	if evicted < sessions {
		t.Errorf("%d connections closed for %d sessions of the normal client", evicted, sessions)
	}
	if peak > maxConns {
		t.Errorf("listener held %d connections, more than MaxConnections %d", peak, maxConns)
	}
	t.Logf("%d sessions; %d connections closed for newcomers; %d refused while all were fresh; at most %d counted at once",
		sessions, evicted, retried, peak)
}

// normalSession runs a whole session from ip (greeting, EHLO, STARTTLS,
// EHLO, MAIL, RCPT, DATA, QUIT), pausing before each command after the
// first EHLO, and fails t unless every reply is the expected one.
func normalSession(t *testing.T, ts *testServer, ip string, pause time.Duration) {
	t.Helper()
	d := dialFrom(t, ip, ts.addr)
	defer d.conn.Close()
	if got := d.read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("normal client's greeting: %q", got)
	}
	step := func(line, want string) {
		t.Helper()
		time.Sleep(pause)
		d.expect(line, want)
	}
	d.expect("EHLO client.test", "250") // at once, as clients do
	time.Sleep(pause)
	if err := d.startTLS(ts.pki.clientConfig()); err != nil {
		t.Fatal(err)
	}
	step("EHLO client.test", "250")
	step("MAIL FROM:<a@example.org>", "250 ")
	step("RCPT TO:<b@example.net>", "250 ")
	step("DATA", "354 ")
	step("Subject: x\r\n\r\nhi\r\n.", "250 ")
	step("QUIT", "221 ")
}

// TestEvictionSparesTransfers: at the cap, a newcomer takes the slot of an
// idle connection, the oldest first, before that of a connection in a
// transaction, and never that of a DATA transfer in progress nor of a
// client that has just had a reply to its EHLO; when only those remain,
// the newcomer is refused, and the transfer completes.
func TestEvictionSparesTransfers(t *testing.T) {
	ts := startServer(t, &Server{MaxConnections: 4, Timeouts: ServerTimeouts{Stress: -1, Command: time.Minute}}, newSrvPKI(t))
	data := tlsSessionFrom(t, ts, "127.0.0.1")
	data.expect("MAIL FROM:<a@example.org>", "250 ")
	data.expect("RCPT TO:<b@example.net>", "250 ")
	data.expect("DATA", "354 ")
	stop, sent := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				_, err := io.WriteString(data.conn, ".\r\n")
				sent <- err
				return
			case <-time.After(50 * time.Millisecond):
			}
			// About 20 KiB/s: a transfer that is progressing.
			if _, err := fmt.Fprintf(data.conn, "line %d %s\r\n", i, strings.Repeat("x", 1000)); err != nil {
				sent <- err
				return
			}
		}
	}()
	inTx := tlsSessionFrom(t, ts, "127.0.0.2")
	inTx.expect("MAIL FROM:<a@example.org>", "250 ")
	idle1 := dialFrom(t, "127.0.0.3", ts.addr)
	idle1.greet()
	idle2 := dialFrom(t, "127.0.0.4", ts.addr)
	idle2.read()
	time.Sleep(evictGrace + 200*time.Millisecond)

	newcomer := func(ip string) string {
		t.Helper()
		d := dialFrom(t, ip, ts.addr)
		got := d.read()
		if strings.HasPrefix(got, "220 ") {
			d.expect("EHLO client.test", "250")
		}
		return got
	}
	for i, c := range []struct {
		victim *dialogue
		name   string
	}{{idle1, "the older idle connection"}, {idle2, "the other idle connection"}, {inTx, "the connection in a transaction"}} {
		if got := newcomer("127.0.0." + strconv.Itoa(5+i)); !strings.HasPrefix(got, "220 ") {
			t.Fatalf("newcomer %d: %q", i+1, got)
		}
		if got, err := c.victim.tryRead(); got != evictedReply {
			t.Fatalf("newcomer %d: %s got %q (%v), want %q; server log:\n%s", i+1, c.name, got, err, evictedReply, ts.log.String())
		}
		if _, err := c.victim.tryRead(); err == nil {
			t.Errorf("%s not closed", c.name)
		}
	}
	if got := newcomer("127.0.0.8"); got != "421 4.7.0 mx.test Too many connections, try again later" {
		t.Fatalf("newcomer with only a transfer and fresh connections left: %q", got)
	}
	close(stop)
	if err := <-sent; err != nil {
		t.Fatalf("DATA transfer cut: %v", err)
	}
	if got := data.read(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA transfer: %q", got)
	}
	if n := len(ts.rec.all()); n != 1 {
		t.Errorf("%d messages accepted, want 1", n)
	}
}

// TestEvictionSubmissions: on an implicit-TLS listener, a connection that
// has not begun its handshake is closed without a reply (no TLS session can
// carry one), and an idle TLS session gets the 421 through TLS; a newcomer
// that has only been greeted goes after both.
func TestEvictionSubmissions(t *testing.T) {
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{Kind: KindSubmissions, MaxConnections: 2, Timeouts: ServerTimeouts{Stress: -1}, Authenticator: testTable(t)}, pki)
	silent := dialFrom(t, "127.0.0.1", ts.addr) // no ClientHello
	waitFor(t, "first connection counted", func() bool { return ts.active.Load() == 1 })
	idle := dialTLS(t, ts.addr, pki.clientConfig())
	if got := idle.read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("TLS session: %q", got)
	}
	time.Sleep(evictGrace + 200*time.Millisecond)

	first := dialTLS(t, ts.addr, pki.clientConfig())
	if got := first.read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("first newcomer: %q", got)
	}
	if b, err := io.ReadAll(silent.conn); len(b) != 0 || err != nil {
		t.Fatalf("connection without a handshake: read %q, %v; want a close without a reply", b, err)
	}
	waitFor(t, "the handshake failure logged", func() bool {
		return strings.Contains(ts.log.String(), `error="transport: connection evicted for a new one"`)
	})
	second := dialTLS(t, ts.addr, pki.clientConfig())
	if got := second.read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("second newcomer: %q", got)
	}
	if got, _ := idle.tryRead(); got != evictedReply {
		t.Fatalf("idle TLS session: %q, want %q", got, evictedReply)
	}
}

// TestEvictionStalledData: with no other connection to close, a DATA
// transfer that has received nothing for evictDataStall, or one trickled a
// byte every 100 ms (below DefaultMinDataRate), is closed for a newcomer with
// the 421, in plaintext and under TLS, and its message is not accepted.
func TestEvictionStalledData(t *testing.T) {
	type run struct {
		mode string
		ts   *testServer
		d    *dialogue
	}
	var runs []run
	stop := make(chan struct{})
	defer close(stop)
	for _, mode := range []string{"plaintext", "tls", "tls trickle"} {
		ts := startServer(t, &Server{MaxConnections: 1, Timeouts: ServerTimeouts{Stress: -1}, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
		d := dataDialogue(t, ts, strings.Fields(mode)[0])
		d.send("Subject: x\r\n\r\npartial line")
		if strings.HasSuffix(mode, "trickle") {
			go func(c net.Conn) {
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}(d.conn)
		}
		runs = append(runs, run{mode, ts, d})
	}
	time.Sleep(evictDataStall + 300*time.Millisecond) // both at once
	for _, r := range runs {
		if got := dialFrom(t, "127.0.0.2", r.ts.addr).read(); !strings.HasPrefix(got, "220 ") {
			t.Errorf("%s: newcomer: %q", r.mode, got)
		}
		if got, _ := r.d.tryRead(); got != evictedReply {
			t.Errorf("%s: stalled transfer got %q, want %q", r.mode, got, evictedReply)
		}
		if _, err := r.d.tryRead(); err == nil {
			t.Errorf("%s: stalled transfer not closed", r.mode)
		}
		if n := len(r.ts.rec.all()); n != 0 {
			t.Errorf("%s: %d messages accepted", r.mode, n)
		}
	}
}

// TestEvictionVictim is the choice of the connection to close for a
// newcomer, over snapshots.
func TestEvictionVictim(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	idle := func(replied time.Duration) connSnapshot {
		return connSnapshot{waiting: true, spoke: true, lastReply: ago(replied), lastRecv: ago(replied / 2)}
	}
	unproven := func(replied time.Duration) connSnapshot {
		s := idle(replied)
		s.spoke = false
		return s
	}
	tx := func(replied time.Duration) connSnapshot {
		s := idle(replied)
		s.inTx = true
		return s
	}
	// transfer began began ago, has received bytes, the last received ago.
	transfer := func(began time.Duration, bytes int64, received time.Duration) connSnapshot {
		return connSnapshot{waiting: true, spoke: true, inTx: true, inData: true, lastReply: ago(began), lastRecv: ago(received),
			dataSince: ago(began), dataBytes: bytes}
	}
	data := func(received time.Duration) connSnapshot { return transfer(time.Minute, 1<<30, received) } // fast until received
	busy := func(s connSnapshot) connSnapshot { s.waiting = false; return s }
	for _, c := range []struct {
		name  string
		snaps []connSnapshot
		want  int
	}{
		{"none", nil, -1},
		{"only the server's turn", []connSnapshot{busy(idle(time.Hour)), busy(unproven(time.Hour)), busy(tx(time.Hour)), busy(data(time.Hour))}, -1},
		{"oldest idle", []connSnapshot{idle(2 * time.Second), idle(9 * time.Second), idle(5 * time.Second)}, 1},
		{"fresh reply after EHLO is progress", []connSnapshot{idle(evictGrace - time.Nanosecond), idle(0), tx(0)}, -1},
		{"idle at the grace", []connSnapshot{idle(0), idle(evictGrace)}, 1},
		{"idle before an older transaction", []connSnapshot{tx(time.Hour), idle(2 * time.Second)}, 1},
		{"older transaction when the idle one is fresh", []connSnapshot{idle(100 * time.Millisecond), tx(2 * time.Second)}, 1},
		{"oldest transaction", []connSnapshot{tx(3 * time.Second), tx(4 * time.Second)}, 1},
		{"progressing transfer never", []connSnapshot{data(evictDataStall - time.Nanosecond), data(0)}, -1},
		{"progressing transfer, old reply, before a newer idle", []connSnapshot{data(time.Millisecond), idle(2 * time.Second)}, 1},
		{"stalled transfer after a transaction", []connSnapshot{data(time.Minute), tx(2 * time.Second)}, 1},
		{"stalled transfer when nothing else", []connSnapshot{idle(0), data(evictDataStall), busy(idle(time.Hour))}, 1},
		{"longest stalled transfer", []connSnapshot{data(6 * time.Second), data(8 * time.Second), data(7 * time.Second)}, 1},
		{"transfer just begun", []connSnapshot{transfer(evictGrace-time.Millisecond, 0, evictGrace-time.Millisecond)}, -1},
		{"transfer above the minimum rate", []connSnapshot{transfer(10*time.Second, 10*DefaultMinDataRate, 0)}, -1},
		{"transfer trickled below the minimum rate", []connSnapshot{idle(0), transfer(10*time.Second, 30, 100*time.Millisecond)}, 1},
		{"transfer just at the minimum rate", []connSnapshot{transfer(2*time.Second, DefaultMinDataRate, 0)}, 0},
		{"transfer a byte over the minimum rate", []connSnapshot{transfer(2*time.Second, DefaultMinDataRate+1, 0)}, -1},
		{"transfer furthest behind", []connSnapshot{transfer(10*time.Second, 1000, 0), transfer(10*time.Second, 100, 0), transfer(20*time.Second, 7000, 0)}, 1},
		{"trickled transfer after a transaction", []connSnapshot{transfer(time.Hour, 10, 0), tx(2 * time.Second)}, 1},
		{"no EHLO yet: evictable when fresh", []connSnapshot{idle(0), unproven(10 * time.Millisecond)}, 1},
		{"no EHLO yet: oldest first", []connSnapshot{unproven(time.Millisecond), unproven(300 * time.Millisecond), unproven(0)}, 1},
		{"no EHLO yet: after a stalled transfer", []connSnapshot{unproven(500 * time.Millisecond), data(evictDataStall)}, 1},
		{"no EHLO yet and past the grace: idle", []connSnapshot{idle(2 * time.Second), unproven(3 * time.Second)}, 1},
		{"no EHLO yet and past the grace: before a transaction", []connSnapshot{tx(time.Hour), unproven(2 * time.Second)}, 1},
		{"server's turn is spared however old", []connSnapshot{busy(idle(time.Hour)), idle(2 * time.Second)}, 1},
		{"tie: the first", []connSnapshot{idle(3 * time.Second), idle(3 * time.Second)}, 0},
	} {
		if got := evictionVictim(c.snaps, now, DefaultMinDataRate); got != c.want {
			t.Errorf("%s: evictionVictim = %d, want %d", c.name, got, c.want)
		}
	}
	// MinDataRate < 0: only a stalled transfer is behind.
	trickled := transfer(10*time.Second, 30, 100*time.Millisecond)
	if got := evictionVictim([]connSnapshot{trickled}, now, -1); got != -1 {
		t.Errorf("trickled transfer without a minimum rate: evictionVictim = %d, want -1", got)
	}
	if got := evictionVictim([]connSnapshot{trickled, data(evictDataStall)}, now, -1); got != 1 {
		t.Errorf("stalled transfer without a minimum rate: evictionVictim = %d, want 1", got)
	}
}

// TestConnClock: the connection times eviction and the data deadlines
// compare come back from their atomics with the monotonic clock reading
// (time.Time.String shows it as "m="), so that a step of the wall clock
// cannot make a connection look idle or busy.
func TestConnClock(t *testing.T) {
	now := time.Now()
	back := clockTime(connClock(now))
	if !back.Equal(now) {
		t.Errorf("clockTime(connClock(%v)) = %v", now, back)
	}
	if !strings.Contains(back.String(), " m=") {
		t.Errorf("%v has no monotonic clock reading", back)
	}
	if n := connClock(clockBase.Add(-time.Hour)); n != 1 {
		t.Errorf("connClock before clockBase = %d, want 1 (0 means not set)", n)
	}
}
