package transport

// This file holds the Connector's own SMTP client. It is deliberately small
// and does not use go-smtp's Client, whose v0.25 behaviour is wrong for an
// MTA that must never leak a transaction in plaintext:
//
//   - its STARTTLS is unexported and NewClientStartTLS sends "EHLO localhost"
//     before TLS (RFC 5321 §4.1.1.1 wants the client's real name; several
//     MTAs reject or score "localhost");
//   - its handshake is lazy: tls.Client is installed and the first error
//     only surfaces at the next command, so a caller cannot classify a
//     certificate failure before MAIL FROM is queued;
//   - Extension reports false after a failed EHLO, conflating "not offered"
//     with "could not ask";
//   - its deadlines are fixed per command and ignore the context.
//
// Here every step is explicit: greeting, EHLO with Connector.Hostname,
// STARTTLS, tls.Conn.HandshakeContext (verification runs inside it, see
// connector_tls.go), EHLO again and a fresh extension list (RFC 3207 §4.2).
// Every read and write carries a deadline from the context and the step's
// timeout, and cancelling the context aborts a blocked read at once.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// reply is one SMTP reply (RFC 5321 §4.2): the code and the text lines
// without the code prefix.
type reply struct {
	Code  int
	Lines []string
}

// enhanced splits an RFC 2034 enhanced status code off the first line.
func (r *reply) enhanced() (EnhancedCode, string) {
	if len(r.Lines) == 0 {
		return EnhancedCode{}, ""
	}
	ec, text := splitEnhanced(r.Lines[0])
	if len(r.Lines) > 1 {
		rest := make([]string, 0, len(r.Lines))
		rest = append(rest, text)
		for _, l := range r.Lines[1:] {
			_, t := splitEnhanced(l)
			rest = append(rest, t)
		}
		text = strings.Join(rest, " ")
	}
	return ec, text
}

// asError turns the reply into an *Error for command.
func (r *reply) asError(command string) *Error {
	ec, text := r.enhanced()
	return &Error{Code: r.Code, EnhancedCode: ec, Message: text, Command: command}
}

// splitEnhanced parses a leading "x.y.z " enhanced status code (RFC 2034
// §4). A malformed or absent code yields the zero EnhancedCode and the
// line unchanged.
func splitEnhanced(line string) (EnhancedCode, string) {
	word, rest, _ := strings.Cut(line, " ")
	ec, err := ParseEnhancedCode(word)
	if err != nil {
		return EnhancedCode{}, line
	}
	return ec, rest
}

// parseEHLO reads the extension list from the lines of a 250 EHLO reply
// (RFC 5321 §4.1.1.1): the first line is the server's greeting, each
// further line an ehlo-keyword with optional parameters. Keywords are
// returned upper-cased; the parameters keep their case.
func parseEHLO(lines []string) map[string]string {
	ext := make(map[string]string)
	if len(lines) < 2 {
		return ext
	}
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		kw, params, _ := strings.Cut(l, " ")
		if !validKeyword(kw) {
			continue
		}
		ext[strings.ToUpper(kw)] = strings.TrimSpace(params)
	}
	return ext
}

// validKeyword reports whether s is an ehlo-keyword: (ALPHA / DIGIT)
// *(ALPHA / DIGIT / "-") (RFC 5321 §4.1.1.1).
func validKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}

// readReply reads one possibly multi-line reply (RFC 5321 §4.2.1). It
// rejects lines without a 3-digit code and continuation lines whose code
// differs from the first.
func readReply(r *textproto.Reader) (*reply, error) {
	var rep reply
	for {
		line, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		code, cont, text, err := parseReplyLine(line)
		if err != nil {
			return nil, err
		}
		if rep.Lines == nil {
			rep.Code = code
		} else if code != rep.Code {
			return nil, fmt.Errorf("transport: reply code changed within a multi-line reply: %q", line)
		}
		rep.Lines = append(rep.Lines, text)
		if !cont {
			return &rep, nil
		}
		if len(rep.Lines) > 512 {
			return nil, errors.New("transport: reply has too many lines")
		}
	}
}

