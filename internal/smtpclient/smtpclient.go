// Package smtpclient is a minimal lock-step SMTP client for loopback load
// tests and benchmarks: it dials, requires STARTTLS (RFC 3207), says EHLO
// (RFC 5321, Section 4.1.1.1) before and after the handshake, and sends
// messages with MAIL, RCPT and DATA (RFC 5321, Section 4.1.1.4) or
// BDAT LAST (RFC 3030, Section 2), after an optional AUTH PLAIN (RFC 4954,
// RFC 4616). Every reply is read and its code checked before the next
// command is written; nothing is pipelined.
//
// Not implemented: PIPELINING (RFC 2920), other SASL mechanisms, SMTPUTF8,
// more than one
// recipient per message, dot-stuffing (Send writes the body as given) and
// any parsing of EHLO keywords: the caller knows what its server offers.
// It is not a general-purpose client; transport.Connector is.
package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Dialer holds the options for Dial. The zero value is not usable:
// TLSConfig is required. A Dialer may be used by several goroutines at once
// and must not be modified after its first Dial.
type Dialer struct {
	// TLSConfig is the configuration for the STARTTLS handshake. It must
	// be non-nil; it decides verification (RootCAs, ServerName) and
	// resumption (ClientSessionCache: nil means a full handshake on every
	// connection).
	TLSConfig *tls.Config

	// Hello is the name sent with EHLO. Empty means "localhost".
	Hello string

	// AfterWrite, if not nil, is called with the TCP connection after
	// every command or message is written, before its reply is read.
	// smtpload uses it to set TCP_QUICKACK. Nil does nothing.
	AfterWrite func(net.Conn)

	// LocalAddr, if not nil, is the local address the TCP connection is
	// made from, as net.Dialer.LocalAddr (on Linux every address of
	// 127.0.0.0/8 can be bound without configuration, so that one process
	// can be many loopback clients). Nil lets the system choose.
	LocalAddr net.Addr
}

// ErrNoTLSConfig is returned by Dial when Dialer.TLSConfig is nil.
var ErrNoTLSConfig = errors.New("smtpclient: Dialer.TLSConfig is nil")

// ReplyError is a reply whose code was not the one expected.
type ReplyError struct {
	Command string // the command sent, without CRLF ("" for the greeting)
	Want    string // the expected three-digit code
	Line    string // the reply line received, without CRLF
}

func (e *ReplyError) Error() string {
	cmd := e.Command
	if cmd == "" {
		cmd = "greeting"
	}
	return fmt.Sprintf("smtpclient: %s: got %q, want %s", cmd, e.Line, e.Want)
}

// Client is one open SMTP session after STARTTLS and the second EHLO. Its
// methods must not be called concurrently.
type Client struct {
	raw        net.Conn      // the TCP connection
	tc         *tls.Conn     // TLS over raw
	r          *bufio.Reader // reads tc
	bw         *bufio.Writer // writes tc
	afterWrite func(net.Conn)
}

// Dial connects to addr over TCP, reads the 220 greeting, says EHLO, STARTTLS,
// completes the TLS handshake (RFC 3207, Section 4) and says EHLO again.
// STARTTLS is required: a reply other than 220 is a *ReplyError, never a
// plaintext fallback.
//
// ctx bounds the whole of Dial; once Dial has returned, it has no effect on
// the Client (the methods take their own context).
func (d *Dialer) Dial(ctx context.Context, addr string) (*Client, error) {
	if d.TLSConfig == nil {
		return nil, ErrNoTLSConfig
	}
	nd := net.Dialer{LocalAddr: d.LocalAddr}
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &Client{raw: raw, r: bufio.NewReader(raw), afterWrite: d.AfterWrite}
	stop := c.watch(ctx)
	err = c.start(ctx, raw, d)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) start(ctx context.Context, raw net.Conn, d *Dialer) error {
	hello := d.Hello
	if hello == "" {
		hello = "localhost"
	}
	if err := c.expect("", "220"); err != nil {
		return err
	}
	// Before STARTTLS, commands go straight to the TCP connection.
	if err := c.cmdTo(raw, "EHLO "+hello, "250"); err != nil {
		return err
	}
	if err := c.cmdTo(raw, "STARTTLS", "220"); err != nil {
		return err
	}
	c.tc = tls.Client(raw, d.TLSConfig)
	if err := c.tc.HandshakeContext(ctx); err != nil {
		return err
	}
	// RFC 3207, Section 4.2: discard what was learnt before TLS.
	c.r = bufio.NewReader(c.tc)
	c.bw = bufio.NewWriterSize(c.tc, 32<<10)
	return c.cmdTo(c.tc, "EHLO "+hello, "250")
}

