package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// inConn is one accepted connection: the SMTP session (server_smtp.go)
// runs in its goroutine, and inConn is also the net.Conn beneath the TLS
// layer of that session. As a net.Conn it does not parse SMTP: it sets the
// read deadline the session is in (a command, a message transfer, the TLS
// handshake), counts what eviction and the stress mode need, and keeps
// read errors sticky.
//
// The session's reads and writes come from its own goroutine only (a BDAT
// Handler goroutine reads a pipe, never the connection); mu guards what the
// TLS callbacks, Shutdown, Close and eviction read.
type inConn struct {
	srv    *Server
	raw    net.Conn
	peer   string
	client [16]byte // clientKey(raw.RemoteAddr()), for Server.perClient
	ctx    context.Context
	stop   context.CancelFunc

	// Session I/O (connection goroutine only). nc is c itself, or the TLS
	// connection over it; br reads nc and flushes the held replies first.
	nc       net.Conn
	br       *bufio.Reader // nil while waiting for a command (awaitCommand)
	first    [1]byte       // a command's first byte, read before br is taken
	hasFirst bool
	wbuf     []byte
	werr     error
	readErr  error        // first network read error (sticky)
	records  recordReader // frames what crypto/tls reads (recordConn)

	// Read deadlines. mode says which one applies; cmdStart is when the
	// command being read may first have been sent (the last reply). dmu
	// orders the raw read deadline between the connection goroutine,
	// Shutdown, eviction and the stress kick.
	mode      atomic.Int32 // readCommand, readData, readHandshake
	cmdStart  time.Time
	dataSince atomic.Int64 // connClock when DATA/BDAT began; 0 outside
	dataBytes atomic.Int64 // bytes read from the wire since dataSince
	dmu       sync.Mutex
	rdeadline time.Time
	wdeadline time.Time

	// junk counts the commands that did not advance a transaction (see
	// Server.MaxJunkCommands): each command adds one, an accepted MAIL,
	// RCPT, DATA, BDAT chunk or AUTH takes its own back.
	junk atomic.Int64

	started  time.Time    // when the connection was accepted (Observer)
	accepted atomic.Int64 // messages accepted (Observer)

	// Eviction (server_evict.go). ioWait counts the network reads and
	// writes in progress: while there is one, it is the client's turn.
	// released is guarded by srv.mu.
	ioWait    atomic.Int32
	repliedAt atomic.Int64 // connClock of the last reply, or of the accept
	recvAt    atomic.Int64 // connClock of the last bytes received
	spoke     atomic.Bool  // EHLO or HELO accepted, never reset
	evicted   atomic.Bool
	released  bool

	inTx     atomic.Bool // MAIL accepted, transaction not yet reset
	inData   atomic.Bool // a DATA or BDAT transfer is in progress
	shutdown atomic.Bool

	mu    sync.Mutex
	phase connPhase
	hs    handshakeRecord
}

type connPhase int

const (
	phasePlain     connPhase = iota // plaintext
	phaseHandshake                  // TLS handshake in progress
	phaseTLS                        // TLS established
)

// Read modes of inConn (which deadline a read gets).
const (
	readCommand = iota
	readData
	readHandshake
)

func newInConn(s *Server, raw net.Conn) *inConn {
	ctx, cancel := context.WithCancel(s.baseCtx)
	c := &inConn{
		srv:    s,
		raw:    raw,
		peer:   raw.RemoteAddr().String(),
		client: clientKey(raw.RemoteAddr()),
		ctx:    ctx,
		stop:   cancel,
	}
	if s.Observer != nil {
		c.started = time.Now()
	}
	c.repliedAt.Store(connClock(time.Now()))
	return c
}

// --- net.Conn, beneath the TLS layer ---

