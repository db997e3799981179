package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// checkSender asks the Handler's SenderChecker about the reverse-path in env
// and maps its error to the MAIL reply.
func (s *inSession) checkSender(sc SenderChecker, env *Envelope) *Error {
	err := sc.CheckSender(s.c.ctx, env)
	if err == nil {
		return nil
	}
	return s.srv.handlerReply(err, "smtp sender refused by handler", "smtp sender check failed",
		"peer", s.c.peer, "from", env.From, "auth", env.AuthIdentity)
}

// handlerReply maps a non-nil error of the Handler (ServeSMTP, CheckSender,
// CheckRecipient) to the reply and logs it with attrs: an *Error with a
// 4xx or 5xx code is the reply as is (logged at INFO as refused), anything
// else is logged at ERROR as failed and answered "451 4.3.0" without its
// text.
func (srv *Server) handlerReply(err error, refused, failed string, attrs ...any) *Error {
	if e, ok := AsError(err); ok && e.Code >= 400 && e.Code <= 599 {
		srv.log.Info(refused, append(attrs, "reply", e.Reply())...)
		return &Error{Code: e.Code, EnhancedCode: e.EnhancedCode, Message: e.Message}
	}
	srv.log.Error(failed, append(attrs, "error", err.Error())...)
	return &Error{Code: 451, EnhancedCode: EnhancedCode{4, 3, 0}, Message: "Local error in processing, try again later"}
}

// checkRecipient asks the Handler's RecipientChecker about r with env, the
// transaction so far, and maps its error to the RCPT reply.
func (s *inSession) checkRecipient(rc RecipientChecker, env *Envelope, r Recipient) *Error {
	err := rc.CheckRecipient(s.c.ctx, env, r)
	if err == nil {
		return nil
	}
	return s.srv.handlerReply(err, "smtp recipient refused by handler", "smtp recipient check failed",
		"peer", s.c.peer, "from", env.From, "rcpt", r.Address)
}

// deliver hands one message, read from r, to the Handler (RFC 5321
// §4.1.1.4; RFC 3030 BDAT) and returns the reply to its end. It runs in
// the connection's goroutine for DATA and in one of its own for BDAT, so it
// touches no session state.
func (c *inConn) deliver(env *Envelope, r io.Reader, tlsComment string) *Error {
	srv := c.srv
	body := &bodyReader{r: r, env: env}
	hdr := receivedHeader(srv.hostname(), env, tlsComment)
	err := srv.Handler.ServeSMTP(c.ctx, env, &prefixReader{prefix: hdr, r: body})
	if body.err == nil && !body.eof {
		// The Handler returned without reading to EOF: read on to the end
		// of the data, so that the message was complete before saying so.
		if _, derr := io.Copy(io.Discard, body); derr != nil && err == nil {
			srv.log.Error("smtp handler accepted a message whose body then failed", "id", env.ID, "peer", c.peer, "error", derr.Error())
		}
	}
	if body.err != nil {
		// The message is incomplete, whatever the Handler said.
		return c.bodyFailure(env, body.err)
	}
	if err != nil {
		return srv.handlerReply(err, "smtp message refused by handler", "smtp handler failed", "id", env.ID, "peer", c.peer)
	}
	if srv.log.Enabled(context.Background(), slog.LevelInfo) {
		srv.log.Info("smtp message accepted", "id", env.ID, "peer", c.peer, "from", env.From,
			"rcpts", len(env.Recipients), "tls", env.TLS.String(), "auth", env.AuthIdentity, "requiretls", env.RequireTLS)
	}
	c.accepted.Add(1)
	c.useful()
	// The queue id in the reply, as Postfix does ("250 2.0.0 Ok: queued as ...").
	return &Error{Code: 250, EnhancedCode: EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + env.ID}
}

// bodyFailure is the reply to a message whose body failed with bodyErr.
func (c *inConn) bodyFailure(env *Envelope, bodyErr error) *Error {
	srv := c.srv
	switch {
	case errors.Is(bodyErr, errDataTooLarge):
		srv.log.Info("smtp message refused: too large", "id", env.ID, "peer", c.peer, "max", srv.maxMessageBytes())
		return &Error{Code: 552, EnhancedCode: EnhancedCode{5, 3, 4}, Message: "Maximum message size exceeded"}
	case errors.Is(bodyErr, errLineTooLong):
		// A line over MaxLineLength will not get shorter on a retry: a
		// permanent failure, so the client bounces the message instead of
		// retrying it until it expires. RFC 5321 §4.5.3.1.6 bounds a text
		// line; §4.5.3.1 says exceeding a limit is reported with a reply
		// code, and 554 is the permanent failure §4.3.2 lists for the end
		// of DATA; RFC 3463 X.6.0: something about the content made the
		// message undeliverable.
		limit := orDefault(srv.MaxLineLength, DefaultMaxLineLength)
		srv.log.Info("smtp message refused: line too long", "id", env.ID, "peer", c.peer, "max", limit)
		return &Error{Code: 554, EnhancedCode: EnhancedCode{5, 6, 0}, Message: "Message has a line longer than " + strconv.Itoa(limit) + " octets (RFC 5321 section 4.5.3.1.6)"}
	}
	srv.log.Info("smtp message incomplete", "id", env.ID, "peer", c.peer, "error", bodyErr.Error())
	return &Error{Code: 451, EnhancedCode: EnhancedCode{4, 3, 0}, Message: "Message incomplete, try again later"}
}

