package transport

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/transport/smtpclient"
)

// attemptResult is the outcome of one attempt at one address.
type attemptResult struct {
	pending []int  // recipients still without a final result
	retry   bool   // the next address may be tried for pending
	err     *Error // why pending are not done (nil if none pending)
	mta     RemoteMTA
	tls     *TLSInfo
	failure policy.FailureType
	cause   error      // the TLS check's error when failure is recorded but not enforced
	dane    *dane.Host // the host's DANE decision, when DANE applied to the attempt
	local   net.IP     // our address on the connection, if one was made
	code    int        // the last reply code of a completed transaction, for the log
	// mxMismatch: the host was used outside the MTA-STS patterns (testing
	// mode); refused: the hosts an enforced policy's patterns refused, when
	// none was left to try. Both are policy validation failures for
	// TLS-RPT (recordTLSRPT).
	mxMismatch bool
	refused    []string
}

// attempt runs one connection (new or pooled) and one transaction.
func (c *Connector) attempt(ctx context.Context, st *groupState, t target, ip net.IP, pending []int) *attemptResult {
	start := c.now()
	mta := RemoteMTA{Host: t.host, IP: ip, Port: t.port}
	s, ar := c.connect(ctx, st, t, ip)
	if ar != nil {
		ar.pending, ar.mta, ar.mxMismatch = pending, mta, t.mxMismatch
		ar.dane = st.hopDANE
		c.logAttempt(ctx, st, ar, start, c.now().Sub(start))
		return ar
	}
	if st.probe != nil {
		ar = c.probeSession(st, s, pending)
	} else {
		ar = c.transact(ctx, st, s, pending)
	}
	ar.mta, ar.mxMismatch = mta, t.mxMismatch
	ar.tls = s.tlsInfo()
	ar.failure = s.failure
	ar.cause = s.failErr
	ar.local = localIP(s.RawConn())
	ar.dane = st.hopDANE
	c.logAttempt(ctx, st, ar, start, c.now().Sub(start))
	if st.probe != nil || ar.retry || s.broken || ar.err != nil && ar.err.Err != nil && isNetErr(ar.err.Err) {
		s.Close()
	} else {
		c.release(st, t, s)
	}
	return ar
}

// localIP is the local address of conn, nil if it has none.
func localIP(conn net.Conn) net.IP {
	if conn == nil {
		return nil
	}
	if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		return ta.IP
	}
	return nil
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// tlsInfo summarises the session's TLS, nil for plaintext.
func (s *session) tlsInfo() *TLSInfo {
	if s.TLS() == nil {
		return nil
	}
	if s.info == nil || s.info.Verified != s.verified {
		s.info = NewTLSInfo(*s.TLS(), s.verified)
	}
	ti := *s.info // a copy each: callers keep it in their results
	return &ti
}

// connect returns a ready session: greeted, EHLO'd, TLS per plan and
// verified, EHLO'd again, authenticated if the route says so. On failure it
// returns the attempt result instead. It never returns a session that
// violates st.plan: this is where "no plaintext when TLS is required" is
// enforced, before any MAIL command can be written.
func (c *Connector) connect(ctx context.Context, st *groupState, t target, ip net.IP) (*session, *attemptResult) {
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(t.port))
	key := c.poolKey(st, t, addr)
	if st.probe != nil {
		// A check examines a fresh session, and leaves none behind.
	} else if s := c.pool.get(key); s != nil {
		// A session whose last transaction ended cleanly needs no RSET
		// (RFC 5321 §4.1.1.5): with pipelining it is reused at no cost
		// when nothing has arrived on it since (Idle: no 421, no close).
		s.Bind(ctx)
		if !c.DisablePipelining && s.clean && s.Idle() {
			s.reused = true
			return s, nil
		}
		r, err := s.Cmd(ctx, c.Timeouts.command(), "RSET")
		if err == nil && r.Code == 250 {
			s.reused = true
			return s, nil
		}
		s.Close()
	}
	tryTLS := st.hop.TryTLS
	for {
		s, ar, retryPlain := c.dialSession(ctx, st, t, ip, addr, tryTLS)
		if retryPlain {
			// RFC 3207 §4.1 / Postfix "may": the handshake failed and plaintext
			// is allowed: reconnect without STARTTLS.
			tryTLS = false
			continue
		}
		if ar != nil {
			return nil, ar
		}
		s.poolKey = key
		return s, nil
	}
}

