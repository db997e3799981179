// Package queue is the durable mail queue between transport.Server and
// transport.Connector: it takes responsibility for a message once it is on
// disk (RFC 5321 §6.1), retries temporary failures with backoff until a
// maximum age (RFC 5321 §4.5.4.1), and returns delivery status
// notifications (RFC 3464, built by package ndr) to the sender as the
// NOTIFY parameter asks (RFC 3461 §4.1, §5.2, §6).
//
// # Use
//
// Open a Store (OpenLogStore for a spool directory written as a log, the
// faster; OpenDirStore for one file per message), build a Queue with it
// and a Deliverer (a *transport.Connector, or Local for mailboxes), start
// Queue.Run, and hand accepted mail to Queue.Enqueue — or give the Queue to
// a transport.Server as its Handler (Queue.ServeSMTP), so that the client
// gets 250 only once the message is durable. Report turns a delivery result
// into an ndr.Report for embedders that send their own notifications.
//
// # What it does
//
//   - Store: LogStore appends the record (Message, versioned by
//     RecordFormat) and the body as one checksummed entry to a segment
//     file prepared with zeros, and makes it durable with one fdatasync(2)
//     shared by the Enqueues and Updates in flight before Enqueue returns;
//     a removal is an entry too. DirStore writes record and body to one
//     file per message with a checksum, links it into place, and makes
//     file and name durable (one flush shared by the Enqueues in flight).
//     Why both survive a power cut: DURABILITY.md. Other stores implement
//     the Store interface (pgstore, for several nodes).
//   - Per-recipient state (transport.Status) with attempt count, last error
//     (reply code, RFC 3463 enhanced code, text, remote MTA, RFC 8460
//     failure type, whether we found it ourselves) and next attempt time. A
//     delivered recipient is never tried again.
//   - Workers with bounded concurrency overall and per recipient domain;
//     one Deliver call per message and domain; a scheduler ordered by due
//     time.
//   - Retry schedule (Queue.Backoff, doubling from 5 minutes to 4 hours by
//     default, optional jitter) up to Queue.MaxAge (5 days by default); the
//     last retry is moved to the expiry time. A permanent result (5xx, or a
//     TLS failure under a policy whose failure action is bounce) fails the
//     recipient at once.
//   - DSNs (RFC 3461 §6.2): "failed" for permanent failures and expiry; one
//     "delayed" DSN after Queue.DelayWarning if NOTIFY includes DELAY (or is
//     absent); "relayed" when NOTIFY=SUCCESS and the next hop does not
//     support DSN (§5.2.2); "delivered" when Queue.FinalDelivery says the
//     Deliverer is the last hop, or the recipient is in a Queue.LocalDomain
//     domain (§5.2.3). Recipients with the same outcome in one attempt share
//     one report. Reports have a null reverse-path and never cause reports
//     themselves (RFC 5321 §4.5.5); NOTIFY=NEVER suppresses all reports.
//   - Backscatter rule (MayOriginate): for mail received without AUTH, a
//     local recipient's "delivered" and "delayed" reports go only to a
//     sender in a LocalDomain domain. Failure reports are always sent.
//   - Local delivery (Queue.Local, Queue.LocalDomain, Maildir): local
//     recipients go to a second Deliverer with per-recipient results,
//     retries and reports, so a server can enqueue every accepted message
//     whole and answer 250 once.
//   - Restart: Run loads the store; OpenLogStore and OpenDirStore lock
//     the directory and leave out what a crash cut before it was
//     acknowledged (an incomplete log entry; a half-created file).
//   - Operator control: List, Get, Counts, RetryNow, RetryDomain, RetryAll,
//     Remove, Hold and Release (package admin serves them on a Unix socket).
//   - Early refusal on a full disk (Postfix's queue_minfree): Queue is a
//     transport.SenderChecker answering MAIL FROM with "452 4.3.1" while the
//     Store has less than Queue.MinFree plus the declared SIZE= free.
//   - Metrics (Queue.Observer, Depth) and one log line per recipient per
//     delivery attempt.
//
// Not implemented: "expanded" reports (no alias expansion), ETRN
// (RFC 1985), message priorities and per-destination rate limits.
//
// # Durability and duplicates
//
// A message whose Enqueue returned survives a crash at any later point:
// its file and its name were made durable before Enqueue returned (a file
// that a crash tore before that is recognised by its checksum and removed
// on the next start: it was never acknowledged); every later change of state is written to a new
// file, fsynced and renamed over ID.json before anything depends on it; and
// the message is removed only once every recipient is final and every
// report about it is itself durably queued. Report ids are planned in the
// same write as the result that calls for them (message id + ".r" +
// sequence number), so a crash never creates a report twice.
//
// A crash can cause a duplicate delivery: if the process dies after the
// next hop accepted a recipient and before the queue wrote that result, the
// recipient is delivered again after the restart (RFC 5321 §6.1 prefers a
// duplicate to a loss). A machine crash within DefaultDeleteSyncDelay of a
// deletion, before a directory fsync covered it, can bring the deleted
// message back with its last durable record, with the same effect. The
// crash tests (crash_test.go) kill a queue process with SIGKILL at random
// moments and count both:
//
//	go test -run 'TestCrashRecovery' -v ./transport/queue/
package queue