// prefixReader yields prefix, then r. Unlike io.MultiReader it has no
// WriteTo, so io.Copy into a file or io.Discard uses the destination's
// ReadFrom instead of allocating a 32 KiB buffer per message.
type prefixReader struct {
	prefix string
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// bodyReader remembers how the message body ended and watches the header
// section go by for "TLS-Required: No" (RFC 8689 §3).
type bodyReader struct {
	r   io.Reader
	err error
	eof bool

	env     *Envelope
	hdr     []byte // header section so far, while scanning
	hdrDone bool
}

// maxScannedHeader bounds the header bytes kept for the TLS-Required scan.
const maxScannedHeader = 64 << 10

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if !b.hdrDone {
		b.scanHeader(p[:n], err != nil)
	}
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.err = err
	}
	return n, err
}

// scanHeader accumulates the header section; at its end (the empty line,
// the end of the message or the size bound) it sets env.TLSRequiredNo if a
// TLS-Required field says "No". The field is ignored when MAIL carried
// REQUIRETLS (RFC 8689 §3: the parameter takes precedence), so the
// Envelope never holds both.
func (b *bodyReader) scanHeader(p []byte, end bool) {
	// Only what p adds can complete the empty line: the search starts
	// three bytes before it, so a header sent a byte at a time (BDAT 1,
	// pipelined) is not searched again from its start at every byte.
	from := max(0, len(b.hdr)-3)
	b.hdr = append(b.hdr, p...)
	i := bytes.Index(b.hdr[from:], []byte("\r\n\r\n"))
	if i >= 0 {
		i += from
	}
	switch {
	case bytes.HasPrefix(b.hdr, []byte("\r\n")):
		i = 0 // no header section at all
	case i >= 0:
		i += 2
	case len(b.hdr) >= maxScannedHeader || end:
		i = len(b.hdr)
	default:
		return
	}
	b.hdrDone = true
	b.env.TLSRequiredNo = !b.env.RequireTLS && tlsRequiredNo(b.hdr[:i])
	b.hdr = nil
}

// tlsRequiredNo reports whether the header section h has a TLS-Required
// field whose value is "No" (RFC 8689 §3; case-insensitive, may be folded).
func tlsRequiredNo(h []byte) bool {
	lines := strings.Split(string(h), "\r\n")
	for i := 0; i < len(lines); i++ {
		name, value, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimRight(name, " \t"), "TLS-Required") {
			continue
		}
		// Unfolded once (RFC 5322 §2.2.3): adding each continuation line to
		// a string would copy the value again for every line.
		var v strings.Builder
		v.WriteString(value)
		for i+1 < len(lines) && lines[i+1] != "" && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			v.WriteString(lines[i])
		}
		if strings.EqualFold(strings.TrimSpace(v.String()), "No") {
			return true
		}
	}
	return false
}