func (c *Connector) dialSession(ctx context.Context, st *groupState, t target, ip net.IP, addr string, tryTLS bool) (*session, *attemptResult, bool) {
	var local net.IP
	fail := func(s *session, e *Error, retry bool, ft policy.FailureType) (*session, *attemptResult, bool) {
		ar := &attemptResult{err: e, retry: retry, failure: ft, local: local}
		if s != nil {
			ar.tls = s.tlsInfo()
			s.Close()
		}
		return nil, ar, false
	}
	dctx, cancel := context.WithTimeout(ctx, c.Timeouts.connect())
	conn, err := c.dialer().DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return fail(nil, localError(false, 4, 1, "", "cannot connect to "+t.host, err), true, policy.FailureNone)
	}
	local = localIP(conn)
	s := newSession(conn, t.host, addr, c.now())
	s.mta = RemoteMTA{Host: t.host, IP: ip, Port: t.port}
	s.Bind(ctx)
	if st.route != nil && st.route.ImplicitTLS {
		// RFC 8314 §3: TLS from the first byte. There is no plaintext to fall
		// back to, so levels that allow plaintext still use TLS here; they
		// only relax the certificate check.
		v := c.newCheck(st, t)
		tc := tls.Client(conn, c.tlsConfig(v, t.sni(), st.route))
		err := s.SetDeadline(ctx, c.Timeouts.command())
		if err == nil {
			err = tc.HandshakeContext(ctx)
		}
		if err != nil {
			cause, ft := handshakeCause(v, err)
			return fail(s, tlsError(st.req, 5, "CONNECT", "implicit TLS with "+t.host+" failed", cause), true, ft)
		}
		s.UseTLS(tc)
		s.verified = v.verified
		if v.err != nil {
			s.failure, s.failErr = v.failure, v.err
		}
		tryTLS = false
	}
	r, err := s.ReadReply(ctx, c.Timeouts.greeting())
	if err != nil {
		return fail(s, localError(false, 4, 2, "CONNECT", "no greeting from "+t.host, err), true, policy.FailureNone)
	}
	st.probe.greeting(r)
	if r.Code != 220 {
		// A 4xx or 5xx greeting: try the next host (Postfix's
		// smtp_skip_5xx_greeting).
		e := replyError(r, "CONNECT")
		s.Quit(context.Background())
		return nil, &attemptResult{err: e, retry: true}, false
	}
	if err := s.Hello(ctx, c.Timeouts.command(), c.ehloName()); err != nil {
		return fail(s, asReplyError(err, "EHLO", "EHLO failed"), true, policy.FailureNone)
	}
	st.probe.ehlo(s.Extensions(), s.TLS() != nil)
	if tryTLS {
		if !s.Supports("STARTTLS") {
			if st.hop.Required {
				s.Quit(context.Background()) // RFC 5321 §4.1.1.10; QUIT reveals nothing
				return fail(nil, tlsError(st.req, 4, "EHLO", "TLS is required but "+t.host+" did not offer STARTTLS",
					ErrSTARTTLSNotOffered), true, policy.FailureSTARTTLSNotSupported)
			}
			if st.hop.Check != policy.CheckNone {
				s.failure = policy.FailureSTARTTLSNotSupported // testing mode: report, deliver
			}
		} else {
			v := c.newCheck(st, t)
			rep, err := s.StartTLS(ctx, c.Timeouts.command(), c.tlsConfig(v, t.sni(), st.route))
			switch {
			case err != nil:
				cause, ft := handshakeCause(v, err)
				if st.hop.Required {
					return fail(s, tlsError(st.req, 5, "STARTTLS", "TLS with "+t.host+" failed", cause), true, ft)
				}
				s.Close()
				st.probe.fallback(cause)
				c.log().LogAttrs(ctx, slog.LevelInfo, "TLS handshake failed; retrying in plaintext as the policy allows",
					slog.String("domain", st.req.Domain), slog.String("mx", t.host), slog.String("policy", policyAttr(st.req)),
					slog.String("error", cause.Error()))
				return nil, nil, true
			case rep != nil:
				if st.hop.Required {
					e := tlsError(st.req, 4, "STARTTLS", "TLS is required but "+t.host+" refused STARTTLS",
						fmt.Errorf("%w: %w", ErrSTARTTLSNotOffered, replyError(rep, "STARTTLS")))
					s.Quit(context.Background())
					return fail(nil, e, true, policy.FailureSTARTTLSNotSupported)
				}
				if st.hop.Check != policy.CheckNone {
					s.failure = policy.FailureSTARTTLSNotSupported
				}
				// Opportunistic: the session is still in its plaintext state.
			default:
				s.verified = v.verified
				if v.err != nil {
					s.failure, s.failErr = v.failure, v.err // testing mode: recorded, not enforced
				}
				// RFC 3207 §4.2: discard pre-TLS knowledge; EHLO again.
				if err := s.Hello(ctx, c.Timeouts.command(), c.ehloName()); err != nil {
					return fail(s, asReplyError(err, "EHLO", "EHLO after STARTTLS failed"), true, policy.FailureNone)
				}
				st.probe.ehlo(s.Extensions(), true)
			}
		}
	}
	if r := st.route; r != nil && r.Auth != nil {
		if e := c.auth(ctx, s, r, st.req); e != nil {
			return fail(s, e, true, policy.FailureNone)
		}
	}
	return s, nil, false
}

