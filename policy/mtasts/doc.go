// Package mtasts implements SMTP MTA Strict Transport Security (MTA-STS,
// RFC 8461) for the sending side: discovery of a recipient domain's policy
// through the "_mta-sts.<domain>" TXT record (§3.1) and the HTTPS policy
// host "https://mta-sts.<domain>/.well-known/mta-sts.txt" (§3.3), strict
// parsing of both (§3.1, §3.2), MX host matching (§4.1), and a policy cache
// that survives restarts, honours max_age, refetches when the TXT id changes
// and keeps a valid cached policy when a refresh fails (§3.3, §5.1, §10.2).
//
// [Client] implements policy.Policy: its Lookup turns an "enforce" or
// "testing" policy into a policy.Requirement at level Verify, restricted to
// the policy's MX patterns, with Source policy.SourceMTASTS. A domain with no
// usable policy (nothing published, mode "none", or a policy that cannot be
// fetched and is not cached) yields a *NoPolicyError, which matches
// policy.ErrNoPolicy with errors.Is, so that policy.Strictest lets the other
// members decide. Its Published field tells "nothing published" (false) from
// "published but unusable or mode none" (true), and Err says why.
//
// What the Requirement means for delivery (§5, §4.2): in enforce mode only MX
// hosts matching a pattern may be used and each must present a certificate
// that is PKIX-valid for its MX host name; in testing mode delivery proceeds
// as usual and failures are recorded for TLS-RPT (RFC 8460, package
// policy/tlsrpt). Applying the Requirement on the wire is the transport's
// job, not this package's.
//
// The policy domain is the one Lookup is given: the recipient domain, or the
// smart host's domain when mail is relayed through one (§3.4); a parent
// domain's policy is never consulted for a subdomain.
//
// Not supported: the receiving side (publishing and serving a policy is left
// to the host's web server); internationalised domain names in U-label form
// (domains and mx patterns must be ASCII A-labels, RFC 8461 §3.2 says the same
// of mx patterns); following HTTP redirects (forbidden by §3.3); HTTP proxies
// (the policy host is dialled directly unless the host supplies HTTPClient);
// policy delegation through CNAME is supported only as far as the DNS
// resolver follows CNAMEs for the TXT record.
package mtasts
