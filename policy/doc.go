// Package policy decides what TLS an outbound hop requires and what TLS an
// inbound listener demands, and explains every decision.
//
// # Levels
//
// Levels follow Postfix's smtp_tls_security_level (postconf(5), TLS_README):
// none, may, encrypt, dane, dane-only, verify, secure. Postfix's
// "fingerprint" level is not implemented. A Requirement carries the level
// with the minimum TLS version (TLS 1.2 unless raised to 1.3; RFC 8996 and
// RFC 9325 §3.1.1 rule out anything older), the names a certificate must
// match, what to do on failure (defer and retry, or bounce at once), the mode
// (enforce or testing, RFC 8461 §5) and where the decision came from.
//
// # Static tables
//
// Table is a per-destination table in the syntax of Postfix's
// smtp_tls_policy_maps (postconf(5) "smtp_tls_policy_maps", TLS_README "TLS
// policy table"): exact domains, ".parent" domains, "[host]" and
// "[host]:port" next hops, a "*" default, and the attributes match= and
// protocols=, plus three extensions of ours: on-failure=, mode= and
// override=. See ParseTable for the grammar. Not implemented from Postfix:
// the fingerprint level, match=hostname, ciphers=, exclude=, tafile=,
// servername=, connection_reuse=, enable_rpk=, "domain:port" keys without
// brackets, map types other than a plain text file (hash:, regexp:...), and
// maximum protocol versions.
//
// # Combination
//
// Strictest (built by Combine) asks several policies and keeps the strictest
// answer, never letting one member weaken another; only an explicit local
// override (override=yes) may lower a requirement, and that is logged.
// Testing-mode answers never raise enforced ones. A member that has no
// opinion returns an error wrapping ErrNoPolicy; any other error is passed
// on, and the caller must defer, never downgrade.
//
// Standard is the composition an internet MTA wants in one value: DANE
// over MTA-STS where DNSSEC-authenticated TLSA records exist (RFC 8461
// §2), the static table raising but never silently lowering a published
// policy, override=yes logged, a default level as the floor, and a
// testing-mode MTA-STS policy checked and reported (RFC 8461 §5) over an
// enforced floor (Requirement.Floor) instead of being ignored.
// Requirement.String explains the resulting decision in one line.
//
// Mail routed to a fixed next hop (a gateway, a smarthost) is held to
// ForNextHop: the strictest of the next hop's own entry, the recipient
// domain's entry and the route's level. Only local configuration is asked
// for it (LocalPolicy, LookupLocal): published policies name a domain's
// own MX hosts, not the administrator's next hop.
//
// # Not here
//
// Discovery of published policies lives in subpackages: mtasts (MTA-STS,
// RFC 8461) and dane (RFC 7672); their lookups plug into Strictest as
// members. Strictest ranks answers by Requirement.Strength, with one rule of
// precedence between published policies: where DANE applies (TLSA records
// exist), MTA-STS answers do not compete (RFC 8461 §2). Resolver is the DNS
// both kinds of discovery can share: a transport.Connector hands its one
// resolver to the lookups it makes through the context (WithResolver), and
// members without a resolver of their own use it.
package policy
