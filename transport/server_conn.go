package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// inConn wraps each accepted connection underneath go-smtp (and underneath
// the TLS layer go-smtp creates on STARTTLS). It
//
//   - filters plaintext commands (RFC 3207 §4: only EHLO, HELO, STARTTLS,
//     NOOP, RSET and QUIT before TLS when TLS is required; AUTH never in
//     plaintext, RFC 4954 §4), handing go-smtp one command line per Read so
//     that no pipelined command can slip past the filter in go-smtp's buffer;
//   - discards every byte the client pipelined after STARTTLS before the
//     handshake starts (RFC 3207 §4.2 / CVE-2011-0411 class);
//   - bounds the handshake with TLSHandshakeTimeout and records why it failed;
//   - owns the read and write deadlines: a command line must be complete
//     within CommandTimeout of the previous reply, a DATA or BDAT transfer
//     within DataTimeout of its start and each of its reads within
//     ReadTimeout, so that bytes trickling in (plaintext or TLS records)
//     extend neither; under stress (see Server.StressTimeout) all are
//     shortened, also for reads already waiting;
//   - lets Shutdown close connections that are between transactions;
//   - ends itself when the listener evicts it for a newcomer
//     (server_evict.go), and tells evictionVictim whose turn it is;
//   - with bodyReader, ends DATA after a bare CR where RFC 5321 does and
//     go-smtp does not (server_dot.go): dotScan in the plaintext filter,
//     errDataYield and errDataEnd under TLS.
//
// Reads and writes come from go-smtp's connection goroutine only (the BDAT
// session goroutine never touches the connection); mu guards the fields other
// goroutines (Shutdown, Close, the TLS callbacks' logger) read.
type inConn struct {
	srv    *Server
	raw    net.Conn
	peer   string
	client [16]byte // clientKey(raw.RemoteAddr()), for Server.perClient
	ctx    context.Context
	stop   context.CancelFunc

	// Plaintext command filter state (connection goroutine only).
	br        *bufio.Reader
	pending   []byte // remainder of a line already classified
	mode      plainMode
	chunkLeft int64
	midLine   bool
	dot       dotScan
	lastCmd   string // verb of the last command handed to go-smtp
	rejects   int
	eof       bool  // return io.EOF from now on
	readErr   error // first network read error (sticky)

	// Reply tracking (what go-smtp wrote), connection goroutine only.
	wAtStart  bool
	wCode     []byte
	lastReply int

	// Read deadlines. cmdStart is when the command being read may first
	// have been sent (the previous reply; connection goroutine only);
	// replied is set by every write since. dmu orders the raw read
	// deadline (rdeadline) between the connection goroutine, Shutdown and
	// the stress kick.
	cmdStart  time.Time
	replied   atomic.Bool
	dataSince atomic.Int64 // UnixNano when DATA/BDAT began; 0 outside
	dataBytes atomic.Int64 // bytes read from the wire since dataSince
	// junk counts the replies to commands that did not advance a
	// transaction (see Server.MaxJunkCommands): each reply adds one, an
	// accepted MAIL, RCPT, DATA/BDAT or AUTH takes its own back.
	junk      atomic.Int64
	dataDone  atomic.Bool // Data returned; the transfer ends with the reply
	dmu       sync.Mutex
	rdeadline time.Time

	// Held-back writes (see bufferWrite); wmu also orders the TLS
	// close_notify a concurrent Close may write.
	wmu           sync.Mutex
	wbuf          []byte
	werr          error
	lastWDeadline time.Time

	inData  atomic.Bool              // a DATA/BDAT transfer is in progress (set by inSession)
	tlsConn atomic.Pointer[tls.Conn] // the TLS connection over this one, once a session knows it
	muted   atomic.Bool              // drop writes: timeoutReply sent the last reply

	// End-of-data repair (server_dot.go, bodyReader.readRepaired). While
	// dotYield is set, a read of the network first returns errDataYield
	// unless checked says bodyReader has seen every byte read so far;
	// dataEnded fails reads from the repaired end of data until go-smtp
	// writes its reply; lostAfterData then closes the connection.
	dotYield      atomic.Bool
	checked       atomic.Bool
	dataEnded     atomic.Bool
	lostAfterData atomic.Bool

	linger atomic.Bool // read the client out before closing (lingerRead)

	started  time.Time    // when the connection was accepted (Observer)
	accepted atomic.Int64 // messages accepted (Observer)

	// Eviction (server_evict.go). ioWait counts the network reads and
	// writes in progress: while there is one, it is the client's turn.
	// released is guarded by srv.mu.
	ioWait    atomic.Int32
	repliedAt atomic.Int64 // UnixNano of the last reply, or of the accept
	recvAt    atomic.Int64 // UnixNano of the last bytes received
	spoke     atomic.Bool  // EHLO or HELO accepted (setGreeted), never reset
	evicted   atomic.Bool
	released  bool // no longer counted in srv.active and srv.perClient

	mu         sync.Mutex
	phase      connPhase
	hsDeadline time.Time
	hs         handshakeRecord
	greeted    bool // go-smtp created a session (EHLO/HELO accepted)
	closed     bool

	tlsUp    atomic.Bool // phase == phaseTLS (lock-free fast path)
	inTx     atomic.Bool // MAIL accepted, transaction not yet reset
	shutdown atomic.Bool
}

