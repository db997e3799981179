// Package transport is the wire: an inbound SMTP Server that offers or
// requires TLS (RFC 5321, RFC 3207 STARTTLS, RFC 8314 implicit TLS, RFC 4954
// AUTH only under TLS, RFC 8689 REQUIRETLS, RFC 3461 DSN parameters) and an
// outbound Connector that delivers under a policy.Policy and never falls back
// to plaintext where the policy forbids it.
package transport
