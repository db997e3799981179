package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"
)

// inBackend is the go-smtp Backend of a Server.
type inBackend struct{ srv *Server }

// NewSession is called by go-smtp on the first EHLO/HELO and again on the
// first EHLO after STARTTLS (go-smtp logs the old session out, RFC 3207 §4.2).
func (b *inBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ic := connOf(c.Conn())
	if ic == nil {
		return nil, errors.New("transport: connection not accepted by this Server")
	}
	ic.setGreeted()
	if tc, ok := c.Conn().(*tls.Conn); ok {
		ic.tlsConn.Store(tc)
	}
	cs, ok := c.TLSConnectionState()
	s := &inSession{srv: b.srv, conn: c, ic: ic, tls: ic.tlsInfo(cs, ok)}
	if s.tls != nil {
		s.tlsComment = s.tls.String() // once per session: CipherSuiteName allocates
	}
	return s, nil
}

// connOf finds the inConn beneath go-smtp's connection (plaintext or TLS).
func connOf(nc net.Conn) *inConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	ic, _ := nc.(*inConn)
	return ic
}

// inSession is one go-smtp session: from EHLO to STARTTLS, or from EHLO to
// QUIT. It holds the transaction in progress.
type inSession struct {
	srv  *Server
	conn *smtp.Conn
	ic   *inConn
	tls  *TLSInfo // nil in plaintext

	tlsComment string // tls.String(), for Received headers

	// mu guards the fields below: for BDAT, go-smtp runs Data in its own
	// goroutine while the connection goroutine may still call Reset (RSET,
	// an aborted transfer) or Auth.
	mu     sync.Mutex
	authID string

	// Transaction.
	from  *string
	helo  string
	mail  smtp.MailOptions
	rcpts []Recipient
}

var (
	_ smtp.Session     = (*inSession)(nil)
	_ smtp.AuthSession = (*inSession)(nil)
)

// smtpErr builds the go-smtp reply for an SMTP-level refusal.
func smtpErr(code int, ec EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(ec), Message: msg}
}

// Mail starts a transaction (RFC 5321 §4.1.1.2). It re-checks what the
// plaintext filter already enforces, so that no path through go-smtp can
// start a transaction the policy forbids.
func (s *inSession) Mail(from string, opts *smtp.MailOptions) error {
	if badAddressText(from) {
		return smtpErr(501, EnhancedCode{5, 1, 7}, "Invalid character in sender address")
	}
	if s.tls == nil && s.srv.Inbound.RequireTLS() {
		s.srv.observeRefusal(RefusalNoSTARTTLS)
		return smtpErr(530, EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	}
	if opts != nil && opts.RequireTLS && s.tls == nil {
		// RFC 8689 §4.1: REQUIRETLS is offered only in a TLS session; a
		// message demanding TLS must not be accepted over plaintext.
		s.srv.observeRefusal(RefusalRequireTLSPlaintext)
		return smtpErr(530, EnhancedCode{5, 7, 10}, "REQUIRETLS needs a TLS session; issue STARTTLS first")
	}
	s.mu.Lock()
	if s.srv.requiresAuth() && s.authID == "" {
		s.mu.Unlock()
		return smtpErr(530, EnhancedCode{5, 7, 0}, "Authentication required")
	}
	s.from = &from
	s.helo = s.conn.Hostname()
	s.mail = smtp.MailOptions{}
	if opts != nil {
		s.mail = *opts
	}
	s.rcpts = nil
	sc, check := s.srv.Handler.(SenderChecker)
	var env *Envelope
	if check {
		env = s.envelopeLocked()
	}
	s.mu.Unlock()
	if check {
		if err := s.checkSender(sc, env); err != nil {
			s.mu.Lock()
			s.from, s.mail = nil, smtp.MailOptions{}
			s.mu.Unlock()
			return err
		}
	}
	s.ic.setInTx(true)
	s.ic.useful()
	s.srv.log.Debug("smtp mail from", "peer", s.ic.peer, "from", from)
	return nil
}

// checkSender asks the Handler's SenderChecker about the reverse-path in env
// and maps its error to the MAIL reply.
func (s *inSession) checkSender(sc SenderChecker, env *Envelope) error {
	err := sc.CheckSender(s.ic.ctx, env)
	if err == nil {
		return nil
	}
	return s.handlerReply(err, "smtp sender refused by handler", "smtp sender check failed",
		"peer", s.ic.peer, "from", env.From, "auth", env.AuthIdentity)
}

// handlerReply maps a non-nil error of the Handler (ServeSMTP, CheckSender,
// CheckRecipient) to the reply and logs it with attrs: an *Error with a
// 4xx or 5xx code is the reply as is (logged at INFO as refused), anything
// else is logged at ERROR as failed and answered "451 4.3.0" without its
// text.
func (s *inSession) handlerReply(err error, refused, failed string, attrs ...any) error {
	if e, ok := AsError(err); ok && e.Code >= 400 && e.Code <= 599 {
		s.srv.log.Info(refused, append(attrs, "reply", e.Reply())...)
		return smtpErr(e.Code, e.EnhancedCode, e.Message)
	}
	s.srv.log.Error(failed, append(attrs, "error", err.Error())...)
	return smtpErr(451, EnhancedCode{4, 3, 0}, "Local error in processing, try again later")
}

// Rcpt adds a recipient with its DSN parameters (RFC 3461 §4.1, §4.2),
// after asking the Handler if it is a RecipientChecker. go-smtp has already
// enforced MaxRecipients ("452 4.5.3").
func (s *inSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if badAddressText(to) || (opts != nil && badAddressText(opts.OriginalRecipient)) {
		return smtpErr(501, EnhancedCode{5, 1, 3}, "Invalid character in recipient address")
	}
	r := Recipient{Address: to}
	if opts != nil {
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, strings.ToUpper(string(n)))
		}
		if opts.OriginalRecipient != "" {
			r.ORCPT = strings.ToLower(string(opts.OriginalRecipientType)) + ";" + opts.OriginalRecipient
		}
	}
	if rc, ok := s.srv.Handler.(RecipientChecker); ok {
		if err := s.checkRecipient(rc, r); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.rcpts = append(s.rcpts, r)
	s.mu.Unlock()
	s.ic.useful()
	return nil
}