// newCheck prepares the certificate and version check for one handshake.
func (c *Connector) newCheck(st *groupState, t target) *tlsCheck {
	v := &tlsCheck{
		kind:    st.hop.Check,
		mxHost:  t.host,
		match:   c.matchNames(st),
		dane:    st.hopDANE,
		roots:   c.RootCAs,
		now:     c.now(),
		enforce: st.hop.Enforce && st.hop.Required,
		// A check sees a full handshake: the certificate chain, not a
		// resumed session's.
		noResume: st.probe != nil,
	}
	st.probe.handshake(v)
	if st.hop.Required || st.hop.Check != policy.CheckNone {
		// In testing mode (not enforced) a low version is recorded.
		v.minVersion = st.req.EffectiveMinVersion()
	}
	return v
}

// handshakeCause names a failed handshake: the check's own verdict if it
// refused the certificate or version, else the handshake error.
func handshakeCause(v *tlsCheck, err error) (error, policy.FailureType) {
	if v.err != nil {
		return v.err, v.failure
	}
	return classifyHandshake(err), policy.FailureValidation
}

// matchNames returns the names a Secure certificate must match: the
// requirement's match list, else the next-hop domain and its subdomains
// (Postfix's default "nexthop:dot-nexthop"), never the MX name from DNS.
func (c *Connector) matchNames(st *groupState) []string {
	if len(st.req.Match) > 0 {
		return st.req.Match
	}
	d := st.g.domain
	if st.g.hop != nil {
		d = st.g.hop.host
	}
	return []string{d, "." + d}
}

// auth performs AUTH PLAIN (RFC 4954, RFC 4616) with the route's
// credentials, only over TLS, and only to a verified server unless the
// route opts out (Route.InsecureAuthUnverifiedTLS).
func (c *Connector) auth(ctx context.Context, s *session, route *Route, req policy.Requirement) *Error {
	cr := route.Auth
	if s.TLS() == nil {
		return localError(req.OnFailure == policy.Bounce, 7, 11, "AUTH",
			"credentials configured but the connection is not TLS-protected", ErrAuthWithoutTLS)
	}
	if !s.verified && !route.InsecureAuthUnverifiedTLS {
		// RFC 4954 §4 leaves it to the client which protection it needs
		// before sending a password; an unverified certificate may be an
		// active attacker's, who reads PLAIN as if it were plaintext.
		return localError(req.OnFailure == policy.Bounce, 7, 11, "AUTH",
			"credentials configured but the server certificate was not verified (level "+req.Level.String()+")",
			ErrAuthUnverifiedTLS)
	}
	mechs, ok := s.Extension("AUTH")
	if !ok || !hasWord(mechs, "PLAIN") {
		return localError(false, 7, 4, "AUTH", "server does not offer AUTH PLAIN", nil)
	}
	resp := base64.StdEncoding.EncodeToString([]byte(cr.Identity + "\x00" + cr.Username + "\x00" + cr.Password))
	r, err := s.Cmd(ctx, c.Timeouts.command(), "AUTH PLAIN "+resp)
	if err != nil {
		return asReplyError(err, "AUTH", "AUTH failed")
	}
	if r.Code != 235 {
		return replyError(r, "AUTH")
	}
	return nil
}

func hasWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if strings.EqualFold(f, w) {
			return true
		}
	}
	return false
}

