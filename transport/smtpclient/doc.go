// Package smtpclient is an SMTP client session (RFC 5321): the greeting,
// EHLO with HELO fallback (§4.1.1.1, §4.1.4), STARTTLS with an explicit
// handshake and a fresh EHLO after it (RFC 3207 §4.2), AUTH PLAIN
// (RFC 4954, RFC 4616), MAIL/RCPT with their parameters, DATA with
// dot-stuffing and line ends normalised to CRLF (§4.5.2, §2.3.8), BDAT
// (RFC 3030 §2), RSET, NOOP, QUIT, and reply parsing with enhanced status
// codes (§4.2, RFC 3463, RFC 2034).
//
// A Client speaks the protocol and nothing else: it knows no TLS policy and
// no routing. The caller decides what to send and what a reply means; every
// step that waits takes a context and a timeout, and cancelling the context
// aborts a blocked read or write at once. Package transport's Connector
// drives a Client under its TLS policy; Dialer is the short way for tools and
// tests to get a session that has already done STARTTLS.
//
// Use:
//
//	c := smtpclient.New(conn)
//	greeting, err := c.ReadReply(ctx, time.Minute)
//	err = c.Hello(ctx, time.Minute, "mx.example.org")
//	if c.Supports("STARTTLS") { _, err = c.StartTLS(ctx, time.Minute, cfg); err = c.Hello(...) }
//	r, err := c.Cmd(ctx, time.Minute, "MAIL FROM:<a@example.org>")
//	...
//	r, err = c.Cmd(ctx, time.Minute, "DATA") // 354
//	r, err = c.Data(ctx, 10*time.Minute, body) // 250
//	c.Quit()
package smtpclient