// badAddressText reports whether an address (a reverse-path, forward-path
// or decoded ORCPT value) holds what no mailbox may: invalid UTF-8, a C0
// control (NUL, tab, CR, LF...), DEL, or a C1 control (U+0080 to U+009F).
// RFC 5321 §4.1.2 allows none of them in a Mailbox (atext, qtextSMTP and
// quoted-pairSMTP are printable ASCII); RFC 6531 §3.3 extends them only
// with UTF-8 non-ASCII, which excludes the C1 controls (RFC 6532 §3.1,
// RFC 5198 §2). go-smtp v0.25 refuses tab and space only in an unquoted
// local part and lets the rest through, so that NUL, escapes and the like
// would otherwise reach Return-Path, Delivered-To, Maildir names and DSNs.
func badAddressText(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || r <= 0x9f {
			return true // invalid UTF-8, or a C1 control
		}
		i += n
	}
	return false
}

// checkRecipient asks the Handler's RecipientChecker about r with a copy of
// the transaction so far, and maps its error to the RCPT reply.
func (s *inSession) checkRecipient(rc RecipientChecker, r Recipient) error {
	s.mu.Lock()
	if s.from == nil {
		s.mu.Unlock()
		return smtpErr(503, EnhancedCode{5, 5, 1}, "Bad sequence of commands")
	}
	env := s.envelopeLocked()
	env.Recipients = append([]Recipient(nil), s.rcpts...)
	s.mu.Unlock()
	err := rc.CheckRecipient(s.ic.ctx, env, r)
	if err == nil {
		return nil
	}
	return s.handlerReply(err, "smtp recipient refused by handler", "smtp recipient check failed",
		"peer", s.ic.peer, "from", env.From, "rcpt", r.Address)
}

// envelopeLocked builds the Envelope of the transaction so far, without
// recipients, ID or arrival time; s.mu must be held and MAIL given.
func (s *inSession) envelopeLocked() *Envelope {
	return &Envelope{
		From:         *s.from,
		RequireTLS:   s.mail.RequireTLS,
		SMTPUTF8:     s.mail.UTF8,
		Body:         string(s.mail.Body),
		Size:         s.mail.Size,
		Return:       string(s.mail.Return),
		EnvelopeID:   s.mail.EnvelopeID,
		ClientAddr:   s.ic.RemoteAddr(),
		Helo:         s.helo,
		AuthIdentity: s.authID,
		TLS:          s.tls,
	}
}

