package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// ErrInjection is returned by StartTLS when bytes followed the server's 220
// reply before the handshake: they were sent in plaintext and could be an
// injected reply (the client side of CVE-2011-0411), so they are never
// taken for one.
var ErrInjection = errors.New("smtp: plaintext data after the STARTTLS reply (possible response injection)")

// maxReply bounds the bytes read for one reply, so a hostile server cannot
// make the client buffer an endless line.
const maxReply = 1 << 20

// Client is one SMTP client session over one connection. Its methods are
// not safe for concurrent use, except that the context bound with Bind may
// be cancelled from anywhere.
type Client struct {
	raw  net.Conn // the TCP connection
	conn net.Conn // raw, or the *tls.Conn over it
	br   *bufio.Reader
	lim  *io.LimitedReader
	text *textproto.Reader
	bw   *bufio.Writer
	ext  map[string]string
	tls  *tls.ConnectionState

	mu        sync.Mutex
	cancelled bool
	stop      func() bool

	afterWrite func(net.Conn) // Dialer.AfterWrite
}

// New returns a Client on conn, which has just been connected: the next
// step is to read the greeting with ReadReply (RFC 5321 §3.1).
func New(conn net.Conn) *Client {
	c := &Client{raw: conn}
	c.setConn(conn)
	return c
}

func (c *Client) setConn(conn net.Conn) {
	c.conn = conn
	c.lim = &io.LimitedReader{R: conn, N: maxReply}
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.lim, 4096)
		// A message goes out in writes of writeBuffer bytes: over TLS,
		// records of the largest plaintext size (RFC 8446 §5.1), not four
		// times as many of 4 KiB, each with its own seal and system call.
		c.bw = bufio.NewWriterSize(conn, writeBuffer)
	} else {
		// After STARTTLS (or UseTLS) the buffers go on over TLS, emptied:
		// nothing read before the handshake is taken as read after it
		// (StartTLS refuses a byte buffered past the 220 as ErrInjection),
		// and the command before it was flushed.
		c.br.Reset(c.lim)
		c.bw.Reset(conn)
	}
	c.text = textproto.NewReader(c.br)
}

// writeBuffer is the size of a Client's write buffer: the largest TLS
// record's plaintext.
const writeBuffer = 16 << 10

// RawConn returns the underlying connection (the TCP connection under TLS).
func (c *Client) RawConn() net.Conn { return c.raw }

// TLS returns the TLS connection state, or nil before TLS.
func (c *Client) TLS() *tls.ConnectionState { return c.tls }

// UseTLS makes the session run over tc, a TLS client connection on the
// Client's raw connection whose handshake is complete: implicit TLS
// (RFC 8314 §3), set up before the greeting is read.
func (c *Client) UseTLS(tc *tls.Conn) {
	cs := tc.ConnectionState()
	c.tls = &cs
	c.setConn(tc)
}

// Bind makes ctx's cancellation abort any blocked I/O on the session until
// Unbind is called.
func (c *Client) Bind(ctx context.Context) {
	c.mu.Lock()
	c.cancelled = false
	c.mu.Unlock()
	c.stop = context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cancelled = true
		c.raw.SetDeadline(time.Unix(1, 0))
		c.mu.Unlock()
	})
}

// Unbind ends what Bind started.
func (c *Client) Unbind() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// SetDeadline arms the connection's deadline for one step: timeout from
// now, or ctx's deadline if earlier. It fails if ctx is done or the bound
// context was cancelled.
func (c *Client) SetDeadline(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled || ctx.Err() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.Canceled
	}
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return c.raw.SetDeadline(d)
}

// ReadReply reads one reply under ctx and timeout: the greeting, or the
// reply to a command written by other means.
func (c *Client) ReadReply(ctx context.Context, timeout time.Duration) (*Reply, error) {
	if err := c.SetDeadline(ctx, timeout); err != nil {
		return nil, err
	}
	return c.readReply(ctx)
}

func (c *Client) readReply(ctx context.Context) (*Reply, error) {
	c.lim.N = maxReply
	r, err := ReadReply(c.text)
	return r, c.ctxErr(ctx, err)
}