// authenticate checks credentials: it counts the attempt against the
// client (authLimiter.begin) before waiting for a password-check slot and
// calling the Authenticator, then keeps the count for bad credentials and
// gives it back otherwise. Its error is an *Error, the reply.
func (s *inSession) authenticate(username, password string) error {
	c, srv := s.c, s.srv
	att, ok := srv.limiter.begin(c.RemoteAddr(), srv.now())
	if !ok {
		return s.authLimited()
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	done, err := srv.acquireAuthSlot(ctx)
	if err != nil {
		att.release()
		srv.log.Warn("smtp auth refused: no password check slot free", "peer", c.peer, "user", username, "error", err.Error())
		srv.observeAuth(AuthTempFailed)
		return authTempFailure()
	}
	err = srv.Authenticator.Authenticate(ctx, username, password)
	done()
	switch {
	case err == nil:
		att.release()
		s.authID = username
		srv.log.Info("smtp auth ok", "peer", c.peer, "user", username)
		srv.observeAuth(AuthSucceeded)
		c.useful()
		return nil
	case errors.Is(err, ErrAuthFailed):
		return s.authFailed(username, err) // att stays counted
	default:
		att.release()
		srv.log.Error("smtp auth backend failed", "peer", c.peer, "user", username, "error", err.Error())
		srv.observeAuth(AuthTempFailed)
		return authTempFailure()
	}
}

// authTempFailure is RFC 4954 §6 "454 4.7.0 Temporary authentication
// failure".
func authTempFailure() *Error {
	return &Error{Code: 454, EnhancedCode: EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
}

// authLimited refuses AUTH from a client over its failure budget.
func (s *inSession) authLimited() *Error {
	s.srv.log.Warn("smtp auth refused: too many failures", "peer", s.c.peer)
	s.srv.observeRefusal(RefusalAuthRateLimit)
	return &Error{Code: 454, EnhancedCode: EnhancedCode{4, 7, 0}, Message: "Too many failed authentication attempts, try again later"}
}

// authFailed answers bad credentials, whose attempt stays counted: RFC 4954
// §6 "535 5.7.8 Authentication credentials invalid".
func (s *inSession) authFailed(username string, err error) *Error {
	s.srv.log.Warn("smtp auth failed", "peer", s.c.peer, "user", username, "error", err.Error())
	s.srv.observeAuth(AuthFailed)
	return &Error{Code: 535, EnhancedCode: EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
}

// newMessageID returns a random queue identifier (base32, 16 characters).
func newMessageID() string {
	var b [10]byte
	rand.Read(b[:])
	return base32.StdEncoding.EncodeToString(b[:])
}

// receivedHeader renders the trace header the Server prepends (RFC 5321
// §4.4) with the protocol type of RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA;
// UTF8SMTP… for SMTPUTF8 per RFC 6531 §3.7.3) and the TLS used, as Postfix
// writes it:
//
//	Received: from helo ([192.0.2.1])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits))
//		by mx.example (mailtls) with ESMTPS id ABC
//		for <rcpt@example>; Mon, 02 Jan 2006 15:04:05 +0000
//
// The client-supplied HELO name and addresses are reduced to printable ASCII
// without parentheses, so they cannot break out of the header.
func receivedHeader(hostname string, env *Envelope, tlsComment string) string {
	var b strings.Builder
	b.Grow(320)
	b.WriteString("Received: from ")
	writeToken(&b, env.Helo, "unknown")
	if env.ClientAddr != nil {
		var ip string
		if ta, ok := env.ClientAddr.(*net.TCPAddr); ok {
			ip = ta.IP.String()
		} else {
			ip = env.ClientAddr.String()
			if h, _, err := net.SplitHostPort(ip); err == nil {
				ip = h
			}
		}
		b.WriteString(" ([")
		if strings.Contains(ip, ":") {
			b.WriteString("IPv6:") // RFC 5321 §4.1.3 address literal
		}
		writeToken(&b, ip, "unknown")
		b.WriteString("])")
	}
	if env.TLS != nil {
		if tlsComment == "" {
			tlsComment = env.TLS.String()
		}
		b.WriteString("\r\n\t(")
		b.WriteString(tlsComment)
		b.WriteString(")")
		if env.TLS.PeerSubject != "" {
			b.WriteString("\r\n\t(client certificate ")
			writeToken(&b, env.TLS.PeerSubject, "?")
			if env.TLS.Verified {
				b.WriteString(", verified)")
			} else {
				b.WriteString(", not verified)")
			}
		}
	}
	b.WriteString("\r\n\tby ")
	writeToken(&b, hostname, "localhost")
	b.WriteString(" (mailtls) with ")
	if env.SMTPUTF8 {
		b.WriteString("UTF8SMTP")
	} else {
		b.WriteString("ESMTP")
	}
	if env.TLS != nil {
		b.WriteByte('S')
	}
	if env.AuthIdentity != "" {
		b.WriteByte('A')
	}
	b.WriteString(" id ")
	b.WriteString(env.ID)
	if len(env.Recipients) == 1 {
		// Only for a single recipient, so Bcc recipients are not disclosed.
		b.WriteString("\r\n\tfor <")
		writeToken(&b, env.Recipients[0].Address, "")
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	var ts [40]byte
	b.Write(env.ReceivedAt.AppendFormat(ts[:0], time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}

// writeToken writes client-controlled text safely inside a header comment
// or clause: printable ASCII (and UTF-8 letters) except parentheses,
// backslash and semicolon; space becomes '_', anything else '?'.
func writeToken(b *strings.Builder, s, empty string) {
	if s == "" {
		b.WriteString(empty)
		return
	}
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\' || r == ';':
			b.WriteByte('?')
		case r > ' ' && r < 0x7f:
			b.WriteByte(byte(r))
		case r >= 0xa0 && r != 0xfffd:
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('_')
		default:
			b.WriteByte('?')
		}
	}
}