type connPhase int

const (
	phasePlain     connPhase = iota // plaintext, filtered
	phaseHandshake                  // TLS handshake in progress
	phaseTLS                        // TLS established; bytes pass through
)

type plainMode int

const (
	modeCommand plainMode = iota
	modeData              // after "354", until CRLF.CRLF
	modeChunk             // BDAT chunk bytes
)

// maxFilterRejects is how many commands the plaintext filter refuses before
// closing the connection (go-smtp closes after 3 protocol errors of its own).
const maxFilterRejects = 10

func newInConn(s *Server, raw net.Conn) *inConn {
	ctx, cancel := context.WithCancel(s.baseCtx)
	c := &inConn{
		srv:      s,
		raw:      raw,
		peer:     raw.RemoteAddr().String(),
		client:   clientKey(raw.RemoteAddr()),
		ctx:      ctx,
		stop:     cancel,
		wAtStart: true,
	}
	if s.Observer != nil {
		c.started = time.Now()
	}
	c.repliedAt.Store(time.Now().UnixNano())
	if s.Kind == KindSubmissions {
		c.phase = phaseTLS // set to phaseHandshake by implicitHandshake
	} else {
		c.br = bufio.NewReaderSize(rawReader{c}, 4096)
	}
	return c
}

func (c *inConn) getPhase() connPhase {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phase
}

// --- net.Conn ---

func (c *inConn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *inConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline and friends are no-ops: inConn owns the deadlines (go-smtp's
// ReadTimeout/WriteTimeout are zero, so it does not call them; crypto/tls
// does not either).
func (c *inConn) SetDeadline(time.Time) error      { return nil }
func (c *inConn) SetReadDeadline(time.Time) error  { return nil }
func (c *inConn) SetWriteDeadline(time.Time) error { return nil }

// forceClose closes the socket first, so that nothing (a flush to a client
// that stopped reading) can hold Server.Close up, then the rest.
func (c *inConn) forceClose() {
	c.raw.Close()
	c.Close()
}

func (c *inConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	phase := c.phase
	c.mu.Unlock()
	if phase == phaseHandshake {
		c.logHandshakeFailure(errors.New("connection closed during handshake"))
	}
	c.stop()
	c.flush() // a final reply (221, 421) or TLS alert
	if c.linger.Load() {
		c.lingerRead()
	}
	err := c.raw.Close()
	c.srv.removeConn(c)
	c.observeSession()
	return err
}

// maxLinger bounds lingerRead.
const maxLinger = 30 * time.Second

// lingerRead, before the close of a connection whose client may still be
// sending a message the server stopped reading (a line over MaxLineLength:
// go-smtp cannot read on), sends FIN after the final replies and reads and
// discards what the client sends, until it closes, for at most maxLinger
// (or the stress timeout) and MaxMessageBytes. A client that reads replies
// only once it has sent the whole message thus gets the "554" for it,
// instead of a reset in the middle of its write that it would take for a
// temporary failure. Server.Close ends it at once (forceClose).
func (c *inConn) lingerRead() {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.raw.SetReadDeadline(time.Now().Add(c.srv.underStress(maxLinger)))
	n, _ := io.CopyN(io.Discard, c.raw, c.srv.maxMessageBytes())
	c.srv.log.Debug("smtp discarded the rest of a refused message before closing", "peer", c.peer, "bytes", n)
}

func (c *inConn) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil && c.evicted.Load() {
		return 0, c.evictedEOF()
	}
	return n, err
}

func (c *inConn) read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.eof {
		return 0, io.EOF
	}
	if c.evicted.Load() {
		return 0, errEvicted
	}
	if c.dataEnded.Load() {
		return 0, errDataEnd
	}
	if c.dotYield.Load() && !c.checked.Swap(false) {
		return 0, errDataYield
	}
	if c.junk.Load() > int64(c.srv.junkLimit()) {
		c.srv.log.Warn("smtp connection closed: too many junk commands", "peer", c.peer, "commands", c.junk.Load())
		line := "421 4.7.0 " + c.srv.hostname() + " Error: too many junk commands, closing connection"
		if c.tlsUp.Load() {
			c.closeWith(line)
		} else {
			c.reply(line)
		}
		c.eof = true
		return 0, io.EOF
	}
	if c.lostAfterData.Swap(false) {
		c.closeWith("421 4.5.0 " + c.srv.hostname() + " Commands sent after the end of data were lost, closing connection")
		c.eof = true
		return 0, io.EOF
	}
	if c.tlsUp.Load() {
		return c.readTLS(p)
	}
	c.mu.Lock()
	phase := c.phase
	hsDeadline := c.hsDeadline
	c.mu.Unlock()
	switch phase {
	case phasePlain:
		return c.readPlain(p)
	case phaseHandshake:
		c.setReadDeadline(hsDeadline, 0)
		n, err := c.rawRead(p)
		if err != nil {
			c.mu.Lock()
			if c.hs.ioErr == nil {
				c.hs.ioErr = err
			}
			c.mu.Unlock()
		}
		return n, err
	}
	return c.readTLS(p)
}