// asReplyError wraps a network or protocol error as a temporary *Error.
func asReplyError(err error, command, msg string) *Error {
	if e, ok := AsError(err); ok {
		return e
	}
	if re, ok := errors.AsType[*smtpclient.ReplyError](err); ok {
		return replyError(&re.Reply, re.Command)
	}
	return localError(false, 4, 2, command, msg, err)
}

// transact runs MAIL, RCPT, DATA for the pending recipients.
func (c *Connector) transact(ctx context.Context, st *groupState, s *session, pending []int) *attemptResult {
	s.clean = false
	env := st.env
	tmo := c.Timeouts.command()
	ti := s.tlsInfo()
	mta := s.mta
	now := c.now
	stop := func(e *Error, retry bool) *attemptResult {
		return &attemptResult{pending: pending, err: e, retry: retry}
	}
	// Checks that need the (post-TLS) extension list.
	if env.RequireTLS && (s.TLS() == nil || !s.verified || !s.Supports("REQUIRETLS")) {
		why := "the next hop does not support REQUIRETLS"
		if s.TLS() == nil || !s.verified {
			why = "the connection is not verified TLS"
		}
		return stop(&Error{Local: true, Code: 550, EnhancedCode: EnhancedCode{5, 7, 30}, Message: "REQUIRETLS support required",
			Err: fmt.Errorf("%w: %s", ErrRequireTLS, why)}, true)
	}
	if env.SMTPUTF8 && !s.Supports("SMTPUTF8") {
		// RFC 6531 §3.4: without SMTPUTF8 at the next hop the message cannot
		// be sent; this Connector does not downgrade.
		e := &Error{Local: true, Code: 554, EnhancedCode: EnhancedCode{5, 6, 9}, Command: "MAIL",
			Message: "UTF-8 header message cannot be transferred: next hop lacks SMTPUTF8"}
		if !isASCII(env.From) || anyNonASCII(env, pending) {
			e = &Error{Local: true, Code: 553, EnhancedCode: EnhancedCode{5, 6, 7}, Command: "MAIL",
				Message: "non-ASCII addresses not permitted: next hop lacks SMTPUTF8"}
		}
		return stop(e, false)
	}
	if env.Body == BodyBinaryMIME {
		return stop(&Error{Local: true, Code: 554, EnhancedCode: EnhancedCode{5, 6, 3}, Command: "MAIL",
			Message: "BINARYMIME messages cannot be relayed (BINARYMIME not implemented)"}, false)
	}
	if lim, ok := s.Extension("SIZE"); ok && lim != "" {
		if n, err := strconv.ParseInt(lim, 10, 64); err == nil && n > 0 && st.size > n {
			return stop(&Error{Local: true, Code: 552, EnhancedCode: EnhancedCode{5, 3, 4}, Command: "MAIL",
				Message: fmt.Sprintf("message size %d exceeds the next hop's limit %d", st.size, n)}, false)
		}
	}

	mail := mailCommand(env, st.size, s)
	if !c.DisablePipelining && s.Supports("PIPELINING") {
		return c.transactPipelined(ctx, st, s, pending, mail)
	}
	r, err := s.Cmd(ctx, tmo, mail)
	if err != nil {
		return stop(asReplyError(err, "MAIL", "connection lost"), true)
	}
	if r.Code/100 != 2 {
		return stop(replyError(r, "MAIL"), r.Code/100 == 4)
	}
	var accepted []int
	for k, i := range pending {
		r, err := s.Cmd(ctx, tmo, rcptCommand(env.Recipients[i], s))
		if err != nil {
			// Not finished: the recipients accepted so far and those not yet
			// sent; the transaction never completed, so all may go elsewhere.
			rest := append(append([]int(nil), accepted...), pending[k:]...)
			return &attemptResult{pending: rest, err: asReplyError(err, "RCPT", "connection lost"), retry: true}
		}
		if r.Code/100 == 2 {
			accepted = append(accepted, i)
			continue
		}
		e := replyError(r, "RCPT")
		st.finish(i, statusFor(e), e, mta, ti, s.failure, now())
	}
	if len(accepted) == 0 {
		_, _ = s.Cmd(ctx, tmo, "RSET")
		return &attemptResult{code: r.Code}
	}
	r, err = s.Cmd(ctx, tmo, "DATA")
	if err != nil {
		return &attemptResult{pending: accepted, err: asReplyError(err, "DATA", "connection lost"), retry: true}
	}
	if r.Code != 354 {
		e := replyError(r, "DATA")
		st.finishAll(accepted, e, mta, ti, s.failure, now())
		return &attemptResult{}
	}
	r, err = s.Data(ctx, c.Timeouts.data(), io.NewSectionReader(st.body, 0, st.size))
	if err != nil {
		// The message may or may not have been taken: defer, never retry at
		// once elsewhere (that could duplicate it).
		e := localError(false, 4, 2, "DATA", "connection lost during the message transfer", err)
		st.finishAll(accepted, e, mta, ti, s.failure, now())
		return &attemptResult{err: e}
	}
	c.finishDelivered(st, s, accepted, replyError(r, "DATA"), ti)
	return &attemptResult{code: r.Code}
}

