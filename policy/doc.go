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
// # Planning a delivery
//
// NewPlan turns a Requirement and what the message asks (REQUIRETLS and
// "TLS-Required: No", RFC 8689) into a Plan; Plan.Host adapts it to what
// DANE found for each MX host (RFC 7672 §2.2) and returns the Hop that a
// connection must satisfy before MAIL FROM: whether STARTTLS is tried or
// required, what the handshake verifies (Check), whether a failed check
// is enforced, and why; or a Refusal. Plan.AllowsMX applies MTA-STS "mx:"
// patterns and Plan.CheckRequireTLS the destination conditions of RFC
// 8689 §4.2.1. A Plan does no I/O.
//
// The tables below compose a static table entry ("-": none), the domain's
// MTA-STS policy and what DANE found, with the default level may, through
// Standard and Plan. Columns: usable TLSA records; only unusable records;
// none (a signed zone without records); bogus (this host's lookup failed);
// missing (a dane-only DANE policy found no usable records); unchecked
// (the domain has records, but the host, a next hop given as an IP
// literal, is not looked up); off (no DNSSEC-aware resolver). Cells:
// plain (no STARTTLS), may (TLS if offered), tls (TLS required), then the
// certificate check (+verify, +secure, +dane), "?" when a failed check is
// only reported (MTA-STS testing mode), or ✗ with the refusal: dane (DANE
// required but not possible), dnssec (lookup failed: defer), requiretls.
// The tables show what one MX host gets (TestPlanMatrix keeps these tables in step with the code).
//
// A plain message:
//
//	static    mta-sts usable      unusable    none        mixed       bogus       missing     off
//	-         -       tls+dane    tls         may         may         ✗dnssec     ✗dane       may
//	-         testing tls+dane    tls+verify? may+verify? may         ✗dnssec     ✗dane       may+verify?
//	-         enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	none      -       tls+dane    tls         may         may         ✗dnssec     ✗dane       may
//	none      testing tls+dane    tls+verify? may+verify? may         ✗dnssec     ✗dane       may+verify?
//	none      enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	may       -       tls+dane    tls         may         may         ✗dnssec     ✗dane       may
//	may       testing tls+dane    tls+verify? may+verify? may         ✗dnssec     ✗dane       may+verify?
//	may       enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	encrypt   -       tls+dane    tls         tls         tls         ✗dnssec     ✗dane       tls
//	encrypt   testing tls+dane    tls+verify? tls+verify? tls         ✗dnssec     ✗dane       tls+verify?
//	encrypt   enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	dane      -       tls+dane    tls         may         may         ✗dnssec     ✗dane       may
//	dane      testing tls+dane    tls+verify? may+verify? may         ✗dnssec     ✗dane       may+verify?
//	dane      enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	dane-only -       tls+dane    ✗dane       ✗dane       ✗dane       ✗dnssec     ✗dane       ✗dane
//	dane-only testing tls+dane    ✗dane       ✗dane       ✗dane       ✗dnssec     ✗dane       ✗dane
//	dane-only enforce tls+dane    tls+verify  tls+verify  ✗dane       ✗dnssec     ✗dane       tls+verify
//	verify    -       tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	verify    testing tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	verify    enforce tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	secure    -       tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//	secure    testing tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//	secure    enforce tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//
// With "TLS-Required: No" (RFC 8689 §5):
//
//	static    mta-sts usable      unusable    none        mixed       bogus       missing     off
//	-         -       may         may         may         may         may         may         may
//	-         testing may         may         may         may         may         may         may
//	-         enforce may         may         may         may         may         may         may
//	none      -       may         may         may         may         may         may         may
//	none      testing may         may         may         may         may         may         may
//	none      enforce may         may         may         may         may         may         may
//	may       -       may         may         may         may         may         may         may
//	may       testing may         may         may         may         may         may         may
//	may       enforce may         may         may         may         may         may         may
//	encrypt   -       tls         tls         tls         tls         tls         tls         tls
//	encrypt   testing tls         tls         tls         tls         tls         tls         tls
//	encrypt   enforce tls         tls         tls         tls         tls         tls         tls
//	dane      -       tls+dane    tls         may         may         ✗dnssec     ✗dane       may
//	dane      testing tls+dane    tls+verify? may+verify? may         ✗dnssec     ✗dane       may+verify?
//	dane      enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	dane-only -       tls+dane    ✗dane       ✗dane       ✗dane       ✗dnssec     ✗dane       ✗dane
//	dane-only testing tls+dane    ✗dane       ✗dane       ✗dane       ✗dnssec     ✗dane       ✗dane
//	dane-only enforce tls+dane    tls+verify  tls+verify  ✗dane       ✗dnssec     ✗dane       tls+verify
//	verify    -       tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	verify    testing tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	verify    enforce tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	secure    -       tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//	secure    testing tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//	secure    enforce tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//
// With REQUIRETLS (RFC 8689 §4):
//
//	static    mta-sts usable      unusable    none        mixed       bogus       missing     off
//	-         -       tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	-         testing tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	-         enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	none      -       tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	none      testing tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	none      enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	may       -       tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	may       testing tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	may       enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	encrypt   -       tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	encrypt   testing tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	encrypt   enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	dane      -       tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	dane      testing tls+dane    ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls ✗requiretls
//	dane      enforce tls+dane    tls+verify  tls+verify  tls+verify  ✗dnssec     ✗dane       tls+verify
//	dane-only -       tls+dane    ✗requiretls ✗requiretls ✗dane       ✗requiretls ✗requiretls ✗dane
//	dane-only testing tls+dane    ✗requiretls ✗requiretls ✗dane       ✗requiretls ✗requiretls ✗dane
//	dane-only enforce tls+dane    tls+verify  tls+verify  ✗dane       ✗dnssec     ✗dane       tls+verify
//	verify    -       tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  ✗requiretls
//	verify    testing tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  ✗requiretls
//	verify    enforce tls+verify  tls+verify  tls+verify  tls+verify  ✗dnssec     tls+verify  tls+verify
//	secure    -       tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  ✗requiretls
//	secure    testing tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  ✗requiretls
//	secure    enforce tls+secure  tls+secure  tls+secure  tls+secure  ✗dnssec     tls+secure  tls+secure
//
// The whole matrix, also with the default level encrypt, is in testdata/plan_matrix.txt.
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