func (c *inConn) readTLS(p []byte) (int, error) {
	c.armRead()
	inData := c.inData.Load()
	if !inData && c.idleShutdown() {
		// go-smtp answers a timeout with "421 4.4.2" and closes.
		return 0, errShutdownIdle
	}
	n, err := c.rawRead(p)
	var ne net.Error
	if err != nil && !inData && errors.As(err, &ne) && ne.Timeout() {
		c.timeoutReply()
	}
	return n, err
}

// timeoutReply answers a command deadline that passed under TLS. go-smtp's
// line reader hands a partial line to the engine as a complete command
// (bufio.Reader.ReadLine drops the error that ends it), so a client cut off
// in the middle of "MAIL FROM:<..." would get that command's "501" before
// go-smtp's "421", and may bounce the message. So the "421 4.4.2" (RFC 5321
// §4.5.3.2.7: the server closes on timeout) is written here, through the
// session's TLS connection, and whatever go-smtp writes after it is
// dropped. Without a known TLS connection (between the STARTTLS handshake
// and the next EHLO) go-smtp replies itself.
func (c *inConn) timeoutReply() {
	if c.evicted.Load() {
		c.evictedEOF()
		return
	}
	text := " Timeout exceeded, closing connection"
	code := "421 4.4.2 "
	if c.shutdown.Load() {
		code, text = "421 4.3.2 ", " Service shutting down"
	}
	c.closeWith(code + c.srv.hostname() + text)
}

// closeWith writes a last reply line under TLS, through the session's TLS
// connection (a no-op if none is known), and drops go-smtp's later writes.
func (c *inConn) closeWith(line string) {
	tc := c.tlsConn.Load()
	if tc == nil {
		return
	}
	tc.Write([]byte(line + "\r\n"))
	c.flush()
	c.muted.Store(true)
}

// useful takes back the junk count of the reply to an accepted MAIL, RCPT,
// DATA/BDAT or AUTH (see Server.MaxJunkCommands).
func (c *inConn) useful() { c.junk.Add(-1) }

// beginDotRepair and endDotRepair bracket a repaired DATA (inSession.Data).
func (c *inConn) beginDotRepair() {
	c.checked.Store(true) // nothing of the message read yet
	c.dotYield.Store(true)
}

func (c *inConn) endDotRepair() { c.dotYield.Store(false) }

// endOfData is called by bodyReader at an end of data go-smtp missed. lost
// says go-smtp may have read bytes after it (only possible under TLS: in
// plaintext the filter's dotScan hands it none).
func (c *inConn) endOfData(lost bool) {
	c.dataEnded.Store(true)
	if lost && c.tlsUp.Load() {
		c.lostAfterData.Store(true)
	}
}

