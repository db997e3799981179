package transport

import "time"

// A listener at MaxConnections admits a new connection by closing the one
// that has made the least progress (see Server.MaxConnections): the table
// of connections is bounded, and evicts rather than refuses.

const (
	// evictGrace is how long after the server's last reply a connection
	// whose client has said EHLO or HELO is still making progress: a client
	// that sends its next command within it is never closed for a newcomer.
	evictGrace = time.Second
	// evictDataStall is how long a DATA or BDAT transfer must have received
	// nothing before it may be closed for a newcomer.
	evictDataStall = 5 * time.Second
	// evictWriteTimeout bounds the writes of a connection being closed for
	// a newcomer (its last reply), so that a client that does not read
	// cannot keep its socket open long after its slot was given away.
	evictWriteTimeout = time.Second
)

// clockBase anchors the times a connection keeps in atomics (its last
// reply, its last bytes received, the start of its DATA transfer): they are
// stored as connClock, the nanoseconds since clockBase, so that clockTime
// gives them back with their monotonic clock reading. Wall-clock times
// (UnixNano) would let a step of the system clock, such as NTP setting the
// time soon after boot, make every connection look idle to eviction, or
// none, and move the data deadlines.
var clockBase = time.Now()

// connClock returns t as nanoseconds since clockBase, at least 1 (0 is
// "not set" for dataSince).
func connClock(t time.Time) int64 { return max(1, int64(t.Sub(clockBase))) }

// clockTime is the inverse of connClock.
func clockTime(n int64) time.Time { return clockBase.Add(time.Duration(n)) }

// connSnapshot is what the choice of a connection to close for a newcomer
// knows of one connection.
type connSnapshot struct {
	// waiting: the server is reading from or writing to the client, so it
	// is the client's turn. A connection that is neither is the server's
	// turn (it works on a command: a password check, the Handler, a TLS
	// handshake step, the greeting not yet sent) and is never closed.
	waiting   bool
	spoke     bool      // EHLO or HELO was accepted on this connection
	inTx      bool      // MAIL accepted, transaction not yet ended
	inData    bool      // a DATA or BDAT transfer, until its reply
	lastReply time.Time // the server's last reply, or the accept
	lastRecv  time.Time // the last bytes received
	dataSince time.Time // in DATA: when the transfer began
	dataBytes int64     // in DATA: bytes received since dataSince
}

// evictClass orders the connections that may be closed for a newcomer:
// a higher class goes first.
type evictClass int

const (
	notEvictable  evictClass = iota
	evictUnproven            // its client has not said EHLO yet, last reply recent
	evictSlowData            // DATA behind the minimum rate, or stalled
	evictInTx                // in a transaction, last reply evictGrace old
	evictIdle                // outside a transaction, last reply evictGrace old
)

// class returns s's evictClass at now and the time from which it has made
// no progress: its last reply or, in DATA, the end of its credit at
// minRate bytes a second (none when minRate <= 0) or its last received
// bytes, whichever is earlier.
func (s connSnapshot) class(now time.Time, minRate int) (evictClass, time.Time) {
	switch {
	case !s.waiting:
		return notEvictable, time.Time{}
	case s.inData:
		since, behind := s.lastRecv, now.Sub(s.lastRecv) >= evictDataStall
		if minRate > 0 {
			// credit: until when the bytes received pay for the transfer.
			credit := s.dataSince.Add(evictGrace + time.Duration(float64(s.dataBytes)*float64(time.Second)/float64(minRate)))
			since, behind = minTime(credit, since), behind || !credit.After(now)
		}
		if !behind {
			return notEvictable, time.Time{}
		}
		return evictSlowData, since
	case now.Sub(s.lastReply) >= evictGrace && s.inTx:
		return evictInTx, s.lastReply
	case now.Sub(s.lastReply) >= evictGrace:
		return evictIdle, s.lastReply
	case !s.spoke:
		return evictUnproven, s.lastReply
	}
	return notEvictable, time.Time{}
}

