package transport

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"

	sasl "github.com/emersion/go-sasl"

	"github.com/mailtls/mailtls/ndr"
)

// inSession is the SMTP server state machine of one connection (RFC 5321
// §4.1.4, §3.3), run by its goroutine: greeting, EHLO/HELO, STARTTLS
// (RFC 3207), AUTH (RFC 4954), MAIL, RCPT, DATA and BDAT (RFC 3030),
// RSET, NOOP, VRFY, HELP and QUIT, with PIPELINING (RFC 2920).
type inSession struct {
	c   *inConn
	srv *Server

	tls        *TLSInfo // nil in plaintext
	tlsComment string   // tls.String(), for Received headers
	helo       string   // the EHLO/HELO name; "" before it (and after STARTTLS)
	authID     string

	// Transaction (RFC 5321 §3.3).
	hasFrom bool
	from    string
	mail    mailParams
	rcpts   []Recipient
	bdat    *bdatTransfer

	rejects int // commands refused by policy or not understood
}

// mailParams are the MAIL parameters the Server records in the Envelope.
type mailParams struct {
	requireTLS bool       // RFC 8689 §4.1
	utf8       bool       // RFC 6531 §3.4
	body       BodyType   // RFC 6152
	size       int64      // RFC 1870
	ret        ndr.Return // RFC 3461 §4.3
	envID      string     // RFC 3461 §4.4, decoded
}

// bdatTransfer is a BDAT transfer in progress: its chunks go into pw, and
// the Handler, in a goroutine of its own, reads them from the pipe's other
// end and sends its reply to done.
type bdatTransfer struct {
	pw       *io.PipeWriter
	done     chan *Error
	received int64
}

// maxFilterRejects is how many commands a session refuses for policy
// (RFC 3207 §4, RFC 4954 §4) or does not understand before it closes the
// connection.
const maxFilterRejects = 10

// replies used in several places.
var (
	replyBadSequence = EnhancedCode{5, 5, 1} // with 503 (RFC 5321 §4.1.4)
)

// serve runs the connection: the implicit TLS handshake of
// KindSubmissions, the greeting, then one command after another until
// QUIT, an error or the server's end.
func (c *inConn) serve() {
	s := &inSession{c: c, srv: c.srv}
	c.nc = c
	defer s.finish()
	if c.srv.Kind == KindSubmissions {
		tc, err := c.startTLS()
		if err != nil {
			return
		}
		s.tlsStarted(tc)
	}
	c.reply(220, EnhancedCode{}, c.srv.hostname()+" ESMTP Service Ready")
	for s.command() {
	}
}

// finish ends the session: it aborts a BDAT transfer, sends the last
// replies (and the TLS close_notify), closes the connection and reports it.
func (s *inSession) finish() {
	c := s.c
	s.abortBDAT()
	c.flush()
	c.releaseReader()
	c.records.release()
	if tc, ok := c.nc.(*tls.Conn); ok && c.werr == nil {
		tc.CloseWrite()
	}
	c.stop()
	c.raw.Close()
	c.srv.removeConn(c)
	c.observeSession()
}

