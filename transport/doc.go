// Package transport is the wire: an inbound SMTP Server that offers or
// requires TLS (RFC 5321, RFC 3207 STARTTLS, RFC 8314 implicit TLS, RFC 4954
// AUTH only under TLS, RFC 8689 REQUIRETLS, RFC 3461 DSN parameters) and an
// outbound Connector that delivers under a policy.Policy and never falls back
// to plaintext where the policy forbids it. The Connector applies MTA-STS MX
// patterns and testing mode (RFC 8461 §4.1, §5), DANE per MX host through a
// DNSSEC-aware resolver (RFC 7672, Connector.DANE), the REQUIRETLS
// conditions on every hop (RFC 8689 §4.2.1) and records one TLS-RPT result
// per attempt (RFC 8460 §4.3, Connector.TLSRPT). Not implemented: BDAT
// (RFC 3030), PIPELINING on the client side, LMTP.
package transport