// Send sends one message from from to the single recipient to: MAIL, RCPT,
// then DATA and the body followed by ".", or, if bdat, BDAT <len> LAST and
// the body (RFC 3030, Section 2; the server must offer CHUNKING). It
// returns nil once the final reply is 250.
//
// body must be a message with CRLF line endings ending in CRLF; for DATA no
// line may start with '.', since Send does not dot-stuff.
//
// If ctx is done while Send waits, the connection's deadline is set to now
// and Send fails; the Client should then be closed.
func (c *Client) Send(ctx context.Context, from, to, body string, bdat bool) error {
	stop := c.watch(ctx)
	defer stop()
	if err := c.cmdTo(c.tc, "MAIL FROM:<"+from+">", "250"); err != nil {
		return err
	}
	if err := c.cmdTo(c.tc, "RCPT TO:<"+to+">", "250"); err != nil {
		return err
	}
	cmd := "DATA"
	if bdat {
		cmd = fmt.Sprintf("BDAT %d LAST", len(body))
		c.bw.WriteString(cmd + "\r\n")
		c.bw.WriteString(body)
	} else {
		if err := c.cmdTo(c.tc, cmd, "354"); err != nil {
			return err
		}
		c.bw.WriteString(body)
		c.bw.WriteString(".\r\n")
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	c.wrote()
	return c.expect(cmd, "250")
}

// AuthPlain authenticates with AUTH PLAIN and an initial response (RFC 4954,
// Section 4; RFC 4616, Section 2: authzid NUL authcid NUL passwd, base64)
// and returns nil once the reply is 235. Any other reply is a *ReplyError
// whose Line carries the server's code (535 for bad credentials, 454 for a
// temporary failure, RFC 4954 Section 6); the session stays usable.
// authzid is usually empty: act as user.
func (c *Client) AuthPlain(ctx context.Context, authzid, user, password string) error {
	stop := c.watch(ctx)
	defer stop()
	resp := base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + user + "\x00" + password))
	if _, err := io.WriteString(c.tc, "AUTH PLAIN "+resp+"\r\n"); err != nil {
		return err
	}
	c.wrote()
	return c.expect("AUTH PLAIN", "235") // the credentials stay out of errors
}

// Quit sends QUIT and reads the 221 reply (RFC 5321, Section 4.1.1.10). It
// does not close the connection; call Close. A server that closes the
// connection instead of replying gives an error wrapping io.EOF.
func (c *Client) Quit(ctx context.Context) error {
	stop := c.watch(ctx)
	defer stop()
	return c.cmdTo(c.tc, "QUIT", "221")
}

// Body returns a message of exactly size octets for Send: a Subject header,
// an empty line and lines of up to 78 octets, all ending in CRLF, none
// starting with '.'. size should be at least len(subject)+13, the header
// and the empty line; a smaller size truncates the header.
func Body(subject string, size int) string {
	line := strings.Repeat("abcdefghij", 7) + "012345\r\n" // 78 octets
	var b strings.Builder
	b.WriteString("Subject: " + subject + "\r\n\r\n")
	for b.Len() < size {
		b.WriteString(line)
	}
	s := b.String()[:size-2]
	if strings.HasSuffix(s, "\r") { // the cut split a CRLF: no bare CR
		s = s[:len(s)-1] + "x"
	}
	return s + "\r\n"
}

// Close closes the TCP connection without QUIT.
func (c *Client) Close() error { return c.raw.Close() }

// watch sets the connection's deadline to now when ctx is done, until the
// returned stop is called; stop reports whether it stopped that from
// happening. A context that is never done costs nothing.
func (c *Client) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { c.raw.SetDeadline(time.Unix(1, 0)) })
}

// cmdTo writes line and CRLF to w and expects a reply with code.
func (c *Client) cmdTo(w io.Writer, line, code string) error {
	if _, err := io.WriteString(w, line+"\r\n"); err != nil {
		return err
	}
	c.wrote()
	return c.expect(line, code)
}

func (c *Client) wrote() {
	if c.afterWrite != nil {
		c.afterWrite(c.raw)
	}
}

// expect reads one reply, all its lines (RFC 5321, Section 4.2.1), and
// checks that each starts with code.
func (c *Client) expect(cmd, code string) error {
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			if cmd == "" {
				cmd = "greeting"
			}
			return fmt.Errorf("smtpclient: %s: %w", cmd, err)
		}
		if !strings.HasPrefix(l, code) {
			return &ReplyError{Command: cmd, Want: code, Line: strings.TrimRight(l, "\r\n")}
		}
		if len(l) > 3 && l[3] == ' ' {
			return nil
		}
	}
}
