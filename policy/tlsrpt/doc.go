// Package tlsrpt implements SMTP TLS Reporting (TLS-RPT, RFC 8460) for a
// sending MTA, and reading the reports others send.
//
// Sending side:
//
//   - The transport records one [Result] per delivery attempt (per policy
//     domain, policy type "sts", "tlsa" or "no-policy-found", with the §4.3
//     result type on failure) in a [Store]; [FileStore] is the default,
//     append-only, one JSON-lines file per UTC day.
//   - An [Aggregator] turns a UTC day of results into one [Report] per policy
//     domain, in the JSON schema of RFC 8460 §4.4, with the report-id,
//     date-range, organization-name and contact-info members.
//   - [LookupRecord] and [ParseRecord] read the domain's "_smtp._tls" TXT
//     record (§3). For its "mailto:" destinations [BuildMail] returns the
//     report message (§5.3: multipart/report; report-type=tlsrpt, a human
//     part and the gzip-compressed report as application/tlsrpt+gzip named
//     per §5.1, TLS-Report-Domain, TLS-Report-Submitter and TLS-Required: No)
//     as bytes for the host's queue; for "https:" destinations
//     [NewHTTPRequest] builds the POST (§5.4) without sending it.
//
// Report mail is DKIM-signed, as §5.3 asks, when MailOptions.DKIM is set
// (the signature covers SignedHeaders, TLS-Report-Domain and
// TLS-Report-Submitter among them).
//
// Receiving side: [ParseReport] reads a JSON report, gzip-compressed or not,
// and [ParseReportMail] the report inside a report message, both bounded in
// size; ParseReportMail also bounds the MIME nesting depth and part count.
//
// Not done here: sending anything (mail goes through the host's queue and
// HTTPS POSTs through the host's HTTP client, which must verify the server
// certificate); retrying and suppressing failed report deliveries (§5.4,
// §5.5); reporting on results from other hosts of the same organisation
// (one Store per host, merged by the host if wanted); internationalised
// domain names in U-label form. The policy lookup itself (MTA-STS, DANE) belongs to policy/mtasts and
// policy/dane; this package only records what they decided.
package tlsrpt
