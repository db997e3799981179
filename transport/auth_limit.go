package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// authLimiter counts AUTH failures in a fixed window per client, on two
// tiers: the client address (IPv4 /32, IPv6 /64) and its network (IPv4 /24,
// IPv6 /48), each with its own limit. An attempt is counted when it starts,
// before the password check, so that parallel attempts cannot all pass the
// check before any of them fails (begin); it is then kept (a failure) or
// released (success, or a failure of the server's own). Each tier is a table
// bounded by maxEntries that evicts its least recently used entry, so that
// a flood of distinct addresses costs bounded memory and never refuses a
// new address.
type authLimiter struct {
	window      time.Duration
	hostMax     int
	netMax      int
	mu          sync.Mutex
	hosts, nets countTable
}

// authLimiterMaxEntries bounds each tier's table. An entry costs about
// 100 bytes, so a full limiter holds about 20 MB.
const authLimiterMaxEntries = 100000

func newAuthLimiter(hostMax, netMax int, window time.Duration, maxEntries int) *authLimiter {
	return &authLimiter{
		window:  window,
		hostMax: hostMax,
		netMax:  netMax,
		hosts:   countTable{max: maxEntries},
		nets:    countTable{max: maxEntries},
	}
}

// clientKeys returns the address and network keys of a: IPv4 /32 and /24,
// IPv6 /64 and /48 (an IPv4-mapped IPv6 address is IPv4). Addresses that
// are not IP (a test's pipe) all share the zero keys.
func clientKeys(a net.Addr) (host, network [16]byte) {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	default:
		if a != nil {
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				ip = ap.Addr()
			}
		}
	}
	ip = ip.Unmap()
	hostBits, netBits := 64, 48
	if ip.Is4() {
		hostBits, netBits = 32, 24
	}
	h, _ := ip.Prefix(hostBits)
	n, _ := ip.Prefix(netBits)
	return h.Addr().As16(), n.Addr().As16()
}

// limited reports whether a is over either limit now, without counting.
func (l *authLimiter) limited(a net.Addr, now time.Time) bool {
	hk, nk := clientKeys(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts.count(hk, now, l.window) >= l.hostMax || l.nets.count(nk, now, l.window) >= l.netMax
}

// authAttempt is an attempt counted by begin. Bad credentials leave it
// counted; release gives it back.
type authAttempt struct {
	l                   *authLimiter
	host, net           *countEntry
	hostStart, netStart time.Time
}

// begin counts an attempt from a on both tiers and returns it, or reports
// false, counting nothing, when either tier is at its limit.
func (l *authLimiter) begin(a net.Addr, now time.Time) (authAttempt, bool) {
	hk, nk := clientKeys(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hosts.count(hk, now, l.window) >= l.hostMax || l.nets.count(nk, now, l.window) >= l.netMax {
		return authAttempt{}, false
	}
	h := l.hosts.touch(hk, now, l.window)
	n := l.nets.touch(nk, now, l.window)
	h.n++
	n.n++
	return authAttempt{l: l, host: h, net: n, hostStart: h.start, netStart: n.start}, true
}

// release uncounts the attempt: it succeeded, or the server could not
// decide (a backend error, no free password-check slot). An entry evicted
// or whose window restarted since begin is left alone.
func (a authAttempt) release() {
	if a.l == nil {
		return
	}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.l.hosts.uncount(a.host, a.hostStart)
	a.l.nets.uncount(a.net, a.netStart)
}

// countTable is a map of failure counts with an intrusive LRU list: head is
// the least recently counted entry, the first evicted.
type countTable struct {
	max        int
	m          map[[16]byte]*countEntry
	head, tail *countEntry
}

type countEntry struct {
	key        [16]byte
	start      time.Time // start of the window
	n          int
	prev, next *countEntry
}

// count returns k's count in the current window.
func (t *countTable) count(k [16]byte, now time.Time, window time.Duration) int {
	e := t.m[k]
	if e == nil || now.Sub(e.start) >= window {
		return 0
	}
	return e.n
}

// touch returns k's entry, created or restarted if its window passed, and
// makes it the most recently used. When the table is full it first drops
// expired entries from the LRU end, then evicts the least recently used
// one.
func (t *countTable) touch(k [16]byte, now time.Time, window time.Duration) *countEntry {
	if t.m == nil {
		t.m = make(map[[16]byte]*countEntry)
	}
	if e := t.m[k]; e != nil {
		if now.Sub(e.start) >= window {
			e.start, e.n = now, 0
		}
		t.unlink(e)
		t.pushBack(e)
		return e
	}
	for t.head != nil && now.Sub(t.head.start) >= window {
		t.remove(t.head)
	}
	if len(t.m) >= t.max && t.head != nil {
		t.remove(t.head)
	}
	e := &countEntry{key: k, start: now}
	t.m[k] = e
	t.pushBack(e)
	return e
}

// uncount undoes one count on e if e is still the table's entry for its
// key in the window that started at start.
func (t *countTable) uncount(e *countEntry, start time.Time) {
	if e != nil && t.m[e.key] == e && e.start.Equal(start) && e.n > 0 {
		e.n--
	}
}

func (t *countTable) remove(e *countEntry) {
	t.unlink(e)
	delete(t.m, e.key)
}

func (t *countTable) unlink(e *countEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (t *countTable) pushBack(e *countEntry) {
	e.prev = t.tail
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
}

// errAuthBusy is returned by acquireAuthSlot when no password-check slot
// became free within AuthQueueTimeout.
var errAuthBusy = errors.New("transport: no password check slot free")

// acquireAuthSlot waits for one of the AuthMaxConcurrent password-check
// slots, at most AuthQueueTimeout and no longer than ctx lasts, and returns
// the function that frees it.
func (s *Server) acquireAuthSlot(ctx context.Context) (func(), error) {
	release := func() { <-s.authSlots }
	select {
	case s.authSlots <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(s.authQueueTimeout)
	defer t.Stop()
	select {
	case s.authSlots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, errAuthBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
