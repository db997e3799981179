// Package transport is the wire: an inbound SMTP Server that offers or
// requires TLS, and an outbound Connector that delivers under a
// policy.Policy and never falls back to plaintext where the policy forbids
// it.
//
// # Server
//
// Implemented:
//
//   - RFC 5321, SMTP, with the command order of §4.1.4 (a command out of
//     sequence gets 503), the limits of §4.5.3 (recipients, line length,
//     timeouts) and the Received trace header of §4.4. The reserved
//     "postmaster" without a domain (§4.5.1) is accepted as
//     postmaster@Hostname. Addresses holding control characters or invalid
//     UTF-8 are refused (501 5.1.7, 501 5.1.3). DATA ends at CRLF "." CRLF,
//     also after a line that ends in a bare CR (§4.5.2).
//   - Limits against a hostile client, after Postfix: connections per
//     client address (smtpd_client_connection_count_limit), a deadline for
//     a whole command line and for a whole DATA or BDAT transfer that
//     trickling bytes cannot extend (smtpd_per_record_deadline), and
//     shorter timeouts near the connection cap (stress mode). At the cap,
//     a newcomer takes the slot of the connection that has made the least
//     progress, which Postfix does not do (Server.MaxConnections).
//   - RFC 3207, STARTTLS: commands pipelined after STARTTLS are discarded
//     and the pre-TLS state forgotten (§4.2); with TLS required, only EHLO,
//     HELO, STARTTLS, NOOP, RSET and QUIT before it (§4).
//   - RFC 8314, implicit TLS for submission (KindSubmissions, port 465).
//   - RFC 4954 AUTH with the PLAIN (RFC 4616) and LOGIN mechanisms, only
//     under TLS, checked by an Authenticator: failures limited per client
//     address and per client network in a bounded table that evicts,
//     counted before the password check; concurrent password checks
//     bounded, with a queue that times out as "454 4.7.0".
//   - RFC 8689 REQUIRETLS: the MAIL parameter is offered and accepted only
//     under TLS and recorded in Envelope.RequireTLS; a "TLS-Required: No"
//     header field sets Envelope.TLSRequiredNo. Honouring them on the next
//     hop is the Connector's job.
//   - RFC 3461 DSN parameters (RET, ENVID, NOTIFY, ORCPT), accepted and
//     recorded in the Envelope; this package does not build DSNs.
//   - RFC 6531 SMTPUTF8, RFC 6152 8BITMIME, RFC 1870 SIZE, RFC 2920
//     PIPELINING and RFC 2034 ENHANCEDSTATUSCODES.
//   - RFC 3030 CHUNKING (BDAT), for text messages.
//   - RFC 3848 protocol types (ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP…)
//     in the Received header, with the TLS version and cipher used.
//   - RFC 8996 and RFC 9325: TLS 1.2 or later, a cipher floor, optional or
//     required client certificates; a refused client gets the TLS alert the
//     protocol names (protocol_version, handshake_failure) and the reason is
//     logged.
//
// Not implemented: BINARYMIME (RFC 3030), RRVS (RFC 7293), DELIVERBY
// (RFC 2852), MT-PRIORITY (RFC 6710), LMTP (RFC 2033), and SASL mechanisms
// other than PLAIN and LOGIN (CRAM-MD5, SCRAM, EXTERNAL, XOAUTH2).
//
// The Server runs the SMTP command loop itself, so every command, in
// plaintext and under TLS alike, passes the same checks and deadlines.
// github.com/emersion/go-smtp serves in the tests, as an independent
// client and server.
//
// A Handler receives each accepted message; one that also implements
// SenderChecker is asked about the reverse-path at MAIL (SenderLogins binds
// it to the AUTH login), and one that implements RecipientChecker about
// each recipient at RCPT.
//
// # Connector
//
// Implemented (details on the Connector type): RFC 5321 §5 routing with MX
// selection, null MX (RFC 7505) and implicit MX; RFC 3207 STARTTLS with the
// EHLO re-issued after it; implicit TLS to fixed next hops (RFC 8314 §3);
// the Postfix TLS levels; MTA-STS MX patterns and testing mode (RFC 8461
// §4.1, §5); DANE per MX host (RFC 7672, Connector.DANE or the Policy's DANE member); REQUIRETLS and
// TLS-Required: No (RFC 8689); DSN parameters and "relayed" (RFC 3461);
// SMTPUTF8 (RFC 6531, without downgrade), 8BITMIME (RFC 6152), SIZE
// (RFC 1870); AUTH PLAIN over TLS only (RFC 4954, RFC 4616); one TLS-RPT
// result per attempt (RFC 8460 §4.3, Connector.TLSRPT).
//
// Connector.Check runs a delivery to a domain up to MAIL FROM and sends no
// MAIL: its CheckReport says, per MX host, what the policy requires and
// why, what the session and certificate showed, and whether a message
// would be delivered, deferred or bounced, with the DSN status.
// Connector.Logger gets one line per delivery attempt ("delivery
// attempt": queue_id, rcpt_domain, mx, tls_version, cipher, verified,
// policy_level, policy_source, outcome).
//
// The Connector sends the mail transaction in one flight when the server
// offers PIPELINING (RFC 2920): MAIL, every RCPT and DATA, or with
// CHUNKING (RFC 3030) "BDAT n LAST" and the body, one round trip per
// message; never past STARTTLS. Not implemented on the Connector:
// BINARYMIME (RFC 3030 §3), 8-bit to 7-bit downgrade (RFC 6152 §3), LMTP
// (RFC 2033).
//
// # Metrics
//
// Server.Observer and Connector.Observer receive typed events (Observer):
// each inbound connection's end with its listener kind, TLS version and
// outcome, AUTH outcomes, refusals by RefusalReason, each recipient's
// delivery result with its TLS version and policy level and source, and
// each TLS failure by its RFC 8460 §4.3 result type. The package depends on
// no metrics system; package transport/prommetrics adapts the events to
// Prometheus.
package transport