// parseReplyLine splits "250-text" / "250 text" / "250".
func parseReplyLine(line string) (code int, cont bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("transport: malformed reply line %q", line)
	}
	code, err = strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 || line[0] == '+' || line[0] == '-' {
		return 0, false, "", fmt.Errorf("transport: malformed reply line %q", line)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		return code, true, line[4:], nil
	case ' ':
		return code, false, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("transport: malformed reply line %q", line)
}

// session is one SMTP client connection to one next-hop address.
type session struct {
	raw     net.Conn // the TCP connection
	conn    net.Conn // raw, or the *tls.Conn over it
	br      *bufio.Reader
	lim     *io.LimitedReader
	text    *textproto.Reader
	bw      *bufio.Writer
	ext     map[string]string
	tls     *tls.ConnectionState
	host    string // MX or next-hop host name
	addr    string // ip:port dialled
	created time.Time
	poolKey string
	mta     RemoteMTA // the address as computed from DNS or the route

	verified bool        // the certificate passed the level's check
	failure  FailureType // a TLS failure recorded but not enforced (testing mode, May)
	failErr  error       // the check's error behind failure, if any
	reused   bool        // taken from the idle pool

	mu        sync.Mutex
	cancelled bool
	stop      func() bool
}

func newSession(conn net.Conn, host, addr string, now time.Time) *session {
	s := &session{raw: conn, host: host, addr: addr, created: now}
	s.setConn(conn)
	return s
}

// maxReply bounds the bytes read for one reply, so a hostile server cannot
// make the client buffer an endless line.
const maxReply = 1 << 20

func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.lim = &io.LimitedReader{R: c, N: maxReply}
	s.br = bufio.NewReaderSize(s.lim, 4096)
	s.text = textproto.NewReader(s.br)
	s.bw = bufio.NewWriter(c)
}

// bind makes ctx's cancellation abort any blocked I/O on the session until
// unbind is called.
func (s *session) bind(ctx context.Context) {
	s.mu.Lock()
	s.cancelled = false
	s.mu.Unlock()
	s.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cancelled = true
		s.raw.SetDeadline(time.Unix(1, 0))
		s.mu.Unlock()
	})
}

func (s *session) unbind() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// deadline arms the connection's deadline for one step: timeout from now,
// or ctx's deadline if earlier.
func (s *session) deadline(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancelled || ctx.Err() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.Canceled
	}
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return s.raw.SetDeadline(d)
}

// read reads one reply under ctx and timeout.
func (s *session) read(ctx context.Context, timeout time.Duration) (*reply, error) {
	if err := s.deadline(ctx, timeout); err != nil {
		return nil, err
	}
	s.lim.N = maxReply
	r, err := readReply(s.text)
	return r, s.ctxErr(ctx, err)
}

// cmd sends one command line and reads its reply. line must not contain CR
// or LF.
func (s *session) cmd(ctx context.Context, timeout time.Duration, line string) (*reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, errors.New("transport: command contains CR or LF")
	}
	if err := s.deadline(ctx, timeout); err != nil {
		return nil, err
	}
	if _, err := s.bw.WriteString(line + "\r\n"); err != nil {
		return nil, s.ctxErr(ctx, err)
	}
	if err := s.bw.Flush(); err != nil {
		return nil, s.ctxErr(ctx, err)
	}
	s.lim.N = maxReply
	r, err := readReply(s.text)
	return r, s.ctxErr(ctx, err)
}

