// Package transporttest provides fixtures for testing code that sends or
// receives mail with package transport, as net/http/httptest does for HTTP.
// Every fixture listens on loopback only, never reaches the network, and
// records what it was sent, so that a test can assert that no MAIL FROM,
// RCPT TO or body byte crossed it in plaintext.
//
//   - NewTransportServer runs the caller's own *transport.Server on
//     127.0.0.1 with a fixture certificate and returns its address and a
//     client TLS configuration that trusts it (ClientTLSConfig).
//   - NewServer and its shorthands (NewTLSServer, NewPlainServer,
//     NewWrongNameServer, NewExpiredServer, NewUntrustedServer) start a
//     peer MTA to deliver to: STARTTLS (RFC 3207) or implicit TLS (RFC 8314
//     §3) with a good or deliberately bad certificate, or none. They are
//     built on github.com/emersion/go-smtp's server, not on
//     transport.Server, so that they stay independent of the code under
//     test, and offer the extensions go-smtp offers: AUTH PLAIN (RFC 4954,
//     only under TLS), DSN (RFC 3461), SMTPUTF8 (RFC 6531), REQUIRETLS
//     (RFC 8689, advertised only under TLS), SIZE, 8BITMIME, PIPELINING.
//   - NewProxy and its shorthands put a man-in-the-middle between a client
//     and a server that strips STARTTLS from the EHLO reply or refuses the
//     command, as a downgrade attacker does.
//   - NewResolver is a fake DNS resolver (MX, A/AAAA, TXT, TLSA, CNAME,
//     with or without the DNSSEC AD bit) for transport.Connector, the
//     MTA-STS and TLS-RPT lookups and DANE (RFC 7672); Dialer maps the
//     documentation addresses (RFC 5737) it hands out to loopback servers.
//   - NewCA issues certificates: CA.IssueLocalhost for 127.0.0.1, ::1 and
//     localhost, LeafOptions for any other, including expired ones. CA,
//     Leaf and LeafOptions are package certstore/certtest's, which tests of
//     any package can import.
//
// What a fixture saw is read the same way on every fixture: Seen returns
// the raw bytes its clients sent, Messages the messages it accepted and
// WaitMessages waits for them, instead of polling. Each New function
// takes a testing.TB, fails it on error and closes the fixture when the
// test ends; each has a Start form for use outside tests whose result the
// caller must Close.
//
// The fixtures are not hardened and not meant for production.
package transporttest