// Reset discards the transaction (RSET, EHLO, end of DATA).
func (s *inSession) Reset() {
	s.mu.Lock()
	s.from, s.rcpts, s.mail = nil, nil, smtp.MailOptions{}
	s.mu.Unlock()
	s.ic.setInTx(false)
}

// Logout ends the session (QUIT, close, or a successful STARTTLS).
func (s *inSession) Logout() error {
	s.Reset()
	s.ic.onSessionLogout()
	return nil
}

// Data hands the message to the Handler (RFC 5321 §4.1.1.4; RFC 3030 BDAT).
func (s *inSession) Data(r io.Reader) error {
	s.mu.Lock()
	if s.from == nil {
		s.mu.Unlock()
		return smtpErr(503, EnhancedCode{5, 5, 1}, "Bad sequence of commands")
	}
	dotStuffed := isDotStuffed(r) // DATA, not BDAT
	s.ic.beginData()
	defer s.ic.endData(dotStuffed)

	srv := s.srv
	env := s.envelopeLocked()
	env.ID, env.ReceivedAt = newMessageID(), srv.now()
	env.Recipients, s.rcpts = s.rcpts, nil // the envelope owns them now
	s.mu.Unlock()

	body := &bodyReader{r: r, env: env}
	if dotStuffed {
		// Repair go-smtp's end of data (server_dot.go).
		body.fix, body.ic = &dotRepair{}, s.ic
		s.ic.beginDotRepair()
		defer s.ic.endDotRepair()
	}
	hdr := receivedHeader(srv.hostname(), env, s.tlsComment)
	err := srv.Handler.ServeSMTP(s.ic.ctx, env, &prefixReader{prefix: hdr, r: body})
	if body.err == nil && !body.eof {
		// The Handler returned without reading to EOF: read on, through
		// the repair, to the end of the data, so that the message was
		// complete before saying so, and so that go-smtp's own drain
		// does not miss an end of data after a bare CR.
		if _, derr := io.Copy(io.Discard, body); derr != nil && err == nil {
			srv.log.Error("smtp handler accepted a message whose body then failed", "id", env.ID, "peer", s.ic.peer, "error", derr.Error())
		}
	}
	if body.err != nil && !errors.Is(body.err, io.EOF) {
		// The message is incomplete, whatever the Handler said.
		return s.bodyFailure(env, body.err, err)
	}
	if err != nil {
		return s.handlerReply(err, "smtp message refused by handler", "smtp handler failed", "id", env.ID, "peer", s.ic.peer)
	}
	if srv.log.Enabled(context.Background(), slog.LevelInfo) {
		srv.log.Info("smtp message accepted", "id", env.ID, "peer", s.ic.peer, "from", env.From,
			"rcpts", len(env.Recipients), "tls", env.TLS.String(), "auth", env.AuthIdentity, "requiretls", env.RequireTLS)
	}
	s.ic.accepted.Add(1)
	s.ic.useful()
	// A 250 "error" is how a go-smtp Session chooses its success text; it
	// names the queue id as Postfix does ("250 2.0.0 Ok: queued as ...").
	return smtpErr(250, EnhancedCode{2, 0, 0}, "Ok: queued as "+env.ID)
}