// command reads and executes one command; false ends the connection.
func (s *inSession) command() bool {
	c, srv := s.c, s.srv
	if c.shutdown.Load() && !c.inTx.Load() && s.bdat == nil {
		c.reply(421, EnhancedCode{4, 3, 2}, srv.hostname()+" Service shutting down")
		return false
	}
	if n := c.junk.Load(); n > int64(srv.junkLimit()) {
		srv.log.Warn("smtp connection closed: too many junk commands", "peer", c.peer, "commands", n)
		c.reply(421, EnhancedCode{4, 7, 0}, srv.hostname()+" Error: too many junk commands, closing connection")
		return false
	}
	if err := c.awaitCommand(); err != nil {
		return s.readFailed(err)
	}
	line, err := s.readLine()
	if err != nil {
		return s.readFailed(err)
	}
	c.junk.Add(1)
	verb, arg, ok := parseCommand(line)
	if !ok {
		return s.refuse(&Error{Code: 500, EnhancedCode: EnhancedCode{5, 5, 2}, Message: "Error: bad syntax"})
	}
	if e := s.filter(verb); e != nil {
		if verb == "BDAT" {
			// RFC 3030 §2: the chunk follows even a refused BDAT.
			if size, _, perr := parseBDAT(arg); perr == nil {
				if _, err := c.br.Discard(int(size)); err != nil {
					return s.readFailed(err)
				}
			}
		}
		return s.refuse(e)
	}
	switch verb {
	case "EHLO", "HELO":
		s.hello(verb, arg)
	case "STARTTLS":
		return s.startTLS(arg)
	case "AUTH":
		return s.auth(arg)
	case "MAIL":
		s.mailFrom(arg)
	case "RCPT":
		s.rcptTo(arg)
	case "DATA":
		return s.data(arg)
	case "BDAT":
		return s.bdatChunk(arg)
	case "RSET":
		s.resetTx()
		c.reply(250, EnhancedCode{2, 0, 0}, "Session reset")
	case "NOOP":
		c.reply(250, EnhancedCode{2, 0, 0}, "I have successfully done nothing")
	case "VRFY":
		// RFC 5321 §3.5.3: 252 when the server will not verify.
		c.reply(252, EnhancedCode{2, 5, 0}, "Cannot VRFY user, but will accept message")
	case "HELP":
		c.reply(214, EnhancedCode{2, 0, 0}, "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT")
	case "QUIT":
		c.reply(221, EnhancedCode{2, 0, 0}, "Bye")
		return false
	case "EXPN", "SEND", "SOML", "SAML", "TURN":
		c.reply(502, EnhancedCode{5, 5, 1}, verb+" command not implemented")
	default:
		return s.refuse(&Error{Code: 500, EnhancedCode: EnhancedCode{5, 5, 2}, Message: "Error: command not recognized"})
	}
	return true
}

// refuse answers a command refused by policy or not understood, and closes
// the connection after maxFilterRejects of them.
func (s *inSession) refuse(e *Error) bool {
	s.c.replyErr(e)
	if s.rejects++; s.rejects >= maxFilterRejects {
		s.c.reply(421, EnhancedCode{4, 7, 0}, s.srv.hostname()+" Too many refused commands, closing connection")
		return false
	}
	return true
}

// readLine reads one line of at most MaxLineLength octets (CRLF included)
// and returns it without its line ending.
func (s *inSession) readLine() (string, error) {
	limit := orDefault(s.srv.MaxLineLength, DefaultMaxLineLength)
	var long []byte
	for {
		b, err := s.c.br.ReadSlice('\n')
		if len(long)+len(b) > limit {
			return "", errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			long = append(long, b...)
			continue
		}
		if err != nil {
			return "", err // a partial line is no command
		}
		if long != nil {
			b = append(long, b...)
		}
		b = b[:len(b)-1]
		if len(b) > 0 && b[len(b)-1] == '\r' {
			b = b[:len(b)-1]
		}
		return string(b), nil
	}
}

// readFailed answers a failed read of the client, if a reply can still
// help, and returns false (the connection ends).
func (s *inSession) readFailed(err error) bool {
	c, host := s.c, s.srv.hostname()
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.reply(500, EnhancedCode{5, 4, 0}, "Too long line, closing connection")
	case c.evicted.Load():
		c.reply(421, EnhancedCode{4, 7, 0}, host+" Server busy, closing idle connection")
	case c.shutdown.Load() && errors.As(err, &ne) && ne.Timeout():
		c.reply(421, EnhancedCode{4, 3, 2}, host+" Service shutting down")
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 5321 §4.5.3.2.7: the server closes on timeout.
		c.reply(421, EnhancedCode{4, 4, 2}, host+" Timeout exceeded, closing connection")
	}
	return false
}

