// Package dane implements SMTP security via opportunistic DANE TLS (RFC 7672)
// for outbound mail: TLSA lookups through a DNSSEC-validating resolver, the
// usability rules for TLSA records, and verification of a server's
// certificate chain against them (RFC 6698, updated by RFC 7671).
//
// # DANE-EE and DANE-TA
//
// A domain that signs its zone with DNSSEC can publish, for each MX host, TLSA
// records at "_25._tcp.<mx host>" saying which certificate that host will
// present. Because DNSSEC authenticates the records, an active attacker can
// neither remove them nor substitute their own, so a sending MTA that finds
// them knows that TLS is mandatory and how to authenticate the server,
// without the WebPKI.
//
// A DANE-EE(3) record ("end entity") names the server's own certificate or,
// with selector SPKI(1), its public key, either in full or as a SHA2-256 or
// SHA2-512 digest. When the leaf certificate matches, the server is
// authenticated. Nothing else about the certificate matters: not its names,
// not its validity dates, not who issued it (RFC 7672 §3.1.1). The DNS
// record is the authentication, and its TTL and DNSSEC signatures govern how
// long it holds. This is the common and recommended form, "3 1 1".
//
// A DANE-TA(2) record ("trust anchor") names a CA certificate (or its key)
// that the server must include in the chain it presents. The chain from the
// leaf to that anchor is then verified as in PKIX, with the anchor as the only
// root: signatures, validity dates and the leaf's names all count. The names
// accepted are the TLSA base domain, the MX host name and, when the MX
// records were DNSSEC-authenticated, the next-hop domain (RFC 7672 §3.2.2).
// This lets a provider run many hosts under one private CA.
//
// PKIX-TA(0) and PKIX-EE(1) records are unusable for SMTP (RFC 7672 §3.1.3),
// as are unknown parameters. When a host's TLSA RRset holds only unusable
// records, TLS remains mandatory but the certificate is not checked
// ("encrypt", RFC 7672 §2.2). When a host has no authenticated TLSA records,
// opportunistic DANE ("dane") falls back to opportunistic TLS ("may"), as
// Postfix does; mandatory DANE ("dane-only") does not deliver to it.
//
// # Trusting DNSSEC
//
// This package does not validate DNSSEC signatures itself. It sends its
// queries with the DO and AD bits to one recursive resolver that validates,
// and believes the AD bit in the answer only when the path to that resolver
// is secure (RFC 6698 §4.1, RFC 7672 §1.3): by default only a resolver on a
// loopback address is trusted; see Trust. A SERVFAIL from a validating
// resolver (which is how it reports bogus data) and every other lookup
// failure is an error wrapping ErrLookupFailed, never "no records": the host
// is unusable and the message is deferred, never sent with less protection
// (RFC 7672 §2.1.1, §2.2).
//
// # Using it
//
// Policy.LookupMX gives a Connector, for each MX host in order, the
// authenticated addresses, the usable TLSA records, the reference names and
// the effective level; Host.ClientConfig returns the tls.Config for the
// STARTTLS handshake (SNI set to the TLSA base domain, RFC 7672 §8.1;
// VerifyConnection calling Verify). Policy.Lookup implements policy.Policy
// for composition with MTA-STS and static tables. ResultType maps errors to
// TLS-RPT result types (RFC 8460 §4.3).
//
// A Resolver also answers the lookups that need no DNSSEC, with
// net.Resolver's conventions (LookupTXT, LookupIPAddr: it is a
// policy.Resolver), so that one validating resolver can serve every lookup
// of a delivery: give it to transport.Connector.DNS, and leave the
// Resolver of the Policy and of an mtasts.Client nil to have them use it.
//
// # Not supported
//
//   - In-process DNSSEC validation: the AD bit of a trusted validating
//     resolver is relied on.
//   - DANE for MX hosts whose MX RRset is insecure (RFC 7672 §2.2.1 permits
//     it): such hosts get the fallback level.
//   - CNAMEs (RFC 7672 §2.2.2) are handled only as the resolver reports
//     them in its answers: the CNAME-expanded name from the A answer of an
//     MX host is tried as TLSA base domain before the MX host name, the
//     expanded next-hop domain is accepted as a reference identifier, and a
//     TLSA owner name that is an alias is followed. Chains are not resolved
//     step by step, and an AAAA answer whose CNAME target differs from the
//     A answer's is not considered separately.
//   - DANE-TA trust anchors the server does not include in its chain, and
//     bare public keys (DANE-TA with SPKI(1) and Full(0)) as anchors.
//   - PKIX-TA and PKIX-EE usages (unusable for SMTP by RFC 7672 §3.1.3), and
//     DANE for protocols other than SMTP (SRV-based DANE, RFC 7673).
//   - Certificate revocation checking (RFC 7672 §3.1 does not require it).
//   - Caching across delivery attempts: every attempt queries the
//     resolver, which caches. Within one attempt a Memo (WithMemo, which a
//     transport.Connector sets up for each Deliver call) sends each query
//     once, however many lookups need its answer.
package dane