// transactPipelined is transact's mail transaction in one flight (RFC
// 2920 §3.1): MAIL, every RCPT and DATA are written at once, then their
// replies read in order; with CHUNKING (RFC 3030) the flight ends with
// "BDAT n LAST" and the body instead of DATA, so that a message costs one
// round trip. It runs only once the hop's TLS requirement is met (connect
// has done STARTTLS and the checks): nothing is pipelined past STARTTLS.
// Each RCPT's reply is its recipient's, as without pipelining.
func (c *Connector) transactPipelined(ctx context.Context, st *groupState, s *session, pending []int, mail string) *attemptResult {
	env, tmo, ti, mta, now := st.env, c.Timeouts.command(), s.tlsInfo(), s.mta, c.now
	lines := make([]string, 0, len(pending)+2)
	lines = append(lines, mail)
	for _, i := range pending {
		lines = append(lines, rcptCommand(env.Recipients[i], s))
	}
	var body io.Reader
	var size int64
	chunking := s.Supports("CHUNKING")
	flight := tmo
	if chunking {
		n, err := smtpclient.CRLFSize(io.NewSectionReader(st.body, 0, st.size))
		if err != nil {
			return &attemptResult{pending: pending, err: localError(false, 3, 0, "", "cannot read the message", err)}
		}
		body, size, flight = io.NewSectionReader(st.body, 0, st.size), n, c.Timeouts.data()
	} else {
		lines = append(lines, "DATA")
	}
	if err := s.Pipeline(ctx, flight, lines, body, size); err != nil {
		// Not all was written: the server cannot have taken the message.
		return &attemptResult{pending: pending, err: asReplyError(err, "MAIL", "connection lost"), retry: true}
	}
	var accepted []int
	// lost ends the attempt when a reply cannot be read: the recipients
	// accepted so far and those whose replies are missing. With BDAT the
	// whole message was sent, so the server may have taken it: they are
	// deferred, never retried at once elsewhere (that could duplicate it);
	// otherwise the transaction never completed and they may go elsewhere.
	lost := func(cmd string, unread []int, err error) *attemptResult {
		rest := append(append([]int(nil), accepted...), unread...)
		if chunking {
			e := localError(false, 4, 2, cmd, "connection lost after the message was sent", err)
			st.finishAll(rest, e, mta, ti, s.failure, now())
			return &attemptResult{err: e}
		}
		return &attemptResult{pending: rest, err: asReplyError(err, cmd, "connection lost"), retry: true}
	}
	// drain reads the n replies still due after a failed MAIL, so that
	// the session stays in step; if it cannot, the session is not reused.
	drain := func(n int) {
		for ; n > 0; n-- {
			if _, err := s.ReadReply(ctx, tmo); err != nil {
				s.broken = true
				return
			}
		}
	}
	r, err := s.ReadReply(ctx, tmo)
	if err != nil {
		return lost("MAIL", pending, err)
	}
	if r.Code/100 != 2 {
		drain(len(pending) + 1)
		s.clean = !s.broken // no transaction was started
		return &attemptResult{pending: pending, err: replyError(r, "MAIL"), retry: r.Code/100 == 4}
	}
	for k, i := range pending {
		r, err := s.ReadReply(ctx, tmo)
		if err != nil {
			return lost("RCPT", pending[k:], err)
		}
		if r.Code/100 == 2 {
			accepted = append(accepted, i)
			continue
		}
		e := replyError(r, "RCPT")
		st.finish(i, statusFor(e), e, mta, ti, s.failure, now())
	}
	cmd := "DATA"
	if chunking {
		cmd = "BDAT"
	}
	r, err = s.ReadReply(ctx, flight)
	if err != nil {
		return lost(cmd, nil, err)
	}
	if len(accepted) == 0 {
		// RFC 2920 §3.1: DATA fails without a recipient; a server that
		// answers 354 anyway would take the next lines for the message.
		if r.Code == 354 {
			s.broken = true
		}
		return &attemptResult{code: r.Code}
	}
	if !chunking {
		if r.Code != 354 {
			st.finishAll(accepted, replyError(r, "DATA"), mta, ti, s.failure, now())
			return &attemptResult{}
		}
		if r, err = s.Data(ctx, c.Timeouts.data(), io.NewSectionReader(st.body, 0, st.size)); err != nil {
			e := localError(false, 4, 2, "DATA", "connection lost during the message transfer", err)
			st.finishAll(accepted, e, mta, ti, s.failure, now())
			return &attemptResult{err: e}
		}
	}
	c.finishDelivered(st, s, accepted, replyError(r, cmd), ti)
	s.clean = true // the final reply ends the transaction (RFC 5321 §4.1.1.4)
	return &attemptResult{code: r.Code}
}