// allowedBeforeTLS reports whether RFC 3207 §4 lets a client send verb
// before STARTTLS when the server requires TLS.
func allowedBeforeTLS(verb string) bool {
	switch verb {
	case "EHLO", "HELO", "STARTTLS", "NOOP", "RSET", "QUIT":
		return true
	}
	return false
}

// filter returns the refusal of verb in plaintext, or nil.
func (s *inSession) filter(verb string) *Error {
	if s.tls != nil {
		return nil
	}
	if verb == "AUTH" {
		// RFC 4954 §4 and §6: mechanisms that send passwords need TLS.
		s.srv.observeRefusal(RefusalPlaintextAuth)
		return &Error{Code: 538, EnhancedCode: EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	}
	if s.srv.Inbound.RequireTLS() && !allowedBeforeTLS(verb) {
		s.srv.observeRefusal(RefusalNoSTARTTLS)
		return &Error{Code: 530, EnhancedCode: EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	return nil
}

// hello answers EHLO or HELO (RFC 5321 §4.1.1.1), which also resets the
// transaction.
func (s *inSession) hello(verb, arg string) {
	c, srv := s.c, s.srv
	name, ok := parseHelo(arg)
	if !ok {
		c.reply(501, EnhancedCode{5, 5, 2}, "Domain/address argument required for "+verb)
		return
	}
	s.resetTx()
	s.helo = name
	c.spoke.Store(true)
	if verb == "HELO" {
		c.reply(250, EnhancedCode{}, srv.hostname()+" Hello "+name)
		return
	}
	var b strings.Builder
	b.WriteString(srv.hostname() + " Hello " + name)
	b.WriteString("\nPIPELINING\n8BITMIME\nENHANCEDSTATUSCODES\nCHUNKING")
	if s.tls == nil && srv.tlsBase != nil {
		b.WriteString("\nSTARTTLS")
	}
	if s.tls != nil && srv.Authenticator != nil {
		b.WriteString("\nAUTH PLAIN LOGIN")
	}
	b.WriteString("\nSMTPUTF8")
	if s.tls != nil {
		b.WriteString("\nREQUIRETLS")
	}
	b.WriteString("\nDSN\nSIZE ")
	b.WriteString(strconv.FormatInt(srv.maxMessageBytes(), 10))
	b.WriteString("\nLIMITS RCPTMAX=")
	b.WriteString(strconv.Itoa(orDefault(srv.MaxRecipients, DefaultMaxRecipients)))
	c.reply(250, EnhancedCode{}, b.String())
}

// startTLS answers STARTTLS (RFC 3207 §4): after "220" whatever the client
// sent after the command is discarded, never executed (§4.2; the
// CVE-2011-0411 command injection), and after the handshake the session
// starts over, without its EHLO name, authentication or transaction.
func (s *inSession) startTLS(arg string) bool {
	c, srv := s.c, s.srv
	switch {
	case s.tls != nil:
		c.reply(502, EnhancedCode{5, 5, 1}, "Already running in TLS")
		return true
	case srv.tlsBase == nil:
		c.reply(502, EnhancedCode{5, 5, 1}, "TLS not supported")
		return true
	case arg != "":
		c.reply(501, EnhancedCode{5, 5, 4}, "Syntax error (no parameters allowed)")
		return true
	case s.helo == "":
		// RFC 3207 §4: STARTTLS is learnt from the EHLO reply.
		c.reply(503, replyBadSequence, "Send EHLO first")
		return true
	}
	c.reply(220, EnhancedCode{2, 0, 0}, "Ready to start TLS")
	if c.flush() != nil {
		return false
	}
	if n := c.br.Buffered(); n > 0 {
		c.br.Discard(n)
		srv.log.Warn("smtp discarded bytes pipelined after STARTTLS", "peer", c.peer, "bytes", n)
	}
	s.resetTx()
	tc, err := c.startTLS()
	if err != nil {
		return false
	}
	c.br.Reset(sessionReader{c})
	s.tlsStarted(tc)
	return true
}

// tlsStarted records the TLS session and forgets the state before it.
func (s *inSession) tlsStarted(tc *tls.Conn) {
	s.tls = s.c.tlsInfo(tc.ConnectionState(), true)
	s.tlsComment = s.tls.String() // once per session: CipherSuiteName allocates
	s.helo, s.authID = "", ""
}

// resetTx discards the transaction (RSET, EHLO, STARTTLS, end of data),
// aborting a BDAT transfer.
func (s *inSession) resetTx() {
	s.abortBDAT()
	s.hasFrom, s.from, s.mail, s.rcpts = false, "", mailParams{}, nil
	s.c.inTx.Store(false)
}

func (s *inSession) abortBDAT() {
	if s.bdat != nil {
		s.bdat.pw.CloseWithError(errTransferReset)
		s.bdat = nil
		s.c.endData()
	}
}

// mailFrom answers MAIL (RFC 5321 §4.1.1.2) with the parameters of
// SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), REQUIRETLS
// (RFC 8689), RET and ENVID (RFC 3461) and AUTH (RFC 4954 §5, accepted
// and ignored).
func (s *inSession) mailFrom(arg string) {
	c, srv := s.c, s.srv
	switch {
	case s.helo == "":
		c.reply(503, replyBadSequence, "Please introduce yourself first.")
		return
	case s.bdat != nil:
		c.reply(503, replyBadSequence, "MAIL not allowed during message transfer")
		return
	case s.hasFrom:
		c.reply(503, replyBadSequence, "Nested MAIL command")
		return
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	from, rest, err := parseReversePath(rest)
	if !ok || err != nil {
		c.reply(501, EnhancedCode{5, 5, 2}, "Was expecting MAIL arg syntax of FROM:<address>")
		return
	}
	params, err := parseParams(rest)
	if err != nil {
		c.replyErr(syntaxReply("Unable to parse MAIL ESMTP parameters"))
		return
	}
	m, e := mailParamsOf(params, srv.maxMessageBytes())
	if e != nil {
		c.replyErr(e)
		return
	}
	if badAddressText(from) {
		c.reply(501, EnhancedCode{5, 1, 7}, "Invalid character in sender address")
		return
	}
	if m.requireTLS && s.tls == nil {
		// RFC 8689 §4.1: REQUIRETLS is offered only in a TLS session; a
		// message demanding TLS must not be accepted over plaintext.
		srv.observeRefusal(RefusalRequireTLSPlaintext)
		c.reply(530, EnhancedCode{5, 7, 10}, "REQUIRETLS needs a TLS session; issue STARTTLS first")
		return
	}
	if srv.requiresAuth() && s.authID == "" {
		c.reply(530, EnhancedCode{5, 7, 0}, "Authentication required")
		return
	}
	s.hasFrom, s.from, s.mail = true, from, m
	if sc, ok := srv.Handler.(SenderChecker); ok {
		if e := s.checkSender(sc, s.envelope()); e != nil {
			s.hasFrom, s.from, s.mail = false, "", mailParams{}
			c.replyErr(e)
			return
		}
	}
	c.inTx.Store(true)
	c.useful()
	srv.log.Debug("smtp mail from", "peer", c.peer, "from", from)
	c.reply(250, EnhancedCode{2, 0, 0}, "Roger, accepting mail from <"+from+">")
}

// mailParamsOf reads MAIL's parameters; e is the reply refusing them.
func mailParamsOf(params []esmtpParam, maxBytes int64) (m mailParams, e *Error) {
	for _, p := range params {
		switch p.key {
		case "SIZE":
			n, err := strconv.ParseInt(p.value, 10, 64)
			if err != nil || n < 0 {
				return m, syntaxReply("Unable to parse SIZE as an integer")
			}
			if n > maxBytes {
				return m, &Error{Code: 552, EnhancedCode: EnhancedCode{5, 3, 4}, Message: "Max message size exceeded"}
			}
			m.size = n
		case "SMTPUTF8":
			m.utf8 = true
		case "REQUIRETLS":
			m.requireTLS = true
		case "BODY":
			switch v := BodyType(strings.ToUpper(p.value)); v {
			case Body7Bit, Body8BitMIME:
				m.body = v
			case BodyBinaryMIME:
				return m, &Error{Code: 504, EnhancedCode: EnhancedCode{5, 5, 4}, Message: "BINARYMIME is not implemented"}
			default:
				return m, syntaxReply("Unknown BODY value")
			}
		case "RET":
			ret, err := ndr.ParseReturn(p.value)
			if err != nil || ret == ndr.ReturnDefault {
				return m, syntaxReply("Unknown RET value")
			}
			m.ret = ret
		case "ENVID":
			v, err := decodeXtext(p.value)
			if err != nil || v == "" || !isPrintableASCII(v) {
				return m, syntaxReply("Malformed ENVID parameter value")
			}
			m.envID = v
		case "AUTH":
			if v, err := decodeXtext(p.value); err != nil || v == "" {
				return m, syntaxReply("Malformed AUTH parameter value")
			}
		default:
			return m, &Error{Code: 555, EnhancedCode: EnhancedCode{5, 5, 4}, Message: "Unknown MAIL FROM argument"}
		}
	}
	return m, nil
}

// rcptTo answers RCPT (RFC 5321 §4.1.1.3) with the DSN parameters NOTIFY
// and ORCPT (RFC 3461 §4.1, §4.2).
func (s *inSession) rcptTo(arg string) {
	c, srv := s.c, s.srv
	switch {
	case !s.hasFrom:
		c.reply(503, replyBadSequence, "Missing MAIL FROM command.")
		return
	case s.bdat != nil:
		c.reply(503, replyBadSequence, "RCPT not allowed during message transfer")
		return
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	to, rest, err := parseForwardPath(rest, srv.hostname())
	if !ok || err != nil {
		c.reply(501, EnhancedCode{5, 5, 2}, "Was expecting RCPT arg syntax of TO:<address>")
		return
	}
	if max := orDefault(srv.MaxRecipients, DefaultMaxRecipients); len(s.rcpts) >= max {
		c.reply(452, EnhancedCode{4, 5, 3}, "Maximum limit of "+strconv.Itoa(max)+" recipients reached")
		return
	}
	params, err := parseParams(rest)
	if err != nil {
		c.replyErr(syntaxReply("Unable to parse RCPT ESMTP parameters"))
		return
	}
	r := Recipient{Address: to}
	for _, p := range params {
		switch p.key {
		case "NOTIFY":
			if r.Notify, err = parseNotify(p.value); err != nil {
				c.replyErr(syntaxReply("Malformed NOTIFY parameter value"))
				return
			}
		case "ORCPT":
			if r.ORCPT, err = parseORCPT(p.value); err != nil {
				c.replyErr(syntaxReply("Malformed ORCPT parameter value"))
				return
			}
		default:
			c.reply(555, EnhancedCode{5, 5, 4}, "Unknown RCPT TO argument")
			return
		}
	}
	if badAddressText(to) || badAddressText(r.ORCPT) {
		c.reply(501, EnhancedCode{5, 1, 3}, "Invalid character in recipient address")
		return
	}
	if rc, ok := srv.Handler.(RecipientChecker); ok {
		env := s.envelope()
		env.Recipients = append([]Recipient(nil), s.rcpts...)
		if e := s.checkRecipient(rc, env, r); e != nil {
			c.replyErr(e)
			return
		}
	}
	s.rcpts = append(s.rcpts, r)
	c.useful()
	c.reply(250, EnhancedCode{2, 0, 0}, "I'll make sure <"+to+"> gets this")
}

// envelope builds the Envelope of the transaction so far, without
// recipients, ID or arrival time.
func (s *inSession) envelope() *Envelope {
	return &Envelope{
		From:         s.from,
		RequireTLS:   s.mail.requireTLS,
		SMTPUTF8:     s.mail.utf8,
		Body:         s.mail.body,
		Size:         s.mail.size,
		Return:       s.mail.ret,
		EnvelopeID:   s.mail.envID,
		ClientAddr:   s.c.RemoteAddr(),
		Helo:         s.helo,
		AuthIdentity: s.authID,
		TLS:          s.tls,
	}
}

// messageEnvelope is envelope with the transaction's recipients, which it
// takes, an ID and the arrival time.
func (s *inSession) messageEnvelope() *Envelope {
	env := s.envelope()
	env.ID, env.ReceivedAt = newMessageID(), s.srv.now()
	env.Recipients, s.rcpts = s.rcpts, nil // the envelope owns them now
	return env
}

// data answers DATA (RFC 5321 §4.1.1.4) and reads the message, whose end
// is CRLF "." CRLF also after a line ending in a bare CR (§4.5.2).
func (s *inSession) data(arg string) bool {
	c, srv := s.c, s.srv
	switch {
	case arg != "":
		c.replyErr(syntaxReply("DATA command should not have any arguments"))
		return true
	case s.bdat != nil:
		c.reply(503, replyBadSequence, "DATA not allowed during message transfer")
		return true
	case !s.hasFrom || len(s.rcpts) == 0:
		c.reply(503, replyBadSequence, "Missing RCPT TO command.")
		return true
	}
	c.reply(354, EnhancedCode{}, "Go ahead. End your data with <CR><LF>.<CR><LF>")
	c.beginData()
	env := s.messageEnvelope()
	dr := newDataReader(c.br, srv.maxMessageBytes(), orDefault(srv.MaxLineLength, DefaultMaxLineLength))
	e := c.deliver(env, dr, s.tlsComment)
	err := dr.drain()
	c.endData()
	s.resetTx()
	if err != nil {
		return s.readFailed(err)
	}
	c.replyErr(e)
	return true
}

// bdatChunk answers BDAT (RFC 3030 §2): the first chunk of a message
// starts the Handler, the last one waits for its reply.
func (s *inSession) bdatChunk(arg string) bool {
	c, srv := s.c, s.srv
	size, last, e := parseBDAT(arg)
	if e != nil {
		c.replyErr(e)
		return true
	}
	discard := func(reply *Error) bool {
		c.replyErr(reply)
		if _, err := c.br.Discard(int(size)); err != nil {
			return s.readFailed(err)
		}
		return true
	}
	if s.bdat == nil && (!s.hasFrom || len(s.rcpts) == 0) {
		return discard(&Error{Code: 503, EnhancedCode: replyBadSequence, Message: "Missing RCPT TO command."})
	}
	var received int64
	if s.bdat != nil {
		received = s.bdat.received
	}
	if received+size > srv.maxMessageBytes() {
		s.resetTx()
		return discard(&Error{Code: 552, EnhancedCode: EnhancedCode{5, 3, 4}, Message: "Maximum message size exceeded"})
	}
	if s.bdat == nil {
		c.beginData()
		env := s.messageEnvelope()
		pr, pw := io.Pipe()
		t := &bdatTransfer{pw: pw, done: make(chan *Error, 1)}
		tlsComment := s.tlsComment
		go func() {
			e := c.deliver(env, pr, tlsComment)
			pr.CloseWithError(errTransferDone)
			t.done <- e
		}()
		s.bdat = t
	}
	t := s.bdat
	n, rerr, werr := copyChunk(t.pw, c.br, size)
	if rerr != nil {
		s.abortBDAT()
		return s.readFailed(rerr)
	}
	if werr != nil {
		// The Handler finished before the end of the message (it
		// refused it, or its read failed): its reply answers this chunk.
		if _, err := c.br.Discard(int(size - n)); err != nil {
			return s.readFailed(err)
		}
		last = true
	} else {
		t.received += size
		c.useful()
		if !last {
			c.reply(250, EnhancedCode{2, 0, 0}, "Continue")
			return true
		}
		t.pw.Close()
	}
	reply := <-t.done
	s.bdat = nil
	c.endData()
	s.resetTx()
	c.replyErr(reply)
	return true
}

// errTransferDone ends the writes of BDAT chunks once the Handler returned.
var errTransferDone = errors.New("transport: handler returned before the end of the message")

// copyChunk copies n bytes from br to w straight from br's buffer. It
// returns how many it wrote, and the read error of br (io.EOF becomes
// io.ErrUnexpectedEOF) or the write error of w.
func copyChunk(w io.Writer, br *bufio.Reader, n int64) (written int64, rerr, werr error) {
	for written < n {
		b, err := br.Peek(int(min(n-written, int64(max(br.Buffered(), 1)))))
		if len(b) == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return written, err, nil
		}
		k, err := w.Write(b)
		br.Discard(k)
		written += int64(k)
		if err != nil {
			return written, nil, err
		}
	}
	return written, nil, nil
}

// auth answers AUTH (RFC 4954 §4) with PLAIN (RFC 4616) or LOGIN, under
// TLS only (filter refuses it in plaintext).
func (s *inSession) auth(arg string) bool {
	c, srv := s.c, s.srv
	switch {
	case s.helo == "":
		c.reply(503, replyBadSequence, "Please introduce yourself first.")
		return true
	case srv.Authenticator == nil:
		c.reply(502, EnhancedCode{5, 7, 0}, "Authentication not supported")
		return true
	case s.authID != "":
		// RFC 4954 §4: "After a successful AUTH command completes, a
		// server MUST reject any further AUTH commands with a 503 reply."
		c.reply(503, replyBadSequence, "Already authenticated")
		return true
	}
	parts := strings.Fields(arg)
	if len(parts) == 0 || len(parts) > 2 {
		c.replyErr(syntaxReply("Syntax: AUTH mechanism [initial-response]"))
		return true
	}
	if srv.limiter.limited(c.RemoteAddr(), srv.now()) {
		c.replyErr(s.authLimited())
		return true
	}
	var mech sasl.Server
	switch strings.ToUpper(parts[0]) {
	case sasl.Plain:
		mech = sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				if _, ok := srv.limiter.begin(c.RemoteAddr(), srv.now()); !ok {
					return s.authLimited()
				}
				return s.authFailed(username, errors.New("authorization identity differs from authentication identity"))
			}
			return s.authenticate(username, password)
		})
	case sasl.Login:
		mech = &loginServer{authenticate: s.authenticate}
	default:
		c.reply(504, EnhancedCode{5, 5, 4}, "Unsupported authentication mechanism")
		return true
	}
	var resp []byte
	if len(parts) == 2 {
		var err error
		if resp, err = decodeSASL(parts[1]); err != nil {
			c.reply(501, EnhancedCode{5, 5, 2}, "Invalid base64 data")
			return true
		}
	}
	for {
		challenge, done, err := mech.Next(resp)
		if err != nil {
			e, ok := AsError(err)
			if !ok {
				e = &Error{Code: 501, EnhancedCode: EnhancedCode{5, 5, 2}, Message: "Invalid authentication exchange"}
			}
			c.replyErr(e)
			return true
		}
		if done {
			break
		}
		c.reply(334, EnhancedCode{}, base64.StdEncoding.EncodeToString(challenge))
		line, err := s.readLine()
		if err != nil {
			return s.readFailed(err)
		}
		if line == "*" {
			c.reply(501, EnhancedCode{5, 0, 0}, "Negotiation cancelled")
			return true
		}
		if resp, err = decodeSASL(line); err != nil {
			c.reply(501, EnhancedCode{5, 5, 2}, "Invalid base64 data")
			return true
		}
	}
	// RFC 4954 §6: "235 2.7.0 Authentication Succeeded".
	c.reply(235, EnhancedCode{2, 7, 0}, "Authentication successful")
	return true
}

// decodeSASL decodes a SASL response (RFC 4954 §4): base64, "=" for an
// empty one.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// useful takes back the junk count of an accepted MAIL, RCPT, DATA, BDAT
// chunk or AUTH (see Server.MaxJunkCommands).
func (c *inConn) useful() { c.junk.Add(-1) }