func (s *inSession) bodyFailure(env *Envelope, bodyErr, handlerErr error) error {
	var se *smtp.SMTPError
	if errors.As(bodyErr, &se) {
		s.srv.log.Info("smtp message refused", "id", env.ID, "peer", s.ic.peer, "reply", se.Error())
		return se // ErrDataTooLarge: 552 5.3.4
	}
	if errors.Is(bodyErr, smtp.ErrTooLongLine) {
		// A line over MaxLineLength will not get shorter on a retry: a
		// permanent failure, so the client bounces the message instead of
		// retrying it until it expires. RFC 5321 §4.5.3.1.6 bounds a text
		// line; §4.5.3.1 says exceeding a limit is reported with a reply
		// code, and 554 is the permanent failure §4.3.2 lists for the end
		// of DATA; RFC 3463 X.6.0: something about the content made the
		// message undeliverable. go-smtp then closes the connection
		// ("500 5.4.0"): its line reader cannot resume after such a line;
		// inConn.lingerRead lets a client still sending read the reply.
		s.ic.linger.Store(true)
		limit := orInt(s.srv.MaxLineLength, DefaultMaxLineLength)
		s.srv.log.Info("smtp message refused: line too long", "id", env.ID, "peer", s.ic.peer, "max", limit)
		return smtpErr(554, EnhancedCode{5, 6, 0}, "Message has a line longer than "+strconv.Itoa(limit)+" octets (RFC 5321 section 4.5.3.1.6)")
	}
	s.srv.log.Info("smtp message incomplete", "id", env.ID, "peer", s.ic.peer, "error", bodyErr.Error())
	if errors.Is(bodyErr, smtp.ErrDataReset) {
		return bodyErr // BDAT transfer aborted by RSET; go-smtp writes nothing useful to a gone client
	}
	return smtpErr(451, EnhancedCode{4, 3, 0}, "Message incomplete, try again later")
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

// bodyReader remembers how the message body ended, watches the header
// section go by for "TLS-Required: No" (RFC 8689 §3), and for DATA repairs
// go-smtp's end of data (fix, see server_dot.go).
type bodyReader struct {
	r   io.Reader
	err error
	eof bool

	fix  *dotRepair // nil for BDAT
	ic   *inConn
	rerr error   // how go-smtp's output (or the repair) ended
	tiny [3]byte // for a one-byte p: [0] != 0 if [1] is pending; [1:] the buffer

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
	var n int
	var err error
	if b.fix != nil {
		n, err = b.readRepaired(p)
	} else {
		n, err = b.r.Read(p)
	}
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

// readRepaired reads go-smtp's DATA output through the repair, in place in
// p. Reading go-smtp's data reader, it lets inConn interrupt it with
// errDataYield before every read of the network, so that it sees every
// byte the client sent before the server waits for more: an end of data
// go-smtp missed is found before the server would wait for bytes the client
// will not send. There it returns io.EOF and has inConn fail go-smtp's next
// reads until the reply is written, which ends go-smtp's own drain.
func (b *bodyReader) readRepaired(p []byte) (int, error) {
	if b.tiny[0] > 0 { // a byte that did not fit a one-byte p
		p[0], b.tiny[0] = b.tiny[1], 0
		return 1, nil
	}
	for b.rerr == nil && len(p) > 0 {
		buf := p
		if len(p) < 2 {
			buf = b.tiny[1:] // room for a held CR and one byte
		}
		h := b.fix.held()
		n, err := b.r.Read(buf[h:])
		yielded := errors.Is(err, errDataYield)
		if yielded {
			err = nil
		}
		m, end, used := b.fix.repairInPlace(buf, h, n)
		if end {
			// Under TLS, go-smtp may have read bytes after the end of
			// data (commands pipelined after it): those after it in
			// buf, and, when it did not stop for errDataYield, any it
			// still buffers, which one more read tells.
			b.ic.dataEnded.Store(true)
			lost := used < n
			if !lost && !yielded {
				var probe [1]byte
				k, _ := b.r.Read(probe[:])
				lost = k > 0
			}
			b.ic.endOfData(lost)
			err = io.EOF
		}
		if yielded {
			b.ic.checked.Store(true)
		}
		b.rerr = err
		if m > 0 && len(p) < 2 {
			p[0] = buf[0]
			if m == 2 {
				b.tiny[0], b.tiny[1] = 1, buf[1]
			}
			m = 1
		}
		if m > 0 || err != nil {
			if b.tiny[0] > 0 && err != nil {
				return m, nil // the error comes after the pending byte
			}
			return m, err
		}
	}
	if b.tiny[0] > 0 {
		return 0, nil
	}
	return 0, b.rerr
}

// scanHeader accumulates the header section; at its end (the empty line,
// the end of the message or the size bound) it sets env.TLSRequiredNo if a
// TLS-Required field says "No". The field is ignored when MAIL carried
// REQUIRETLS (RFC 8689 §3: the parameter takes precedence), so the
// Envelope never holds both.
func (b *bodyReader) scanHeader(p []byte, end bool) {
	b.hdr = append(b.hdr, p...)
	i := bytes.Index(b.hdr, []byte("\r\n\r\n"))
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
		for i+1 < len(lines) && lines[i+1] != "" && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			value += lines[i]
		}
		if strings.EqualFold(strings.TrimSpace(value), "No") {
			return true
		}
	}
	return false
}