// Cmd sends one command line and reads its reply (RFC 5321 §4.1). line
// must not contain CR or LF.
func (c *Client) Cmd(ctx context.Context, timeout time.Duration, line string) (*Reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, errors.New("smtp: command contains CR or LF")
	}
	if err := c.SetDeadline(ctx, timeout); err != nil {
		return nil, err
	}
	if _, err := c.bw.WriteString(line + "\r\n"); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	c.wrote()
	return c.readReply(ctx)
}

// ctxErr prefers the context's error over the deadline error it caused.
func (c *Client) ctxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	// The socket deadline was the context's and fired a hair before the
	// context's own timer.
	var ne net.Error
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// Hello sends EHLO name and records the extensions; on 500 or 502 it falls
// back to HELO (RFC 5321 §4.1.4), leaving no extensions. A refusal is a
// *ReplyError.
func (c *Client) Hello(ctx context.Context, timeout time.Duration, name string) error {
	r, err := c.Cmd(ctx, timeout, "EHLO "+name)
	if err != nil {
		return err
	}
	if r.Code == 250 {
		c.ext = ParseEHLO(r.Lines)
		return nil
	}
	if r.Code == 500 || r.Code == 502 {
		r, err = c.Cmd(ctx, timeout, "HELO "+name)
		if err != nil {
			return err
		}
		if r.Code == 250 {
			c.ext = map[string]string{}
			return nil
		}
		return &ReplyError{Command: "HELO", Reply: *r}
	}
	return &ReplyError{Command: "EHLO", Reply: *r}
}