// evictionVictim returns the index in snaps of the connection to close so
// that a newcomer can be admitted, or -1 when every connection is making
// progress. Only connections whose client's turn it is qualify, and of
// those, in this order:
//
//  1. outside a transaction, whose last reply is at least evictGrace old
//     (bytes trickled into a command line are no progress);
//  2. the same in a transaction (after MAIL, before DATA);
//  3. a DATA or BDAT transfer that, evictGrace aside, has received less
//     than minRate bytes a second on average (Server.MinDataRate; no such
//     rule when minRate <= 0), or nothing for evictDataStall;
//  4. a connection whose client has not yet said EHLO or HELO, however
//     recent its last reply (the greeting): a newcomer has proved nothing
//     more, and sparing these would let an attacker who reconnects at once
//     keep every slot fresh and the listener shut.
//
// Within each, the one that has made no progress for longest goes first
// (for a transfer, the one furthest behind); on a tie, the first in snaps.
// A client that has said EHLO and sends each command within evictGrace of
// the previous reply, or a transfer that keeps to minRate, is never
// chosen.
func evictionVictim(snaps []connSnapshot, now time.Time, minRate int) int {
	best, bestClass, bestSince := -1, notEvictable, time.Time{}
	for i, s := range snaps {
		cl, since := s.class(now, minRate)
		if cl > bestClass || (cl != notEvictable && cl == bestClass && since.Before(bestSince)) {
			best, bestClass, bestSince = i, cl, since
		}
	}
	return best
}

// snapshot reads c's state for evictionVictim.
func (c *inConn) snapshot() connSnapshot {
	s := connSnapshot{
		waiting:   c.ioWait.Load() > 0,
		spoke:     c.spoke.Load(),
		inTx:      c.inTx.Load(),
		inData:    c.inData.Load(),
		lastReply: clockTime(c.repliedAt.Load()),
		lastRecv:  clockTime(c.recvAt.Load()),
	}
	if since := c.dataSince.Load(); s.inData && since != 0 {
		s.dataSince = clockTime(since)
		s.dataBytes = c.dataBytes.Load()
	} else if s.inData {
		s.dataSince = s.lastReply
	}
	return s
}

// evictionVictimLocked picks the connection to close for a newcomer among
// those still counted (s.mu held), or nil. It runs only at the cap, in time
// linear in the number of connections.
func (s *Server) evictionVictimLocked(now time.Time) *inConn {
	s.evictConns, s.evictSnaps = s.evictConns[:0], s.evictSnaps[:0]
	for c := range s.conns {
		if c.released {
			continue
		}
		s.evictConns = append(s.evictConns, c)
		s.evictSnaps = append(s.evictSnaps, c.snapshot())
	}
	rate := s.MinDataRate
	if rate == 0 {
		rate = DefaultMinDataRate
	}
	i := evictionVictim(s.evictSnaps, now, rate)
	var victim *inConn
	if i >= 0 {
		victim = s.evictConns[i]
	}
	clear(s.evictConns) // hold no closed connection
	return victim
}

// releaseLocked stops counting c in the listener's caps (s.mu held): when
// it closes, or when it is evicted and its slot goes to a newcomer at once.
func (s *Server) releaseLocked(c *inConn) {
	if c.released {
		return
	}
	c.released = true
	if n := s.perClient[c.client] - 1; n > 0 {
		s.perClient[c.client] = n
	} else {
		delete(s.perClient, c.client)
	}
	s.active.Add(-1)
}

// evict makes c end itself: a read it is waiting in returns now, the next
// one does not start, and its last reply gets evictWriteTimeout.
func (c *inConn) evict() {
	c.evicted.Store(true)
	c.raw.SetWriteDeadline(time.Now().Add(evictWriteTimeout))
	c.capReadDeadline(time.Now())
}

// errEvicted is the read error of an evicted connection. It is a timeout,
// so that crypto/tls does not take it for a broken connection; the session
// answers it "421 4.7.0 ... Server busy, closing idle connection" (RFC 5321
// §3.8) and closes.
var errEvicted = &evictedError{}

type evictedError struct{}

func (*evictedError) Error() string   { return "transport: connection evicted for a new one" }
func (*evictedError) Timeout() bool   { return true }
func (*evictedError) Temporary() bool { return true }
