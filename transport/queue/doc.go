// Package queue is the durable mail queue between transport.Server and
// transport.Connector: it takes responsibility for a message once it is on
// disk (RFC 5321 §6.1), retries temporary failures with backoff until a
// maximum age (RFC 5321 §4.5.4.1), and returns delivery status
// notifications (RFC 3464, built by package ndr) to the sender as the
// NOTIFY parameter asks (RFC 3461 §4.1, §5.2, §6).
//
// # Implemented
//
//   - A spool directory store (DirStore) behind a small Store interface. A
//     message is durable before Enqueue returns: envelope record and body
//     are written to one temporary file, which is fsynced and linked into
//     place as ID.msg, and the directory is fsynced (one fsync shared by
//     all Enqueues in flight: group commit). That is one file fsync and
//     a share of one directory fsync per message. Queue.ServeSMTP makes a
//     Queue a transport.Handler, so the Server answers 250 only after
//     that. Deliveries start at once (Enqueue wakes the scheduler; no
//     polling delay).
//   - Per-recipient state (pending, deferred, delivered, relayed, failed)
//     with attempt count, last error (reply code, RFC 3463 enhanced code,
//     text, remote MTA, TLS-RPT failure type) and next attempt time. Partial
//     success is tracked per recipient; a delivered recipient is never
//     tried again.
//   - Workers with bounded concurrency overall and per recipient domain;
//     one Deliver call per message and domain. The scheduler keeps messages
//     in a heap by due time and parks messages waiting for a busy domain,
//     so a pass costs nothing for mail that is not due (about 20 ns with
//     20,000 deferred or parked messages, BenchmarkDispatch*).
//   - Retry schedule (Queue.Backoff, doubling from 5 minutes to 4 hours by
//     default, optional jitter) up to Queue.MaxAge (5 days by default, as
//     Postfix); the last retry is moved to the expiry time, after which the
//     recipient fails with a "failed" DSN. A permanent result (5xx, or a
//     TLS failure under a policy whose failure action is bounce) fails the
//     recipient at once.
//   - DSNs (RFC 3461 §6.2): "failed" for permanent failures and expiry;
//     one "delayed" DSN after Queue.DelayWarning (4 hours by default) if
//     NOTIFY includes DELAY (or is absent); "relayed" when NOTIFY=SUCCESS
//     and the next hop does not support DSN (§5.2.2), and "delivered" when
//     Queue.FinalDelivery says the Deliverer is the last hop, or the
//     recipient is in a Queue.LocalDomain domain (§5.2.3).
//     Recipients that reach the same outcome in one attempt share one
//     report. Reports carry the TLS failure explained in words (ndr.Reason)
//     and are queued as new messages with a null reverse-path to the
//     original sender, delivered through the same Deliverer. A report that
//     fails is logged ("dropping undeliverable report") and dropped; a
//     message with a null reverse-path never causes a report (RFC 3461
//     §6.2, RFC 5321 §4.5.5). NOTIFY=NEVER suppresses all reports.
//   - Backscatter rule (MayOriginate, one pure function): for a message
//     received over SMTP without AUTH, a local recipient's "delivered" and
//     "delayed" reports go only to a sender in a LocalDomain domain, so an
//     anonymous client cannot make this MTA mail reports to a third party
//     it names as the sender. Failure reports are always sent.
//   - Local delivery (Queue.Local, Queue.LocalDomain): recipients in local
//     domains are handed to a second Deliverer (mailboxes), one Deliver
//     call per message and domain as for remote ones, with per-recipient
//     results, retries and reports. A server can then enqueue every
//     accepted message whole, local and remote recipients alike, and
//     answer 250 once, as Postfix does: one mailbox that cannot be written
//     fails neither the message nor the other recipients.
//   - Restart: Run loads the store; OpenDirStore locks the directory
//     (flock, so two relays cannot share a spool) and removes temporary
//     files and half-created messages first.
//   - Operator control: List, Get, Counts, RetryNow, RetryDomain,
//     RetryAll, Remove, and Hold and Release (a held message is not
//     attempted; the mark is in its record, so it survives restarts).
//     Package admin serves them on a Unix socket to a running Queue.
//   - Early refusal on a full disk (Postfix's queue_minfree): Queue is a
//     transport.SenderChecker that answers MAIL FROM with "452 4.3.1
//     Insufficient system storage" while the Store (a SpaceReporter, as
//     DirStore is) has less than Queue.MinFree plus the declared SIZE=
//     free, before the client sends the message.
//   - Metrics: Queue.Observer receives an event per report queued, by
//     RFC 3464 action (Observer); Depth counts the queued recipients by
//     state and names the oldest message from memory, cheaply enough for
//     every metrics scrape (transport/prommetrics serves both).
//   - One log line per recipient per delivery attempt with the keys
//     id, rcpt, next_hop, tls_version, cipher, verified, policy, result,
//     attempt, reply, tls_failure and next_retry.
//
// # Not implemented
//
//   - Several Queue processes sharing one Store: the scheduler keeps its
//     plan in memory and assumes it owns the store. STORE.md describes, on
//     paper only, how the Store maps onto a SQL database with row leases
//     (SELECT ... FOR UPDATE SKIP LOCKED) or object storage plus a lease
//     table; no such store is provided.
//   - RFC 3461 "expanded" reports (the queue does no alias expansion),
//     ETRN (RFC 1985), message priorities, per-destination rate limits and
//     Postfix-style "dead destination" throttling.
//   - Batching of state writes: a state change that must be kept (a
//     deferral, a report planned) costs an fsync of ID.json and a share of
//     a directory fsync. A message delivered at its first attempt never
//     writes one: it is deleted. There is no shared journal, so file
//     creations and fsyncs are per message (see README "Performance" for
//     what that costs against Postfix). The whole queue is held in memory
//     (one small record per message), and Run reads every record at start.
//
// # Crashes, durability and duplicates
//
// A message whose Enqueue returned survives a crash at any later point:
// ID.msg (record and body) was fsynced before it got its name and the
// directory was fsynced before Enqueue returned; every later change of
// state is written to a new file, fsynced and renamed over ID.json before
// anything depends on it; and the message is removed only once every
// recipient is final and every report about it is itself durably queued.
//
// Write order per message delivered at the first attempt: write
// tmp-RANDOM (record, then body), fsync it, link it to ID.msg, unlink the
// temporary name, fsync the directory (shared), then 250 to the client;
// after the delivery, unlink ID.msg (and ID.json, if an update wrote one)
// without waiting: the next directory fsync of any Create or Update covers
// the removal, or a timer does after 50 ms (DefaultDeleteSyncDelay), or
// Close. Before this layout a message cost two file fsyncs and two
// directory fsyncs (body and record in separate files, an fsynced
// deletion). Report ids are planned in the same write as the result
// that calls for them (message id + ".r" + sequence number), so a crash
// between queueing a report and recording that it was queued does not
// produce a second report: on restart the report is found and not created
// again, before any delivery starts.
//
// What a crash can cause is a duplicate delivery: if the process dies after
// the next hop accepted a recipient (its 250 reply) and before the queue
// wrote that result, the recipient is still "pending" or "deferred" on disk
// and is delivered again after the restart. The same holds for a report
// whose delivery succeeded just before a crash. This is the usual
// at-least-once behaviour of MTAs (RFC 5321 §6.1 prefers a duplicate to a
// loss); the window is the time between the remote's reply and the end of
// the state write (one file write and two fsyncs) or, for a message that
// is finished and deleted, the removal itself. A crash of the machine
// (power loss, kernel panic: not of the process, since the kernel keeps
// what it was given) within about 50 ms after a deletion, before a
// directory fsync covered it, can also bring the deleted message back
// with its last durable record (the accepted one if no update was
// written): every recipient still pending in that record is delivered
// again, and a report whose id was planned again may be sent twice. No
// accepted message can be lost that way; the duplicates are of the kind
// counted below. A delivery attempt
// interrupted by an orderly shutdown (Run's context ending) is not charged
// as an attempt. The crash test (crash_test.go: a child process running the
// queue is killed with SIGKILL ten times at random moments while it
// accepts and delivers mail, then a last child drains the spool) counts
// both. Each message has three recipients: two to deliver, one that fails
// permanently and must come back as a failed DSN. With the one-file
// layout, six runs of 10 rounds on a 2-core machine (252 to 283
// accepted messages per run): no recipient lost; 0 to 1 duplicate
// deliveries and no duplicate report, each across a kill (the test fails
// if one process delivers a recipient or a report twice). A run of 30
// rounds: 774 messages, 2,322 recipients, 0 lost, 5 duplicate deliveries
// (0.3% of the 1,548 due), 1 duplicate report. (Before, with two files
// and fsynced deletions: 1 to 11 duplicates per 10 rounds, 32 in 30.)
// Every kill lands while deliveries run back to back with a remote that
// answers in about 2 ms; with real networks the window is a small part of
// each attempt. TestCrashRecoverySMTP does the same with the real path
// out: the child delivers with a transport.Connector over STARTTLS to a
// test SMTP server living in the parent process, which counts what it
// accepted. Six runs of 10 rounds (243 to 274 messages): 0 lost; 2 to 9
// duplicate deliveries (0.4% to 1.8% of those due) and 0 to 1 duplicate
// report; 30 rounds
// (700 messages, 2,100 recipients): 0 lost, 14 duplicate deliveries
// (0.7%), 1 duplicate report. Run both with (MAILTLS_CRASH_ROUNDS and
// MAILTLS_CRASH_MESSAGES scale them):
//
//	go test -run 'TestCrashRecovery' -v ./transport/queue/
//
// SIGKILL does not lose data the kernel already holds, so the crash test
// checks ordering and recovery, not the fsync calls (nor the deferred
// directory fsync after a deletion); those are checked through DirStore's
// trace seam (TestEnqueueDurabilityOrder, TestDirStoreDeleteSyncedByClose).
package queue