// Supports reports whether the last EHLO reply advertised ext (an upper-case
// ehlo-keyword such as "STARTTLS").
func (c *Client) Supports(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// Extension returns the parameters of ext in the last EHLO reply, and
// whether it was advertised.
func (c *Client) Extension(ext string) (string, bool) {
	p, ok := c.ext[ext]
	return p, ok
}

// Extensions returns the extensions of the last EHLO reply, keywords upper
// case; nil before EHLO and after STARTTLS.
func (c *Client) Extensions() map[string]string { return c.ext }

// StartTLS sends STARTTLS and, on 220, performs the handshake with cfg
// (RFC 3207 §4). It returns the reply when the server refused, or the
// handshake's error; on success both are nil, the extensions are forgotten
// (§4.2) and the caller sends EHLO again.
func (c *Client) StartTLS(ctx context.Context, timeout time.Duration, cfg *tls.Config) (*Reply, error) {
	r, err := c.Cmd(ctx, timeout, "STARTTLS")
	if err != nil {
		return nil, err
	}
	if r.Code != 220 {
		return r, nil
	}
	if c.br.Buffered() > 0 {
		return nil, ErrInjection
	}
	tc := tls.Client(c.raw, cfg)
	if err := c.SetDeadline(ctx, timeout); err != nil {
		return nil, err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	c.UseTLS(tc)
	c.ext = nil
	return nil, nil
}

// Data streams body as the content of DATA, after the server's 354: line
// ends normalised to CRLF and dot-stuffed (see dataWriter), then the
// terminating "." line; it returns the final reply (RFC 5321 §4.1.1.4).
func (c *Client) Data(ctx context.Context, timeout time.Duration, body io.Reader) (*Reply, error) {
	if err := c.SetDeadline(ctx, timeout); err != nil {
		return nil, err
	}
	w := &dataWriter{w: c.bw, stuff: true}
	if _, err := io.Copy(w, body); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	if err := w.Close(); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	c.wrote()
	return c.readReply(ctx)
}

// BDAT sends chunk as one BDAT command, LAST if last is set, and reads its
// reply (RFC 3030 §2). The chunk is sent as it is: no dot-stuffing, its line
// ends already CRLF.
func (c *Client) BDAT(ctx context.Context, timeout time.Duration, chunk []byte, last bool) (*Reply, error) {
	if err := c.SetDeadline(ctx, timeout); err != nil {
		return nil, err
	}
	cmd := fmt.Sprintf("BDAT %d", len(chunk))
	if last {
		cmd += " LAST"
	}
	c.bw.WriteString(cmd + "\r\n")
	c.bw.Write(chunk)
	if err := c.bw.Flush(); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	c.wrote()
	return c.readReply(ctx)
}

func (c *Client) wrote() {
	if c.afterWrite != nil {
		c.afterWrite(c.raw)
	}
}

// Idle reports whether the session is still open with nothing unread: the
// server has neither closed it nor sent anything unsolicited (a 421 before
// it closes an idle connection, RFC 5321 §3.8). It looks only at what has
// already arrived, so it costs no round trip: a connection kept for reuse
// is checked with it before a new transaction is written.
func (c *Client) Idle() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	return socketIdle(c.raw)
}

// Quit sends QUIT, waiting at most two seconds for its reply, and closes the
// connection (RFC 5321 §4.1.1.10), also when ctx ends first. It returns nil
// if the server answered 221.
func (c *Client) Quit(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r, err := c.Cmd(ctx, 2*time.Second, "QUIT")
	c.Close()
	return expect("QUIT", r, err, 221)
}

// Close closes the connection without QUIT.
func (c *Client) Close() error {
	c.Unbind()
	c.conn.Close()
	return c.raw.Close()
}

// dataWriter writes a message as the content of DATA (RFC 5321 §4.1.1.4).
// Every line end of the message, CRLF, a bare CR or a bare LF, is written
// as CRLF (RFC 5321 §2.3.8: CR and LF only occur together as CRLF), as
// Postfix does with smtp_forbid_bare_newline = normalize, and only then is
// each line that starts with "." dot-stuffed (RFC 5321 §4.5.2). A bare CR
// passed on as it is would let a line "\r.\r" reach a server that takes
// it for the end of the data, or leave a "." line unstuffed for one that
// does not. Close ends the last line if the message did not, and writes
// the terminating ".". The writer is streaming: a CR at the end of one
// Write and an LF at the start of the next are one CRLF.
type dataWriter struct {
	w       *bufio.Writer // nil: count only
	n       int64         // bytes written (or counted)
	stuff   bool          // dot-stuff (DATA); false: line ends only (BDAT)
	midLine bool          // bytes of the current line have been written
	cr      bool          // a CR was read and its line end not yet written
}

func (d *dataWriter) writeByte(c byte) error {
	d.n++
	if d.w == nil {
		return nil
	}
	return d.w.WriteByte(c)
}

func (d *dataWriter) writeString(s string) error {
	d.n += int64(len(s))
	if d.w == nil {
		return nil
	}
	_, err := d.w.WriteString(s)
	return err
}

func (d *dataWriter) writeBytes(b []byte) error {
	d.n += int64(len(b))
	if d.w == nil {
		return nil
	}
	_, err := d.w.Write(b)
	return err
}

// Write passes the runs of bytes between line ends on whole, and writes
// each line end (CRLF, bare CR or bare LF) as CRLF.
func (d *dataWriter) Write(p []byte) (int, error) {
	i := 0
	for i < len(p) {
		c := p[i]
		if d.cr {
			d.cr = false
			if err := d.writeString("\r\n"); err != nil {
				return i, err
			}
			d.midLine = false
			if c == '\n' {
				i++ // the LF of this CRLF
				continue
			}
		}
		switch c {
		case '\r':
			d.cr = true
			i++
			continue
		case '\n':
			if err := d.writeString("\r\n"); err != nil {
				return i, err
			}
			d.midLine = false
			i++
			continue
		}
		run := p[i:]
		if j := LineEnd(run); j >= 0 {
			run = run[:j]
		}
		if run[0] == '.' && !d.midLine && d.stuff {
			if err := d.writeByte('.'); err != nil {
				return i, err
			}
		}
		if err := d.writeBytes(run); err != nil {
			return i, err
		}
		d.midLine = true
		i += len(run)
	}
	return len(p), nil
}

// WriteString writes s as Write does, through ReadFrom's pooled buffer:
// io.Copy from a strings.Reader (its WriteTo) calls it, and would
// otherwise copy the whole message into a new slice first.
func (d *dataWriter) WriteString(s string) (int, error) {
	n, err := d.ReadFrom(strings.NewReader(s))
	return int(n), err
}

// copyBufs keeps the buffers dataWriter.ReadFrom reads bodies through, so
// that a message sent costs no 32 KiB allocation (io.Copy's own buffer),
// twice with BDAT (CRLFSize, then Pipeline).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadFrom writes r's bytes to d until EOF, through a pooled buffer; io.Copy
// uses it when r has no WriteTo.
func (d *dataWriter) ReadFrom(r io.Reader) (int64, error) {
	pb := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(pb)
	buf := *pb
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			if _, werr := d.Write(buf[:n]); werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// LineEnd returns the index of the first CR or LF in b, or -1: where a
// run of bytes that no line-end rule changes stops (RFC 5321 §2.3.8).
// The server's DATA reader uses it too.
//
// It looks in windows that double in size, starting at lineEndWindow, so a
// call costs time in proportion to how far the first CR or LF is, not to
// len(b). Looking for each in all of b would make a message of short
// lines that end in only one of the two (bare LFs, "x\nx\n…") cost time
// in proportion to the square of the buffer it is read through.
func LineEnd(b []byte) int {
	for start, w := 0, lineEndWindow; start < len(b); start, w = start+w, 2*w {
		win := b[start:min(len(b), start+w)]
		cr := bytes.IndexByte(win, '\r')
		if cr >= 0 {
			win = win[:cr]
		}
		if lf := bytes.IndexByte(win, '\n'); lf >= 0 {
			return start + lf
		}
		if cr >= 0 {
			return start + cr
		}
	}
	return -1
}

// lineEndWindow is LineEnd's first window: a typical line and its end.
const lineEndWindow = 128

// Close ends the data with CRLF "." CRLF and flushes it.
func (d *dataWriter) Close() error {
	end := ".\r\n"
	if d.cr || d.midLine {
		end = "\r\n.\r\n"
	}
	d.cr, d.midLine = false, false
	if err := d.writeString(end); err != nil {
		return err
	}
	return d.w.Flush()
}

// endLine ends the last line if the message did not (BDAT content).
func (d *dataWriter) endLine() error {
	if !d.cr && !d.midLine {
		return nil
	}
	d.cr, d.midLine = false, false
	return d.writeString("\r\n")
}

// CRLFSize returns the size of body as Pipeline sends it after BDAT:
// every line end, CRLF, a bare CR or a bare LF, written as CRLF (RFC 5321
// §2.3.8), and the last line ended. It is the size a BDAT command
// announces (RFC 3030 §2).
func CRLFSize(body io.Reader) (int64, error) {
	d := &dataWriter{}
	if _, err := io.Copy(d, body); err != nil {
		return 0, err
	}
	if err := d.endLine(); err != nil {
		return 0, err
	}
	return d.n, nil
}

// Pipeline sends a group of commands at once, as PIPELINING allows (RFC
// 2920 §3.1): every line of lines, then, when bdat is not nil, "BDAT size
// LAST" and bdat's content with its line ends written as CRLF (RFC 3030
// §2; size is CRLFSize of that content), all in one flush. It reads no
// reply: the caller reads one per command, in order, with ReadReply. The
// caller must not pipeline past a command that changes the session's
// state, such as STARTTLS or AUTH (RFC 2920 §3.1): Pipeline is for the
// mail transaction.
func (c *Client) Pipeline(ctx context.Context, timeout time.Duration, lines []string, bdat io.Reader, size int64) error {
	if err := c.SetDeadline(ctx, timeout); err != nil {
		return err
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return errors.New("smtp: command contains CR or LF")
		}
		if _, err := c.bw.WriteString(l + "\r\n"); err != nil {
			return c.ctxErr(ctx, err)
		}
	}
	if bdat != nil {
		if _, err := fmt.Fprintf(c.bw, "BDAT %d LAST\r\n", size); err != nil {
			return c.ctxErr(ctx, err)
		}
		d := &dataWriter{w: c.bw}
		if _, err := io.Copy(d, bdat); err != nil {
			return c.ctxErr(ctx, err)
		}
		if err := d.endLine(); err != nil {
			return c.ctxErr(ctx, err)
		}
		if d.n != size {
			// The server reads exactly size bytes: the session is out of step.
			c.Close()
			return fmt.Errorf("smtp: BDAT content is %d bytes, %d announced", d.n, size)
		}
	}
	if err := c.bw.Flush(); err != nil {
		return c.ctxErr(ctx, err)
	}
	c.wrote()
	return nil
}
