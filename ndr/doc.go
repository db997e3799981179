// Package ndr builds and parses delivery status notifications: the
// non-delivery (and delay and success) reports an MTA sends back to a
// message's sender.
//
// Implemented:
//
//   - RFC 3464, the message/delivery-status format: per-message fields
//     (Original-Envelope-Id, Reporting-MTA, Received-From-MTA,
//     Arrival-Date) and per-recipient fields (Original-Recipient,
//     Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
//     Last-Attempt-Date, Final-Log-Id, Will-Retry-Until).
//   - RFC 6522, the multipart/report container with a human-readable part,
//     and text/rfc822-headers for returning headers only.
//   - RFC 6533, message/global-delivery-status, message/global-headers and
//     message/global for SMTPUTF8 originals, with the utf-8 address type.
//   - RFC 3461 §4.1 and §4.3, the NOTIFY and RET parameters: [ShouldReport]
//     decides which outcomes produce a report, never for a null sender;
//     §4, the xtext encoding of ENVID and ORCPT ([DecodeXtext]).
//   - RFC 3463 and the RFC 5248 registry: the enhanced status codes with
//     their registered meanings ([StatusText]) in English and Japanese.
//   - RFC 3834 (Auto-Submitted: auto-replied) and RFC 8689 §5: a report
//     about a REQUIRETLS message returns only its headers and says why.
//   - RFC 6376 DKIM signing of the report through go-msgauth, when a key is
//     given.
//
// The human-readable part is localized (English and Japanese; other
// languages fall back to English). For a TLS failure, [Reason] says in
// plain words which requirement failed, where, and which policy
// (static table, MTA-STS, DANE, REQUIRETLS) demanded it.
//
// Not implemented: message disposition notifications (RFC 8098), the
// DSN-Gateway field and non-SMTP diagnostic conversion (Report fields hold
// decoded ENVID and ORCPT values), charset conversion of returned headers, and the utf-8-addr-xtext/unitext encodings of RFC 6533
// §3 (addresses are written as raw UTF-8 in global reports). Parse reads
// other MTAs' reports tolerantly but does not interpret their
// human-readable parts, and returns ErrNoDeliveryStatus for bounces that
// carry no delivery-status part (qmail's, for example).
//
// The package knows nothing of sockets: the queue builds a [Report] from
// its delivery results and sends the bytes of [Report.Build] with a null
// reverse-path.
package ndr