// rawRead reads from the network. Errors are sticky: after a timeout or
// reset the connection is dead, and go-smtp must not wait for another
// deadline while it drains a message or reads its next command.
func (c *inConn) rawRead(p []byte) (int, error) {
	if c.readErr != nil {
		return 0, c.readErr
	}
	c.ioWait.Add(1)
	n, err := c.raw.Read(p)
	c.ioWait.Add(-1)
	if n > 0 {
		c.recvAt.Store(time.Now().UnixNano())
	}
	if err != nil {
		if c.evicted.Load() {
			err = errEvicted
		}
		c.readErr = err
	}
	if c.dataSince.Load() != 0 {
		c.dataBytes.Add(int64(n))
	}
	return n, err
}

// dataReadDeadline is the deadline of a read of message data: readTimeout
// from now, the whole transfer's dataTimeout from its start, and, under
// stress (stress > 0), start + stress + received/minRate (Server.MinDataRate;
// 0 means DefaultMinDataRate, negative none).
func dataReadDeadline(now, start time.Time, readTimeout, dataTimeout, stress time.Duration, minRate int, received int64) time.Time {
	d := minTime(now.Add(readTimeout), start.Add(dataTimeout))
	if stress > 0 && minRate >= 0 {
		rate := int64(orInt(minRate, DefaultMinDataRate))
		d = minTime(d, start.Add(stress+time.Duration(received)*time.Second/time.Duration(rate)))
	}
	return d
}

type rawReader struct{ c *inConn }

func (r rawReader) Read(p []byte) (int, error) { return r.c.rawRead(p) }

func (c *inConn) Write(p []byte) (int, error) {
	if c.tlsUp.Load() && isTLS13KeyUpdate(p) {
		// crypto/tls answering a client's KeyUpdate: no SMTP reply, so
		// neither the command clock nor the transfer may restart on it.
		return c.holdWrite(p)
	}
	c.replying()
	if c.tlsUp.Load() {
		return c.bufferWrite(p)
	}
	c.mu.Lock()
	phase := c.phase
	c.mu.Unlock()
	switch phase {
	case phaseHandshake:
		if len(p) > 0 && p[0] >= '0' && p[0] <= '9' {
			// A plaintext reply during the handshake is go-smtp's
			// "550 5.0.0 Handshake error" after a failed STARTTLS
			// handshake. The client is no longer speaking plaintext:
			// drop the reply and the connection.
			c.logHandshakeFailure(nil)
			c.eof = true
			return len(p), nil
		}
		return c.bufferWrite(p)
	case phaseTLS:
		return c.bufferWrite(p)
	}
	n, err := c.bufferWrite(p)
	c.trackReply(p[:n])
	if err == nil && c.lastCmd == "STARTTLS" && c.lastReply == 220 && c.wAtStart {
		c.lastCmd = ""
		c.beginStartTLS()
	}
	return n, err
}

// maxWriteBuffer bounds the replies held back by bufferWrite.
const maxWriteBuffer = 16 << 10

// bufferWrite holds writes until the engine next reads (or the buffer fills,
// or the connection closes). go-smtp writes every reply line with its own
// Write, which under TLS is one record and one system call per line (an
// EHLO reply is a dozen); the client reads nothing before we wait for its
// next command, so coalescing them changes only the packetisation. Write
// errors surface at the flush, as the read error go-smtp then acts on.
func (c *inConn) bufferWrite(p []byte) (int, error) {
	if c.muted.Load() {
		return len(p), nil // see timeoutReply
	}
	c.replied.Store(true)
	c.repliedAt.Store(time.Now().UnixNano())
	return c.holdWrite(p)
}

// tls13KeyUpdateRecord is the length of the TLS 1.3 record (RFC 8446 §5.2)
// crypto/tls writes to answer a KeyUpdate with update_requested (§4.6.3):
// a 5-byte header, then the 5-byte handshake message, its 1-byte inner
// content type and a 16-byte AEAD tag (every TLS 1.3 cipher suite's).
const tls13KeyUpdateRecord = 5 + 4 + 1 + 1 + 16

// isTLS13KeyUpdate reports whether p, one record written by crypto/tls
// after the handshake, is its KeyUpdate: an application_data record (the
// outer type of every TLS 1.3 record) with 5 bytes of plaintext. No SMTP
// reply is that short (a code, an enhanced code and text), so a client
// that asks for key updates while it trickles a command cannot pass the
// server's answers off as replies (armRead) and extend CommandTimeout.
func isTLS13KeyUpdate(p []byte) bool {
	return len(p) == tls13KeyUpdateRecord && p[0] == 23 && p[3] == 0 && int(p[4]) == tls13KeyUpdateRecord-5
}