// finishDelivered records the final reply of a transaction for its
// accepted recipients: delivered, or relayed when a success DSN was asked
// for and the next hop does not do DSN (RFC 3461 §4.2).
func (c *Connector) finishDelivered(st *groupState, s *session, accepted []int, e *Error, ti *TLSInfo) {
	for _, i := range accepted {
		status := statusFor(e)
		if status == Delivered && !s.Supports("DSN") && wantsSuccess(st.env.Recipients[i]) {
			status = Relayed
		}
		st.finish(i, status, e, s.mta, ti, s.failure, c.now())
	}
}

func wantsSuccess(r Recipient) bool { return r.Notify&ndr.NotifySuccess != 0 }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func anyNonASCII(env *Envelope, idx []int) bool {
	for _, i := range idx {
		if !isASCII(env.Recipients[i].Address) {
			return true
		}
	}
	return false
}

// mailCommand builds MAIL FROM with the parameters the next hop supports:
// SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), REQUIRETLS
// (RFC 8689 §4.1), RET and ENVID (RFC 3461 §4.3, §4.4).
func mailCommand(env *Envelope, size int64, s *session) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + env.From + ">")
	if s.Supports("SIZE") && size > 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(size, 10))
	}
	if (env.Body == Body8BitMIME || env.Body == Body7Bit) && s.Supports("8BITMIME") {
		b.WriteString(" BODY=" + string(env.Body))
	}
	if env.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	if env.RequireTLS {
		b.WriteString(" REQUIRETLS")
	}
	if s.Supports("DSN") {
		if env.Return != ndr.ReturnDefault {
			b.WriteString(" RET=" + env.Return.String())
		}
		if env.EnvelopeID != "" {
			b.WriteString(" ENVID=" + smtpclient.XText(env.EnvelopeID))
		}
	}
	return b.String()
}

// rcptCommand builds RCPT TO with NOTIFY and ORCPT when the next hop
// supports DSN (RFC 3461 §4.1, §4.2).
func rcptCommand(r Recipient, s *session) string {
	var b strings.Builder
	b.WriteString("RCPT TO:<" + r.Address + ">")
	if s.Supports("DSN") {
		if r.Notify != 0 {
			b.WriteString(" NOTIFY=" + r.Notify.String())
		}
		if r.ORCPT != "" {
			typ, addr, ok := strings.Cut(r.ORCPT, ";")
			if ok {
				if strings.EqualFold(typ, "utf-8") {
					b.WriteString(" ORCPT=utf-8;" + utf8AddrXtext(addr))
				} else {
					b.WriteString(" ORCPT=" + typ + ";" + smtpclient.XText(addr))
				}
			}
		}
	}
	return b.String()
}

