package smtpclient

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ErrNoTLSConfig is returned by Dialer.Dial without a TLSConfig.
var ErrNoTLSConfig = errors.New("smtp: Dialer.TLSConfig is nil")

// stepTimeout bounds each step of a Dialer's session; the context bounds
// the whole.
const stepTimeout = 5 * time.Minute

// Dialer opens sessions that are ready for a transaction: connected, greeted,
// EHLO, STARTTLS (RFC 3207), EHLO again. It is the short way for tools and
// tests; an MTA that decides per hop whether TLS is required drives a Client
// itself.
type Dialer struct {
	// TLSConfig is used for STARTTLS; it is required.
	TLSConfig *tls.Config
	// Hello is the EHLO name; "localhost" if empty.
	Hello string
	// LocalAddr, if set, is the local address to dial from.
	LocalAddr net.Addr
	// AfterWrite, if set, is called with the TCP connection after each
	// command or message is written (a load tool's hook, e.g. to set
	// TCP_QUICKACK).
	AfterWrite func(net.Conn)
}

// Dial connects to addr ("host:port") and returns a session after STARTTLS
// and the second EHLO. A refusal on the way is a *ReplyError.
func (d *Dialer) Dial(ctx context.Context, addr string) (*Client, error) {
	if d.TLSConfig == nil {
		return nil, ErrNoTLSConfig
	}
	nd := net.Dialer{LocalAddr: d.LocalAddr}
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := New(raw)
	c.afterWrite = d.AfterWrite
	hello := d.Hello
	if hello == "" {
		hello = "localhost"
	}
	if err := c.start(ctx, hello, d.TLSConfig); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) start(ctx context.Context, hello string, cfg *tls.Config) error {
	r, err := c.ReadReply(ctx, stepTimeout)
	if err != nil {
		return fmt.Errorf("smtp: greeting: %w", err)
	}
	if r.Code != 220 {
		return &ReplyError{Want: 220, Reply: *r}
	}
	if err := c.Hello(ctx, stepTimeout, hello); err != nil {
		return err
	}
	rep, err := c.StartTLS(ctx, stepTimeout, cfg)
	if err != nil {
		return err
	}
	if rep != nil {
		return &ReplyError{Command: "STARTTLS", Want: 220, Reply: *rep}
	}
	return c.Hello(ctx, stepTimeout, hello)
}

// Expect sends line and returns a *ReplyError unless the reply's code is
// want. The error names the command by its verb (and AUTH by its
// mechanism), never its arguments, so credentials stay out of errors.
func (c *Client) Expect(ctx context.Context, line string, want int) error {
	r, err := c.Cmd(ctx, stepTimeout, line)
	return expect(verb(line), r, err, want)
}

func expect(cmd string, r *Reply, err error, want int) error {
	if err != nil {
		return fmt.Errorf("smtp: %s: %w", cmd, err)
	}
	if r.Code != want {
		return &ReplyError{Command: cmd, Want: want, Reply: *r}
	}
	return nil
}

func verb(line string) string {
	f := strings.Fields(line)
	switch {
	case len(f) == 0:
		return ""
	case strings.EqualFold(f[0], "AUTH") && len(f) > 1:
		return f[0] + " " + f[1]
	case strings.EqualFold(f[0], "BDAT"):
		return "BDAT"
	}
	v, _, _ := strings.Cut(f[0], ":")
	return v
}

// Send runs one transaction: MAIL FROM:<from>, RCPT TO:<to>, and the body
// by DATA (dot-stuffed) or, with bdat, as one BDAT LAST chunk (RFC 3030).
// body's line ends must be CRLF for BDAT.
func (c *Client) Send(ctx context.Context, from, to, body string, bdat bool) error {
	if err := c.Expect(ctx, "MAIL FROM:<"+from+">", 250); err != nil {
		return err
	}
	if err := c.Expect(ctx, "RCPT TO:<"+to+">", 250); err != nil {
		return err
	}
	if bdat {
		r, err := c.BDAT(ctx, stepTimeout, []byte(body), true)
		return expect("BDAT", r, err, 250)
	}
	if err := c.Expect(ctx, "DATA", 354); err != nil {
		return err
	}
	r, err := c.Data(ctx, stepTimeout, strings.NewReader(body))
	return expect("DATA", r, err, 250)
}

// AuthPlain authenticates with the PLAIN mechanism (RFC 4954 §4, RFC 4616)
// in one line; the credentials never appear in an error.
func (c *Client) AuthPlain(ctx context.Context, authzid, user, password string) error {
	resp := base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + user + "\x00" + password))
	return c.Expect(ctx, "AUTH PLAIN "+resp, 235)
}