// holdWrite is bufferWrite for bytes that are no reply.
func (c *inConn) holdWrite(p []byte) (int, error) {
	if c.muted.Load() {
		return len(p), nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if len(c.wbuf)+len(p) > maxWriteBuffer {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxWriteBuffer {
			n, err := c.rawWrite(p)
			if err != nil {
				c.werr = err
			}
			return n, err
		}
	}
	c.wbuf = append(c.wbuf, p...)
	return len(p), nil
}

// flush sends the held-back writes.
func (c *inConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *inConn) flushLocked() error {
	if len(c.wbuf) == 0 || c.werr != nil {
		return c.werr
	}
	_, err := c.rawWrite(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.werr = err
	}
	return err
}

// rawWrite writes p to the network under WriteTimeout (wmu held).
func (c *inConn) rawWrite(p []byte) (int, error) {
	c.writeIn(c.writeTimeout())
	c.ioWait.Add(1)
	defer c.ioWait.Add(-1)
	return c.raw.Write(p)
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
	if c.evicted.Load() {
		t = time.Now() // see evict
	}
	if t.Before(c.rdeadline) || t.Sub(c.rdeadline) > deadlineSlack(timeout) {
		c.rdeadline = t
		c.raw.SetReadDeadline(t)
	}
}

// capReadDeadline brings the read deadline forward to t if it is later,
// also for a read already waiting (Shutdown, stress mode).
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

// armRead sets the read deadline for the read about to happen outside the
// TLS handshake. In DATA or BDAT it is ReadTimeout from now, but no later
// than DataTimeout from the start of the transfer; otherwise a command is
// being read, and the deadline is CommandTimeout from the previous reply
// (or the start of the connection), however the bytes of the line, or the
// TLS records carrying them, trickle in: reading never moves it
// (Postfix's smtpd_per_record_deadline).
func (c *inConn) armRead() {
	now := time.Now()
	if since := c.dataSince.Load(); since != 0 {
		rt := c.dataTimeout()
		var stress time.Duration
		if c.srv.stressed() {
			stress = c.srv.stressTimeout()
		}
		c.setReadDeadline(dataReadDeadline(now, time.Unix(0, since), rt, c.dataDeadline(), stress, c.srv.MinDataRate, c.dataBytes.Load()), rt)
		return
	}
	if c.replied.Swap(false) {
		c.cmdStart = now
		c.junk.Add(1)
	} else if c.cmdStart.IsZero() {
		c.cmdStart = now
	}
	ct := c.commandTimeout()
	c.setReadDeadline(c.cmdStart.Add(ct), ct)
}

// beginData and endData bracket a DATA or BDAT transfer (inSession.Data).
func (c *inConn) beginData() {
	c.dataBytes.Store(0)
	c.dataSince.Store(time.Now().UnixNano())
	c.inData.Store(true)
}

// A DATA transfer (untilReply) ends with go-smtp's reply, not with Data:
// after Data returns go-smtp still drains the data reader (a message over
// the size limit), and those reads are still the transfer's, under its
// deadlines. A BDAT transfer ends when Data returns: its Data runs in a
// goroutine of its own, which may return after go-smtp has replied (to an
// RSET that aborted it, say).
func (c *inConn) endData(untilReply bool) {
	if untilReply {
		c.dataDone.Store(true)
		return
	}
	c.inData.Store(false)
	c.dataSince.Store(0)
}

// replying is called on each write: a reply after Data returned ends the
// transfer.
func (c *inConn) replying() {
	c.dataEnded.Store(false) // go-smtp's reply to a repaired DATA
	if c.dataDone.Swap(false) {
		c.inData.Store(false)
		c.dataSince.Store(0)
	}
}

func (c *inConn) setWriteDeadline(t time.Time, timeout time.Duration) {
	if t.Before(c.lastWDeadline) || t.Sub(c.lastWDeadline) > deadlineSlack(timeout) {
		c.lastWDeadline = t
		c.raw.SetWriteDeadline(t)
	}
}

func deadlineSlack(timeout time.Duration) time.Duration { return min(timeout/8, time.Second) }

// writeIn sets the write deadline d from now.
func (c *inConn) writeIn(d time.Duration) { c.setWriteDeadline(time.Now().Add(d), d) }

func (c *inConn) commandTimeout() time.Duration {
	return c.srv.underStress(orDuration(c.srv.CommandTimeout, DefaultCommandTimeout))
}
func (c *inConn) dataTimeout() time.Duration {
	return c.srv.underStress(orDuration(c.srv.ReadTimeout, DefaultReadTimeout))
}
func (c *inConn) writeTimeout() time.Duration {
	if c.evicted.Load() {
		return evictWriteTimeout
	}
	return c.srv.underStress(orDuration(c.srv.WriteTimeout, DefaultWriteTimeout))
}
func (c *inConn) dataDeadline() time.Duration {
	return orDuration(c.srv.DataTimeout, DefaultDataTimeout)
}

// trackReply follows the reply codes go-smtp writes in plaintext: lastReply
// is the code of the latest line begun.
func (c *inConn) trackReply(p []byte) {
	for _, b := range p {
		if c.wAtStart {
			c.wCode = c.wCode[:0]
			c.wAtStart = false
		}
		if len(c.wCode) < 3 {
			c.wCode = append(c.wCode, b)
			if len(c.wCode) == 3 {
				c.lastReply, _ = strconv.Atoi(string(c.wCode))
			}
		}
		if b == '\n' {
			c.wAtStart = true
		}
	}
}

// beginStartTLS runs after go-smtp wrote "220 Ready to start TLS": anything
// the client sent after the STARTTLS line is discarded, never executed
// (RFC 3207 §4.2; the CVE-2011-0411 command injection), and the handshake
// clock starts. go-smtp itself then discards its own (empty, see readPlain)
// buffer and forgets the EHLO name and session (RFC 3207 §4.2).
func (c *inConn) beginStartTLS() {
	injected := len(c.pending) + c.br.Buffered()
	c.pending = nil
	c.br.Discard(c.br.Buffered())
	if injected > 0 {
		c.srv.log.Warn("smtp discarded bytes pipelined after STARTTLS", "peer", c.peer, "bytes", injected)
	}
	c.br = nil
	c.mu.Lock()
	c.phase = phaseHandshake
	c.hsDeadline = time.Now().Add(c.srv.handshakeTimeout())
	c.hs = handshakeRecord{started: time.Now()}
	c.mu.Unlock()
}

// onSessionLogout is called when go-smtp logs out a session. During a
// STARTTLS handshake that happens only once the handshake has succeeded
// (go-smtp's handleStartTLS), so it marks the switch to TLS.
func (c *inConn) onSessionLogout() {
	c.mu.Lock()
	hs := c.phase == phaseHandshake
	if hs {
		c.phase = phaseTLS
		c.tlsUp.Store(true)
	}
	c.greeted = false
	c.mu.Unlock()
	c.inTx.Store(false)
	if hs {
		c.logHandshakeSuccess()
	}
}

func (c *inConn) setGreeted() {
	c.mu.Lock()
	c.greeted = true
	c.mu.Unlock()
	c.spoke.Store(true)
}

func (c *inConn) setInTx(v bool) { c.inTx.Store(v) }

// beginShutdown makes the connection close at its next command boundary
// outside a transaction, and wakes it if it is idle now.
func (c *inConn) beginShutdown() {
	c.shutdown.Store(true)
	c.mu.Lock()
	idle := !c.inTx.Load() && !c.inData.Load() && c.phase != phaseHandshake
	c.mu.Unlock()
	if idle {
		c.capReadDeadline(time.Now())
	}
}

func (c *inConn) idleShutdown() bool { return c.shutdown.Load() && !c.inTx.Load() }

var errShutdownIdle = &shutdownError{}

type shutdownError struct{}

func (*shutdownError) Error() string   { return "transport: server shutting down" }
func (*shutdownError) Timeout() bool   { return true }
func (*shutdownError) Temporary() bool { return true }

// --- plaintext filter ---

// allowedBeforeTLS are the commands RFC 3207 §4 lets a client send before
// STARTTLS when the server requires TLS.
var allowedBeforeTLS = map[string]bool{"EHLO": true, "HELO": true, "STARTTLS": true, "NOOP": true, "RSET": true, "QUIT": true}

func (c *inConn) readPlain(p []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		switch c.mode {
		case modeChunk:
			c.armRead()
			if int64(len(p)) > c.chunkLeft {
				p = p[:c.chunkLeft]
			}
			n, err := c.br.Read(p)
			c.chunkLeft -= int64(n)
			if c.chunkLeft == 0 {
				c.mode = modeCommand
			}
			return n, err
		case modeData:
			c.armRead()
			if c.br.Buffered() == 0 {
				if _, err := c.br.Peek(1); err != nil {
					return 0, err
				}
			}
			buf, _ := c.br.Peek(min(len(p), c.br.Buffered()))
			n, done := c.dot.scan(buf)
			copy(p, buf[:n])
			c.br.Discard(n)
			if done {
				c.mode = modeCommand
			}
			return n, nil
		}
		// Command mode.
		if c.lastCmd == "DATA" && c.lastReply == 354 {
			c.lastCmd = ""
			c.mode = modeData
			c.dot = dotScan{}
			continue
		}
		if c.midLine {
			c.armRead()
			line, err := c.br.ReadSlice('\n')
			c.midLine = err == bufio.ErrBufferFull
			if len(line) > 0 {
				c.pending = line
				continue
			}
			return 0, err
		}
		if c.idleShutdown() {
			c.reply("421 4.3.2 " + c.srv.hostname() + " Service shutting down")
			c.eof = true
			return 0, io.EOF
		}
		c.armRead()
		line, err := c.br.ReadSlice('\n')
		full := err == nil
		if err != nil && err != bufio.ErrBufferFull {
			if len(line) == 0 {
				if c.idleShutdown() {
					// Woken by Shutdown.
					c.reply("421 4.3.2 " + c.srv.hostname() + " Service shutting down")
					c.eof = true
					return 0, io.EOF
				}
				return 0, err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of time in the middle of a line (CommandTimeout
				// counts from the previous reply): go-smtp answers
				// "421 4.4.2" and closes; the partial line is no command.
				return 0, err
			}
			// The peer closed after a partial line: hand it over; go-smtp
			// sees the error on its next read.
			c.pending = line
			continue
		}
		verb, arg := parseCommandLine(line)
		if refusal := c.filter(verb); refusal != "" {
			if !full {
				// Skip the rest of an over-long refused line.
				for err == bufio.ErrBufferFull {
					_, err = c.br.ReadSlice('\n')
				}
				if err != nil {
					return 0, err
				}
			}
			if verb == "BDAT" {
				// RFC 3030 §2: the chunk follows even a refused BDAT.
				if size, ok := bdatSize(arg); ok {
					if _, err := c.br.Discard(int(size)); err != nil {
						return 0, err
					}
				}
			}
			c.reply(refusal)
			c.rejects++
			if c.rejects >= maxFilterRejects {
				c.reply("421 4.7.0 " + c.srv.hostname() + " Too many refused commands, closing connection")
				c.eof = true
				return 0, io.EOF
			}
			continue
		}
		c.midLine = !full
		c.lastCmd = verb
		if verb == "BDAT" && full {
			if size, ok := bdatSize(arg); ok && size > 0 {
				c.mode = modeChunk
				c.chunkLeft = size
			}
		}
		if verb == "RCPT" && full {
			if l, ok := rewritePostmaster(line, c.srv.hostname()); ok {
				c.pending = l
				continue
			}
		}
		// Copy: the bufio buffer is reused by the next ReadSlice.
		c.pending = append([]byte(nil), line...)
	}
}

// filter returns the reply refusing verb in plaintext, or "".
func (c *inConn) filter(verb string) string {
	if verb == "" {
		return "" // not a command: go-smtp answers 500/501
	}
	if verb == "AUTH" {
		// RFC 4954 §4 and §6: mechanisms that send passwords need TLS.
		c.srv.observeRefusal(RefusalPlaintextAuth)
		return "538 5.7.11 Encryption required for requested authentication mechanism"
	}
	if verb == "STARTTLS" && c.srv.tlsBase != nil {
		c.mu.Lock()
		greeted := c.greeted
		c.mu.Unlock()
		if !greeted {
			// RFC 3207 §4: STARTTLS is learnt from the EHLO reply.
			return "503 5.5.1 Send EHLO first"
		}
		return ""
	}
	if c.srv.Inbound.RequireTLS() && !allowedBeforeTLS[verb] {
		c.srv.observeRefusal(RefusalNoSTARTTLS)
		return "530 5.7.0 Must issue a STARTTLS command first"
	}
	return ""
}

// reply writes a filter reply directly to the client.
func (c *inConn) reply(line string) {
	c.bufferWrite([]byte(line + "\r\n"))
	c.flush()
}

// parseCommandLine classifies a command line exactly as go-smtp's parseCmd
// does (v0.25.1 parse.go), so that the filter and the engine agree on which
// verb a line carries: any line beginning with STARTTLS is STARTTLS; a verb
// is four letters followed by end of line or a space. Lines go-smtp would
// reject as malformed return "".
func parseCommandLine(line []byte) (verb, arg string) {
	s := strings.TrimRight(string(line), "\r\n")
	// Full Unicode upper-casing, as go-smtp does: "ſtarttls" (long s) is
	// STARTTLS to it, so it must be to the filter too.
	if strings.HasPrefix(strings.ToUpper(s), "STARTTLS") {
		return "STARTTLS", ""
	}
	switch {
	case len(s) < 4:
		return "", ""
	case len(s) == 4:
		return strings.ToUpper(s), ""
	case len(s) == 5 || s[4] != ' ':
		return "", ""
	}
	return strings.ToUpper(s[:4]), strings.TrimSpace(s[5:])
}

// bdatSize parses a BDAT argument as go-smtp does: it reads the chunk exactly
// when this returns ok.
func bdatSize(arg string) (int64, bool) {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 {
		return 0, false
	}
	if len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false
	}
	return int64(n), true
}

