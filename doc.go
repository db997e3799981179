// Package mailtls is an embeddable library for TLS-enforced mail transport.
// It holds no code: it is the map of the packages a host application
// assembles.
//
// A host application stands up inbound listeners that offer or require TLS
// and accept passwords only under TLS, queues what they accept on disk, and
// relays it over outbound routes that never fall back to plaintext where a
// policy says the hop must be encrypted. When a message cannot go out with
// the TLS its policy demands, the sender gets an RFC 3464 delivery status
// notification that says, in words and in fields, which requirement failed
// where.
//
// # The packages
//
//   - certstore: certificates and keys. PEM loading with key/chain/expiry
//     checks, selection by SNI with a default for clients that send none (most
//     MTAs), atomic Reload and a polling Watch, expiry reports, self-signed
//     generation, and a *tls.Config builder with RFC 9325 defaults (TLS 1.2
//     minimum, ECDHE+AEAD suites only, Go's post-quantum key exchange kept)
//     that is the one place a listener's minimum TLS version and client
//     certificate policy are set (TLSOptions). certstore/certtest is a
//     certificate authority for tests.
//   - policy: what TLS a hop requires. Levels with Postfix's meanings (none,
//     may, encrypt, dane, dane-only, verify, secure), a static table in a
//     Postfix-like syntax, and Strictest and Standard to combine sources
//     while keeping where each decision came from. Plan turns a decision
//     and a message's REQUIRETLS or "TLS-Required: No" into what each
//     connection must satisfy, per MX host and its DANE records, as a pure
//     function (the Connector asks it). policy.Inbound is what a listener
//     demands of clients beyond its TLS configuration (require TLS, the
//     128-bit cipher floor).
//   - policy/mtasts (RFC 8461), policy/dane (RFC 7672) and policy/tlsrpt
//     (RFC 8460): published policies and reporting on them.
//   - transport: the wire. Server (MX, submission with STARTTLS, implicit-TLS
//     submissions per RFC 8314; AUTH only under TLS; REQUIRETLS; the
//     CVE-2011-0411 STARTTLS injection closed) and Connector (MX resolution,
//     STARTTLS verified per level, a classified result per recipient with the
//     TLS used and its policy source; the body never reaches the socket when
//     the policy is not met). Server limits assume a hostile client: AUTH
//     failures counted per address and network in bounded tables that evict,
//     a bound on concurrent password checks shared by listeners, a
//     per-client connection cap, a connection cap at which a newcomer takes
//     the slot of the least progressing connection, deadlines that trickled
//     bytes cannot extend, and SenderLogins binding MAIL FROM to the login.
//     RelayHandler is the Handler of an MTA: local recipients checked at
//     RCPT, relaying only for logins and trusted networks, every message
//     into the queue.
//     Connector.Check explains what a delivery to a domain would do, up to
//     MAIL FROM, and an Observer receives typed events for metrics.
//   - transport/smtpclient: the SMTP client session the Connector drives
//     (greeting, EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA/BDAT, replies with
//     enhanced codes), and a Dialer for tools and tests. It knows no policy.
//   - transport/transporttest: fixtures for applications' own tests, as
//     net/http/httptest: the application's own Server on loopback with a
//     client TLS configuration that trusts it, TLS and plaintext-only peer
//     servers, servers with wrong, expired or untrusted certificates,
//     STARTTLS-stripping proxies, a fake DNS resolver with DNSSEC answers
//     for MTA-STS and DANE, and a test CA; WaitMessages waits for mail.
//   - transport/queue: the durable spool between them. Mail is on disk
//     (fsynced, renamed, directory fsynced) before the Server answers 250;
//     retries with backoff until a maximum age; failed, delayed, delivered
//     and relayed DSNs as NOTIFY asks, sent with a null reverse-path; hold
//     and release; 452 4.3.1 at MAIL when the spool is short of space.
//   - transport/queue/admin: a Unix-socket protocol for operating a running
//     Queue (list, show, retry, remove, hold, release).
//   - transport/prommetrics: a Prometheus adapter for the Observer events,
//     in its own package so that programs without it don't link it.
//   - ndr: RFC 3464/6522/6533 reports, built (English and Japanese human
//     part, DKIM-signed on request) and parsed (ours and other MTAs').
//
// Dependencies point one way: examples → transport/queue → transport →
// transport/smtpclient, policy, certstore; transport/queue and transport →
// ndr (for the RFC 3461 NOTIFY and RET types) → policy. policy holds the
// vocabulary the others share (levels, sources, TLS failure types);
// certstore, policy and transport/smtpclient import none of the others.
//
// # Assembling a relay
//
// A submission listener on port 465 that requires AUTH over implicit TLS,
// a durable queue, and a Connector that requires verified TLS to a partner
// and at least encryption everywhere else (see the package example and
// examples/relay for the complete program):
//
//	certs, _ := certstore.New(certstore.Source{CertFile: "cert.pem", KeyFile: "key.pem", Default: true})
//	tlsConfig, _ := certs.TLSConfig(certstore.TLSOptions{})
//	table, _ := policy.ParseTable(strings.NewReader(
//		"partner.example verify\n* encrypt on-failure=bounce\n"), "tls_policy")
//	connector := &transport.Connector{Hostname: "relay.example.org", Policy: table}
//	store, _ := queue.OpenDirStore("/var/spool/mailtls")
//	q := &queue.Queue{Store: store, Deliverer: connector, Hostname: "relay.example.org"}
//	srv := &transport.Server{
//		Hostname:      "relay.example.org",
//		Kind:          transport.KindSubmissions,
//		TLSConfig:     tlsConfig,
//		Handler:       q, // 250 only after the message is on disk
//		Authenticator: users, // transport.BcryptTable
//	}
//	go q.Run(ctx)
//	srv.ListenAndServe(ctx, ":465")
//
// examples/demo runs the whole path on loopback in one command:
// go run ./examples/demo.
package mailtls