// ctxErr prefers the context's error over the deadline error it caused.
func (s *session) ctxErr(ctx context.Context, err error) error {
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

// ehlo sends EHLO name and records the extensions; on 500/502 it falls back
// to HELO (RFC 5321 §4.1.4), leaving no extensions.
func (s *session) ehlo(ctx context.Context, timeout time.Duration, name string) error {
	r, err := s.cmd(ctx, timeout, "EHLO "+name)
	if err != nil {
		return err
	}
	if r.Code == 250 {
		s.ext = parseEHLO(r.Lines)
		return nil
	}
	if r.Code == 500 || r.Code == 502 {
		r, err = s.cmd(ctx, timeout, "HELO "+name)
		if err != nil {
			return err
		}
		if r.Code == 250 {
			s.ext = map[string]string{}
			return nil
		}
		return r.asError("HELO")
	}
	return r.asError("EHLO")
}

// has reports whether the server advertised ext (upper case).
func (s *session) has(ext string) bool {
	_, ok := s.ext[ext]
	return ok
}

// startTLS sends STARTTLS and, on 220, performs the handshake explicitly.
// It returns the reply when the server refused, or the handshake error.
func (s *session) startTLS(ctx context.Context, timeout time.Duration, cfg *tls.Config) (*reply, error) {
	r, err := s.cmd(ctx, timeout, "STARTTLS")
	if err != nil {
		return nil, err
	}
	if r.Code != 220 {
		return r, nil
	}
	// Bytes already buffered after the 220 were sent in plaintext before the
	// handshake and could be an injected reply (the client-side variant of
	// CVE-2011-0411): treat them as an attack, never as a reply.
	if s.br.Buffered() > 0 {
		return nil, errors.New("transport: plaintext data after the STARTTLS reply (possible response injection)")
	}
	tc := tls.Client(s.raw, cfg)
	if err := s.deadline(ctx, timeout); err != nil {
		return nil, err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	cs := tc.ConnectionState()
	s.tls = &cs
	s.setConn(tc)
	s.ext = nil // RFC 3207 §4.2: forget everything learnt before TLS
	return nil, nil
}

// writeData streams body as the DATA content, line ends normalised and
// dot-stuffed (see dataWriter), and reads the final reply.
func (s *session) writeData(ctx context.Context, timeout time.Duration, body io.Reader) (*reply, error) {
	if err := s.deadline(ctx, timeout); err != nil {
		return nil, err
	}
	w := &dataWriter{w: s.bw}
	if _, err := io.Copy(w, body); err != nil {
		return nil, s.ctxErr(ctx, err)
	}
	if err := w.Close(); err != nil {
		return nil, s.ctxErr(ctx, err)
	}
	s.lim.N = maxReply
	r, err := readReply(s.text)
	return r, s.ctxErr(ctx, err)
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
	w       *bufio.Writer
	midLine bool // bytes of the current line have been written
	cr      bool // a CR was read and its line end not yet written
}

func (d *dataWriter) Write(p []byte) (int, error) {
	for i, c := range p {
		if d.cr {
			d.cr = false
			if _, err := d.w.Write(crlf); err != nil {
				return i, err
			}
			d.midLine = false
			if c == '\n' {
				continue // the LF of this CRLF
			}
		}
		var err error
		switch {
		case c == '\r':
			d.cr = true
		case c == '\n':
			_, err = d.w.Write(crlf)
			d.midLine = false
		default:
			if c == '.' && !d.midLine {
				err = d.w.WriteByte('.')
			}
			if err == nil {
				err = d.w.WriteByte(c)
			}
			d.midLine = true
		}
		if err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// Close ends the data with CRLF "." CRLF and flushes it.
func (d *dataWriter) Close() error {
	end := ".\r\n"
	if d.cr || d.midLine {
		end = "\r\n.\r\n"
	}
	d.cr, d.midLine = false, false
	if _, err := d.w.WriteString(end); err != nil {
		return err
	}
	return d.w.Flush()
}

var crlf = []byte("\r\n")

// quit sends QUIT (best effort, short timeout) and closes the connection.
func (s *session) quit() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = s.cmd(ctx, 2*time.Second, "QUIT")
	s.close()
}

func (s *session) close() {
	s.unbind()
	s.conn.Close()
	s.raw.Close()
}

// xtext encodes s as RFC 3461 §4 xtext: "+" and "=", and characters
// outside "!" to "~", as "+HH".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