// implicitHandshake performs the RFC 8314 §3.3 handshake of KindSubmissions
// before go-smtp sends its greeting, bounded by TLSHandshakeTimeout.
func (c *inConn) implicitHandshake() (*tls.Conn, error) {
	d := c.srv.handshakeTimeout()
	c.mu.Lock()
	c.phase = phaseHandshake
	c.hsDeadline = time.Now().Add(d)
	c.hs = handshakeRecord{started: time.Now()}
	c.mu.Unlock()
	tc := tls.Server(c, c.srv.tlsBase)
	ctx, cancel := context.WithTimeout(c.ctx, d)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.logHandshakeFailure(err)
		return nil, err
	}
	c.mu.Lock()
	c.phase = phaseTLS
	c.tlsUp.Store(true)
	c.mu.Unlock()
	c.tlsConn.Store(tc)
	c.logHandshakeSuccess()
	return tc, nil
}

// rewritePostmaster turns "RCPT TO:<postmaster>" (any case, with or without
// parameters) into "RCPT TO:<postmaster@hostname>". RFC 5321 §4.5.1 says a
// server MUST accept the reserved mailbox "postmaster" without a domain
// (also §4.1.1.3), and that it names the postmaster of this host; go-smtp
// v0.25's path parser requires a domain and answers 501. The Handler (and
// a RecipientChecker) thus sees the fully qualified
// "postmaster@<Server.Hostname>", with the local part in lower case; a
// Handler that delivers locally must treat that address as local. The
// result is a fresh slice; ok is false when line is not such a command.
//
// Only plaintext command lines pass through this filter: under TLS go-smtp
// reads the decrypted stream itself, so there "RCPT TO:<postmaster>" still
// gets go-smtp's 501 (see the package documentation).
func rewritePostmaster(line []byte, hostname string) ([]byte, bool) {
	const verb, pm = "RCPT ", "<postmaster>"
	if len(line) < len(verb) || !strings.EqualFold(string(line[:len(verb)]), verb) {
		return nil, false
	}
	rest := line[len(verb):]
	if len(rest) < 3 || !strings.EqualFold(string(rest[:3]), "TO:") {
		return nil, false
	}
	i := len(verb) + 3
	for i < len(line) && line[i] == ' ' {
		i++ // go-smtp trims spaces after "TO:"
	}
	if len(line)-i < len(pm) || !strings.EqualFold(string(line[i:i+len(pm)]), pm) {
		return nil, false
	}
	out := make([]byte, 0, len(line)+len(hostname)+1)
	out = append(out, line[:i]...)
	out = append(out, "<postmaster@"...)
	out = append(out, hostname...)
	out = append(out, '>')
	out = append(out, line[i+len(pm):]...)
	return out, true
}

// clientKey is the per-client connection table's key for a: the IPv4
// address, or the IPv6 /64 (the AUTH limiter's host key).
func clientKey(a net.Addr) [16]byte {
	host, _ := clientKeys(a)
	return host
}