// utf8AddrXtext encodes an address as utf-8-addr-xtext (RFC 6533 §3),
// valid whether or not the next hop supports SMTPUTF8.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < '!' || r > '~' || r == '+' || r == '=' || r == '\\' {
			fmt.Fprintf(&b, `\x{%X}`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// logAttempt writes the one line per delivery attempt, with the same keys whether the attempt succeeded or not:
// queue_id (the Envelope's ID, which transport/queue sets to its queue
// id), rcpt_domain (the recipient domain; domain is the policy domain,
// "[host]:port" for a fixed next hop), mx, ip, tls_version ("none" for
// plaintext), cipher ("" for plaintext), verified, policy_level,
// policy_source, policy ("level/source"), outcome (see attemptOutcome),
// result, code, and enhanced, error and tls_failure when there are any.
func (c *Connector) logAttempt(ctx context.Context, st *groupState, ar *attemptResult, start time.Time, d time.Duration) {
	st.res.Attempts = append(st.res.Attempts, Attempt{
		Domain: st.req.Domain, RemoteMTA: ar.mta, SourceIP: ar.local, TLS: ar.tls, Err: errOrNil(ar.err),
		TLSFailure: ar.failure, DANE: ar.dane != nil, Start: start, Duration: d,
	})
	msg := "delivery attempt"
	if st.probe != nil {
		// A check (Connector.Check) is not a delivery: nothing for TLS-RPT.
		msg = "check attempt"
	} else {
		c.recordTLSRPT(ctx, st, ar, start)
	}
	level := slog.LevelInfo
	if ar.err != nil {
		level = slog.LevelWarn
	}
	if log := c.log(); log.Enabled(ctx, level) {
		log.LogAttrs(ctx, level, msg, attemptAttrs(st, ar, d)...)
	}
	st.probe.attempt(c, st, ar)
}

// attemptAttrs are the attributes logAttempt logs.
func attemptAttrs(st *groupState, ar *attemptResult, d time.Duration) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("queue_id", st.env.ID),
		slog.String("rcpt_domain", st.g.domain),
		slog.String("domain", st.req.Domain),
		slog.String("mx", ar.mta.Host),
		slog.String("ip", ipString(ar.mta.IP)),
		slog.String("policy_level", st.req.Level.String()),
		slog.String("policy_source", string(st.req.Source)),
		slog.String("policy", policyAttr(st.req)),
		slog.Duration("duration", d),
	}
	if ar.tls != nil {
		attrs = append(attrs, slog.String("tls_version", ar.tls.VersionName()), slog.String("cipher", ar.tls.CipherName()),
			slog.Bool("verified", ar.tls.Verified), slog.Bool("resumed", ar.tls.Resumed))
	} else {
		attrs = append(attrs, slog.String("tls_version", "none"), slog.String("cipher", ""), slog.Bool("verified", false))
	}
	if ar.failure != policy.FailureNone {
		attrs = append(attrs, slog.String("tls_failure", string(ar.failure)))
	}
	attrs = append(attrs, slog.String("outcome", attemptOutcome(st, ar)))
	if ar.err != nil {
		attrs = append(attrs, slog.String("result", "attempt failed"), slog.Int("code", ar.err.Code),
			slog.String("enhanced", ar.err.EnhancedCode.String()), slog.String("error", ar.err.Error()))
	} else {
		attrs = append(attrs, slog.String("result", resultSummary(st)), slog.Int("code", ar.code))
	}
	return attrs
}

// attemptOutcome names an attempt's outcome with the recipients' Status
// words: the status every recipient of the transaction has ("delivered",
// "relayed", "deferred", "failed"; an error before the transaction is its
// reply's status), or "mixed" when they differ (result counts them).
func attemptOutcome(st *groupState, ar *attemptResult) string {
	if ar.err != nil {
		return statusFor(ar.err).String()
	}
	var first Status
	for n, i := range st.g.idx {
		s := st.res.Recipients[i].Status
		if n == 0 {
			first = s
		} else if s != first {
			return "mixed"
		}
	}
	return first.String()
}

func errOrNil(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// resultSummary counts the group's recipient statuses: "delivered=2 failed=1".
func resultSummary(st *groupState) string {
	counts := map[Status]int{}
	for _, i := range st.g.idx {
		counts[st.res.Recipients[i].Status]++
	}
	var parts []string
	for _, s := range []Status{Delivered, Relayed, Deferred, Failed} {
		if counts[s] > 0 {
			parts = append(parts, s.String()+"="+strconv.Itoa(counts[s]))
		}
	}
	return strings.Join(parts, " ")
}

// logGroupFailure logs a failure decided before any connection.
func (c *Connector) logGroupFailure(ctx context.Context, st *groupState, e *Error, ft policy.FailureType) {
	c.logAttempt(ctx, st, &attemptResult{err: e, failure: ft}, c.now(), 0)
}