func (c *inConn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *inConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline and friends are no-ops: inConn owns the deadlines
// (crypto/tls does not call them).
func (c *inConn) SetDeadline(time.Time) error      { return nil }
func (c *inConn) SetReadDeadline(time.Time) error  { return nil }
func (c *inConn) SetWriteDeadline(time.Time) error { return nil }

// Close closes the socket; the session ends itself (finish).
func (c *inConn) Close() error { return c.raw.Close() }

// Read reads from the network under the deadline of the current mode.
// Errors are sticky: after a timeout or a reset the connection is dead.
func (c *inConn) Read(p []byte) (int, error) {
	if c.readErr != nil {
		return 0, c.readErr
	}
	if c.evicted.Load() {
		c.readErr = errEvicted
		return 0, errEvicted
	}
	c.armRead()
	c.ioWait.Add(1)
	n, err := c.raw.Read(p)
	c.ioWait.Add(-1)
	if n > 0 {
		c.recvAt.Store(connClock(time.Now()))
		if c.dataSince.Load() != 0 {
			c.dataBytes.Add(int64(n))
		}
	}
	if err != nil {
		if c.evicted.Load() {
			err = errEvicted
		}
		if c.mode.Load() == readHandshake {
			c.mu.Lock()
			if c.hs.ioErr == nil {
				c.hs.ioErr = err
			}
			c.mu.Unlock()
		}
		c.readErr = err
	}
	return n, err
}

// Write writes p to the network under Timeouts.Write.
func (c *inConn) Write(p []byte) (int, error) {
	d := c.writeTimeout()
	if t := time.Now().Add(d); t.Before(c.wdeadline) || t.Sub(c.wdeadline) > deadlineSlack(d) {
		c.wdeadline = t
		c.raw.SetWriteDeadline(t)
	}
	c.ioWait.Add(1)
	defer c.ioWait.Add(-1)
	return c.raw.Write(p)
}

// sessionReader is what the session's bufio.Reader reads: the replies
// held back are sent first, so that a reply is never held while the
// server waits for the client (RFC 2920 §3.1).
type sessionReader struct{ c *inConn }

func (r sessionReader) Read(p []byte) (int, error) {
	if r.c.hasFirst && len(p) > 0 {
		r.c.hasFirst = false
		p[0] = r.c.first[0]
		return 1, nil
	}
	if err := r.c.flush(); err != nil {
		return 0, err
	}
	return r.c.nc.Read(p)
}

// readerSize is the size of a session's read buffer.
const readerSize = 4096

// readers holds the read buffers of sessions that wait for a command with
// nothing buffered: an idle connection holds none (see awaitCommand).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

// releaseReader gives the session's read buffer back to readers if it
// holds no unread bytes (pipelined commands keep it).
func (c *inConn) releaseReader() {
	if c.br == nil || c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br = nil
}

// awaitCommand gives back the read buffer while the connection waits for
// the first byte of the next command (after flushing the replies), read
// into c.first, then takes a buffer again for the rest of the line. An
// idle connection so holds no read buffer, only the TLS layer's.
func (c *inConn) awaitCommand() error {
	c.releaseReader()
	if c.br != nil {
		return nil
	}
	n, err := sessionReader{c}.Read(c.first[:])
	if n == 1 {
		c.hasFirst = true
	}
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(sessionReader{c})
	if n == 1 {
		return nil
	}
	return err
}

// reply queues one reply (its lines joined by "\n") for the next flush.
// Multi-line replies are written "code-text" then "code text" (RFC 5321
// §4.2.1).
func (c *inConn) reply(code int, ec EnhancedCode, text string) {
	for {
		line, rest, more := cutLine(text)
		c.wbuf = appendCode(c.wbuf, code)
		if more {
			c.wbuf = append(c.wbuf, '-')
		} else {
			c.wbuf = append(c.wbuf, ' ')
			if ec != (EnhancedCode{}) {
				c.wbuf = append(c.wbuf, ec.String()...)
				c.wbuf = append(c.wbuf, ' ')
			}
		}
		c.wbuf = append(c.wbuf, line...)
		c.wbuf = append(c.wbuf, '\r', '\n')
		if !more {
			return
		}
		text = rest
	}
}

// replyErr queues e's reply.
func (c *inConn) replyErr(e *Error) { c.reply(e.Code, e.EnhancedCode, e.Message) }

func cutLine(s string) (line, rest string, more bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func appendCode(b []byte, code int) []byte {
	return append(b, byte('0'+code/100%10), byte('0'+code/10%10), byte('0'+code%10))
}

// flush sends the queued replies. The command clock restarts with them.
func (c *inConn) flush() error {
	if len(c.wbuf) == 0 || c.werr != nil {
		return c.werr
	}
	_, err := c.nc.Write(c.wbuf)
	if cap(c.wbuf) > 4096 {
		c.wbuf = nil // an unusually long reply: do not keep its buffer
	} else {
		c.wbuf = c.wbuf[:0]
	}
	now := time.Now()
	c.cmdStart = now
	c.repliedAt.Store(connClock(now))
	c.werr = err
	return err
}

// forceClose ends the connection from another goroutine (Server.Close):
// the socket closes, the session's reads and writes fail, and the Handler's
// context is cancelled.
func (c *inConn) forceClose() {
	c.stop()
	c.raw.Close()
}

// dataReadDeadline is the deadline of a read of message data: readTimeout
// from now, the whole transfer's dataTimeout from its start, and, under
// stress (stress > 0), start + stress + received/minRate (Server.MinDataRate;
// 0 means DefaultMinDataRate, negative none).
func dataReadDeadline(now, start time.Time, readTimeout, dataTimeout, stress time.Duration, minRate int, received int64) time.Time {
	d := minTime(now.Add(readTimeout), start.Add(dataTimeout))
	if stress > 0 && minRate >= 0 {
		rate := int64(orDefault(minRate, DefaultMinDataRate))
		d = minTime(d, start.Add(stress+time.Duration(received)*time.Second/time.Duration(rate)))
	}
	return d
}

// armRead sets the read deadline for the read about to happen. In the TLS
// handshake it is Timeouts.TLSHandshake from its start; in DATA or BDAT it
// is Timeouts.Read from now, but no later than Timeouts.Data from the start of the
// transfer; otherwise a command is being read, and the deadline is
// Timeouts.Command from the previous reply (or the start of the connection),
// however the bytes of the line, or the TLS records carrying them, trickle
// in: reading never moves it (Postfix's smtpd_per_record_deadline), and
// neither do writes that are no reply (a TLS KeyUpdate answer).
func (c *inConn) armRead() {
	now := time.Now()
	switch c.mode.Load() {
	case readHandshake:
		c.mu.Lock()
		t := c.hs.started.Add(c.srv.handshakeTimeout())
		c.mu.Unlock()
		c.setReadDeadline(t, 0)
		return
	case readData:
		if since := c.dataSince.Load(); since != 0 {
			rt := c.dataTimeout()
			var stress time.Duration
			if c.srv.stressed() {
				stress = c.srv.stressTimeout()
			}
			c.setReadDeadline(dataReadDeadline(now, clockTime(since), rt, c.dataDeadline(), stress, c.srv.MinDataRate, c.dataBytes.Load()), rt)
			return
		}
	}
	if c.cmdStart.IsZero() {
		c.cmdStart = now
	}
	ct := c.commandTimeout()
	c.setReadDeadline(c.cmdStart.Add(ct), ct)
}

// setReadDeadline avoids re-arming the timer on every small read: a deadline
// later than the one in force by less than slack (an eighth of the timeout,
// at most a second) is left alone.
func (c *inConn) setReadDeadline(t time.Time, timeout time.Duration) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if st := c.srv.stressTimeout(); st > 0 && c.srv.stressed() {
		t = minTime(t, time.Now().Add(st))
	}
	if c.evicted.Load() || (c.shutdown.Load() && c.idle()) {
		t = time.Now() // see evict and beginShutdown
	}
	if t.Before(c.rdeadline) || t.Sub(c.rdeadline) > deadlineSlack(timeout) {
		c.rdeadline = t
		c.raw.SetReadDeadline(t)
	}
}

// capReadDeadline brings the read deadline forward to t if it is later,
// also for a read already waiting (Shutdown, stress mode, eviction).
func (c *inConn) capReadDeadline(t time.Time) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.rdeadline.IsZero() || t.Before(c.rdeadline) {
		c.rdeadline = t
		c.raw.SetReadDeadline(t)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func deadlineSlack(timeout time.Duration) time.Duration { return min(timeout/8, time.Second) }

// beginData and endData bracket a DATA transfer or a whole BDAT transfer.
func (c *inConn) beginData() {
	c.dataBytes.Store(0)
	c.dataSince.Store(connClock(time.Now()))
	c.inData.Store(true)
	c.mode.Store(readData)
}

func (c *inConn) endData() {
	c.mode.Store(readCommand)
	c.inData.Store(false)
	c.dataSince.Store(0)
}

func (c *inConn) commandTimeout() time.Duration {
	return c.srv.underStress(c.srv.Timeouts.command())
}
func (c *inConn) dataTimeout() time.Duration {
	return c.srv.underStress(c.srv.Timeouts.read())
}
func (c *inConn) writeTimeout() time.Duration {
	if c.evicted.Load() {
		return evictWriteTimeout
	}
	return c.srv.underStress(c.srv.Timeouts.write())
}
func (c *inConn) dataDeadline() time.Duration {
	return c.srv.Timeouts.data()
}

// idle reports whether c is between transactions (Shutdown closes it).
func (c *inConn) idle() bool {
	return !c.inTx.Load() && !c.inData.Load() && c.mode.Load() != readHandshake
}

// beginShutdown makes the connection close at its next command boundary
// outside a transaction, and wakes it if it is idle now.
func (c *inConn) beginShutdown() {
	c.shutdown.Store(true)
	if c.idle() {
		c.capReadDeadline(time.Now())
	}
}

// startTLS runs the TLS handshake over c, bounded by Timeouts.TLSHandshake
// (RFC 3207 §4 after STARTTLS; RFC 8314 §3.3 on connect), logs its outcome
// and makes the TLS connection the session's.
func (c *inConn) startTLS() (*tls.Conn, error) {
	d := c.srv.handshakeTimeout()
	c.mu.Lock()
	c.phase = phaseHandshake
	c.hs = handshakeRecord{started: time.Now()}
	c.mu.Unlock()
	c.mode.Store(readHandshake)
	defer c.mode.Store(readCommand)
	tc := tls.Server(recordConn{c}, c.srv.tlsBase)
	ctx, cancel := context.WithTimeout(c.ctx, d)
	defer cancel()
	// The handshake runs on a goroutine of its own: its deep stack (key
	// exchange, signature, certificate messages) grows the stack of the
	// goroutine running it, which here ends with it, so that the
	// connection's goroutine, parked while the connection is idle, keeps
	// its small stack.
	done := make(chan error, 1)
	go func() { done <- tc.HandshakeContext(ctx) }()
	if err := <-done; err != nil {
		c.logHandshakeFailure(err)
		return nil, err
	}
	c.mu.Lock()
	c.phase = phaseTLS
	c.mu.Unlock()
	c.logHandshakeSuccess()
	c.nc = tc
	c.cmdStart = time.Now() // the handshake's end counts as a reply
	return tc, nil
}

// clientKey is the per-client connection table's key for a: the IPv4
// address, or the IPv6 /64 (the AUTH limiter's host key).
func clientKey(a net.Addr) [16]byte {
	host, _ := clientKeys(a)
	return host
}