// AuthMechanisms lists PLAIN and LOGIN under TLS when an Authenticator is
// set, nothing otherwise (RFC 4954 §4: no plaintext passwords in clear).
func (s *inSession) AuthMechanisms() []string {
	if s.tls == nil || s.srv.Authenticator == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts an AUTH exchange (RFC 4954 §4), refusing it in plaintext and
// for a client address over its failure budget.
func (s *inSession) Auth(mech string) (sasl.Server, error) {
	if s.tls == nil {
		s.srv.observeRefusal(RefusalPlaintextAuth)
		return nil, smtpErr(538, EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	}
	if s.srv.Authenticator == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	s.mu.Lock()
	authed := s.authID != ""
	s.mu.Unlock()
	if authed {
		// RFC 4954 §4: "After a successful AUTH command completes, a
		// server MUST reject any further AUTH commands with a 503 reply."
		// (go-smtp's own check relies on the success path we replace.)
		return nil, smtpErr(503, EnhancedCode{5, 5, 1}, "Already authenticated")
	}
	if s.srv.limiter.limited(s.ic.RemoteAddr(), s.srv.now()) {
		return nil, s.authLimited()
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				if _, ok := s.srv.limiter.begin(s.ic.RemoteAddr(), s.srv.now()); !ok {
					return s.authLimited()
				}
				return s.authFailed(username, errors.New("authorization identity differs from authentication identity"))
			}
			return s.authenticate(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: s.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks credentials: it counts the attempt against the
// client (authLimiter.begin) before waiting for a password-check slot and
// calling the Authenticator, then keeps the count for bad credentials and
// gives it back otherwise.
func (s *inSession) authenticate(username, password string) error {
	att, ok := s.srv.limiter.begin(s.ic.RemoteAddr(), s.srv.now())
	if !ok {
		return s.authLimited()
	}
	ctx, cancel := context.WithTimeout(s.ic.ctx, time.Minute)
	defer cancel()
	done, err := s.srv.acquireAuthSlot(ctx)
	if err != nil {
		att.release()
		s.srv.log.Warn("smtp auth refused: no password check slot free", "peer", s.ic.peer, "user", username, "error", err.Error())
		s.srv.observeAuth(AuthTempFailed)
		return authTempFailure()
	}
	err = s.srv.Authenticator.Authenticate(ctx, username, password)
	done()
	switch {
	case err == nil:
		att.release()
		s.mu.Lock()
		s.authID = username
		s.mu.Unlock()
		s.srv.log.Info("smtp auth ok", "peer", s.ic.peer, "user", username)
		s.srv.observeAuth(AuthSucceeded)
		s.ic.useful()
		return authSucceeded()
	case errors.Is(err, ErrAuthFailed):
		return s.authFailed(username, err) // att stays counted
	default:
		att.release()
		s.srv.log.Error("smtp auth backend failed", "peer", s.ic.peer, "user", username, "error", err.Error())
		s.srv.observeAuth(AuthTempFailed)
		return authTempFailure()
	}
}

// authTempFailure is RFC 4954 §6 "454 4.7.0 Temporary authentication
// failure".
func authTempFailure() error {
	return smtpErr(454, EnhancedCode{4, 7, 0}, "Temporary authentication failure")
}

// authLimited refuses AUTH from a client over its failure budget.
func (s *inSession) authLimited() error {
	s.srv.log.Warn("smtp auth refused: too many failures", "peer", s.ic.peer)
	s.srv.observeRefusal(RefusalAuthRateLimit)
	return smtpErr(454, EnhancedCode{4, 7, 0}, "Too many failed authentication attempts, try again later")
}

// authSucceeded is the reply to a successful AUTH, RFC 4954 §6 "235 2.7.0
// Authentication Succeeded". go-smtp v0.25 answers a SASL exchange that
// completes without error "235 2.0.0", and writes it through the TLS
// connection, below which nothing of ours can rewrite it. So, as Data
// chooses its 250 text, success is returned as an SMTPError with code 235,
// which go-smtp writes as is (handleAuth's writeError); the session, not
// go-smtp's didAuth flag, then holds the authenticated state, and Auth
// refuses a second AUTH with 503 itself. The value must be a bare
// *smtp.SMTPError: go-smtp matches it with a type assertion, not errors.As.
func authSucceeded() error {
	return smtpErr(235, EnhancedCode{2, 7, 0}, "Authentication successful")
}

// authFailed answers bad credentials, whose attempt stays counted.
func (s *inSession) authFailed(username string, err error) error {
	s.srv.log.Warn("smtp auth failed", "peer", s.ic.peer, "user", username, "error", err.Error())
	s.srv.observeAuth(AuthFailed)
	return smtp.ErrAuthFailed // 535 5.7.8 (RFC 4954 §6)
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
