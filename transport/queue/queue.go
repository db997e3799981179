package queue

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// Defaults for zero Queue fields.
const (
	// DefaultMaxAge is how long a message is retried before it is returned
	// as failed: 5 days, Postfix's maximal_queue_lifetime.
	DefaultMaxAge = 5 * 24 * time.Hour
	// DefaultDelayWarning is when a "delayed" DSN is sent: 4 hours, as
	// Postfix's delay_warning_time is usually set and as RFC 3461 §6.2.1
	// suggests reporting delays of "a few hours".
	DefaultDelayWarning = 4 * time.Hour
	// DefaultConcurrency bounds delivery attempts in flight.
	DefaultConcurrency = 20
	// DefaultPerDomainConcurrency bounds attempts in flight to one domain
	// (Postfix's default_destination_concurrency_limit).
	DefaultPerDomainConcurrency = 20
	// DefaultAttemptTimeout bounds one Deliver call.
	DefaultAttemptTimeout = 10 * time.Minute
	// DefaultPollInterval is the longest the scheduler sleeps between scans.
	DefaultPollInterval = time.Second
)

// DefaultBackoff returns the retry schedule used when Queue.Backoff is nil:
// 5m, 10m, 20m, 40m, 1h20m, 2h40m, then 4h repeating. It doubles from
// Postfix's minimal_backoff_time and stays well above the 30 minutes
// RFC 5321 §4.5.4.1 asks for once a destination has failed a few times.
func DefaultBackoff() []time.Duration {
	return []time.Duration{
		5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute,
		80 * time.Minute, 160 * time.Minute, 4 * time.Hour,
	}
}

// ErrRunning is returned by Run when the Queue is already running.
var ErrRunning = errors.New("queue: already running")

// Queue is a durable mail queue: Enqueue stores a message in Store before
// it returns, and Run delivers queued messages through Deliverer, retrying
// temporary failures with backoff until MaxAge, and sends delivery status
// notifications (RFC 3464) built with package ndr back to the sender as
// NOTIFY asks (RFC 3461 §6).
//
// A Queue is configured by setting its fields before the first call to any
// method; it must not be copied or modified afterwards. The zero values of
// the optional fields are documented defaults. Store and Deliverer are
// required. Enqueue may be called before and while Run runs; messages
// enqueued while Run is not running are delivered when it starts.
type Queue struct {
	// Store holds the messages. Required; see OpenDirStore.
	Store Store
	// Deliverer delivers to the next hop; a *transport.Connector. Required.
	Deliverer Deliverer

	// Hostname names this MTA in reports (Reporting-MTA, RFC 3464 §2.2.2,
	// and the From address MAILER-DAEMON@Hostname). If empty, os.Hostname
	// is used, and "localhost" if that fails.
	Hostname string
	// FinalDelivery says that Deliverer delivers to mailboxes (it is the
	// last hop), so a recipient it reports Delivered with NOTIFY=SUCCESS
	// gets a "delivered" DSN from this queue (RFC 3461 §5.2.3). If false,
	// the zero value, Deliverer relays: Delivered means a DSN-capable next
	// hop took the message and the NOTIFY parameter with it, and that hop
	// reports success (RFC 3461 §5.2.1); only Relayed results (next hop
	// without DSN, RFC 3461 §5.2.2) get a success report ("relayed") here.
	// Success and delay reports about final deliveries obey the
	// backscatter rule (MayOriginate).
	FinalDelivery bool
	// LocalDomain, when set, reports whether a domain (lower case) is one
	// this MTA is the final destination for, as Postfix's mydestination.
	// Recipients there are delivered by Local, if set, and count as final
	// deliveries: one reported Delivered with NOTIFY=SUCCESS gets a
	// "delivered" DSN (RFC 3461 §5.2.3), as with FinalDelivery. The
	// sender's domain is checked against it by the backscatter rule
	// (MayOriginate). Nil means no domain is local.
	LocalDomain func(domain string) bool
	// Local, when set, delivers the recipients whose domain LocalDomain
	// reports as local (to mailboxes: Maildirs, a database), instead of
	// Deliverer. Its results are per recipient, as Deliverer's: a mailbox
	// that cannot be written is retried (Deferred) or bounced (Failed)
	// alone, and the recipients delivered with it are never delivered
	// again. Reports to a sender in a local domain go the same way, so
	// bounces for local senders never leave through Deliverer (an MX
	// lookup of one's own domain). Nil means Deliverer delivers local
	// recipients too.
	Local Deliverer
	// Language selects the human-readable part of reports: "en" or "ja".
	// Empty means English.
	Language string
	// DKIM, when set, signs every report the queue builds (RFC 6376, through
	// ndr.Report.DKIM); the options are not modified. Nil, the zero value,
	// sends reports unsigned.
	DKIM *dkim.SignOptions
	// MaxAge is how long after arrival a message is retried; a recipient
	// still deferred after that fails with a "failed" DSN. Zero means
	// DefaultMaxAge.
	MaxAge time.Duration
	// DelayWarning is the age after which a recipient still deferred gets
	// one "delayed" DSN, if its NOTIFY allows (RFC 3461 §4.1). Zero means
	// DefaultDelayWarning; a negative value disables delay reports.
	DelayWarning time.Duration
	// Backoff is the retry schedule: after the n-th failed attempt of a
	// recipient the next one is Backoff[n-1] later, the last entry
	// repeating. Nil or empty means DefaultBackoff(). A wait that would
	// pass the expiry time is shortened to end at it, so the last attempt
	// is made when the message expires.
	Backoff []time.Duration
	// Jitter spreads retries: each wait is multiplied by a random factor in
	// [1-Jitter, 1+Jitter]. Zero means none; values are clamped to [0, 1].
	Jitter float64
	// MinFree is the space, in bytes, that must stay free in the Store for
	// new mail to be accepted (Postfix's queue_minfree): while a Store that
	// is a SpaceReporter has less than MinFree plus the client's MAIL SIZE=
	// free, CheckSender answers MAIL with "452 4.3.1". Zero means
	// DefaultMinFree; a negative value disables the check.
	MinFree int64
	// Concurrency bounds Deliver calls in flight. Zero means
	// DefaultConcurrency.
	Concurrency int
	// PerDomainConcurrency bounds Deliver calls in flight for one recipient
	// domain. Zero means DefaultPerDomainConcurrency.
	PerDomainConcurrency int
	// AttemptTimeout bounds one Deliver call. Zero means
	// DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// PollInterval is the longest the scheduler sleeps before looking for
	// due work again; it only matters when Now is not the wall clock. Zero
	// means DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives one line per delivery attempt and per recipient, and
	// the queue's errors. Nil discards.
	Logger *slog.Logger
	// Observer, when set, receives an event per report queued (see
	// Observer), for metrics; the depth is read with Depth. Nil, the zero
	// value, observes nothing at no cost.
	Observer Observer
	// Now returns the current time; retries, expiry and report dates use
	// it. Nil means time.Now.
	Now func() time.Time

	// loading is held for writing while Run loads the Store into entries,
	// and for reading by the operator methods that change a message not in
	// entries, so such a change is either in what Run lists or made to the
	// entry Run registers, never lost in between.
	loading sync.RWMutex
	mu      sync.Mutex
	entries map[string]*entry
	heap    dueHeap             // entries with work due, by time
	parked  map[string][]*entry // entries waiting for a domain's slot
	running bool
	active  int
	domains map[string]int
	wake    chan struct{}
	// Shared Store (Claimer): the last Claim filled the room, so more may
	// be due; a message leaving memory then sends on reclaim.
	claimFull bool
	reclaim   chan struct{}
	hostname  string
}

func (q *Queue) init() {
	if q.entries == nil {
		q.entries = make(map[string]*entry)
		q.domains = make(map[string]int)
		q.parked = make(map[string][]*entry)
		q.wake = make(chan struct{}, 1)
		q.reclaim = make(chan struct{}, 1)
	}
}

func (q *Queue) logger() *slog.Logger {
	if q.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return q.Logger
}

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

func (q *Queue) maxAge() time.Duration { return orDefault(q.MaxAge, DefaultMaxAge) }

func (q *Queue) delayWarning() time.Duration {
	return orDefault(q.DelayWarning, DefaultDelayWarning)
}

func orDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (q *Queue) reportingMTA() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hostname == "" {
		q.hostname = q.Hostname
		if q.hostname == "" {
			h, err := os.Hostname()
			if err != nil || h == "" {
				h = "localhost"
			}
			q.hostname = h
		}
	}
	return q.hostname
}

// backoff returns the wait after the n-th failed attempt.
func (q *Queue) backoff(n int) time.Duration {
	sched := q.Backoff
	if len(sched) == 0 {
		sched = DefaultBackoff()
	}
	d := sched[min(max(n-1, 0), len(sched)-1)]
	if j := min(max(q.Jitter, 0), 1); j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*mrand.Float64()-1)))
	}
	return d
}

func (q *Queue) signal() {
	q.mu.Lock()
	q.init()
	w := q.wake
	q.mu.Unlock()
	select {
	case w <- struct{}{}:
	default:
	}
}

// newID returns a queue id: the arrival time in hex (so ids sort roughly by
// age) and 48 random bits.
func newID(now time.Time) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	return fmt.Sprintf("%013x-%s", now.UnixMicro(), hex.EncodeToString(b[:])), nil
}

// Enqueue stores a message for delivery to env's recipients and returns its
// queue id. It returns only once the body and envelope are durable in Store,
// so a server may answer 250 to the end of DATA after it (RFC 5321 §6.1:
// the server takes responsibility for the message). Body is read to its
// end; it should have CRLF line endings, as the Connector sends it as is.
// env.ID is kept as ReceivedID; the queue assigns its own id. Recipients
// start Pending and are due at once.
func (q *Queue) Enqueue(ctx context.Context, env *transport.Envelope, body io.Reader) (string, error) {
	if q.Store == nil {
		return "", errors.New("queue: Queue.Store is required")
	}
	if len(env.Recipients) == 0 {
		return "", errors.New("queue: envelope has no recipients")
	}
	now := q.now()
	id, err := newID(now)
	if err != nil {
		return "", err
	}
	m := messageOf(env, now)
	m.ID = id
	if err := q.Store.Create(ctx, m, body); err != nil {
		return "", err
	}
	if cl, shared := q.Store.(Claimer); shared {
		q.holdOrRelease(ctx, cl, m)
	} else {
		q.add(m)
	}
	q.logger().Info("queued", "id", id, "received_id", env.ID, "from", env.From,
		"recipients", len(m.Recipients), "size", m.Size)
	return id, nil
}

// ServeSMTP lets a Queue be the Handler of a transport.Server: it enqueues
// the message and returns nil once it is durable. A storage failure is
// returned as "451 4.3.0" so the client retries (RFC 5321 §4.2.3, RFC 3463
// §3.4), and a full store (an error wrapping ErrInsufficientStorage) as
// "452 4.3.1"; the cause is logged, not sent.
func (q *Queue) ServeSMTP(ctx context.Context, env *transport.Envelope, body io.Reader) error {
	if _, err := q.Enqueue(ctx, env, body); err != nil {
		q.logger().Error("enqueue failed", "received_id", env.ID, "err", err)
		if errors.Is(err, ErrInsufficientStorage) {
			// The store is full (a database whose disk is full): the
			// reply of RFC 5321 §4.2.2 and RFC 3463 §3.4, as at MAIL.
			return &transport.Error{Code: 452, EnhancedCode: transport.EnhancedCode{4, 3, 1},
				Message: "Insufficient system storage", Err: err}
		}
		return &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 3, 0},
			Message: "Requested action aborted: local error in processing", Err: err}
	}
	return nil
}

var (
	_ transport.Handler = (*Queue)(nil)
	_ Deliverer         = (*transport.Connector)(nil)
)

// add registers a stored message with the scheduler.
func (q *Queue) add(m *Message) {
	q.mu.Lock()
	q.init()
	if _, ok := q.entries[m.ID]; !ok {
		e := newEntry(m)
		q.entries[m.ID] = e
		q.refresh(e)
	}
	q.mu.Unlock()
	q.signal()
}

// Run delivers queued messages until ctx is done, then waits for the
// attempts in flight (which see ctx cancelled) and returns ctx.Err(). It
// first loads the Store, so messages accepted before a crash or restart are
// resumed, and finishes any report whose creation a crash interrupted
// before it starts delivering. Records the Store cannot read (ErrCorrupt)
// are logged and skipped. It returns early with an error only if the
// Store cannot be listed at all, ErrRunning if Run is already running, or
// the error of Deliverer's or Local's Validate method, if they have one
// (transport.Connector.Validate): a configuration that cannot deliver
// anything is refused at start, not found by deferring every message.
func (q *Queue) Run(ctx context.Context) error {
	if q.Store == nil || q.Deliverer == nil {
		return errors.New("queue: Store and Deliverer are required")
	}
	for _, d := range []Deliverer{q.Deliverer, q.Local} {
		if v, ok := d.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				return fmt.Errorf("queue: not starting: %w", err)
			}
		}
	}
	q.mu.Lock()
	q.init()
	if q.running {
		q.mu.Unlock()
		return ErrRunning
	}
	q.running = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}()

	cl, shared := q.Store.(Claimer)
	var msgs []*Message
	var err error
	q.loading.Lock()
	if !shared {
		msgs, err = q.Store.List(ctx)
	}
	if errors.Is(err, ErrCorrupt) {
		// One bad record must not keep the rest of the spool from going out.
		q.logger().Error("spool records skipped", "err", err)
	} else if err != nil {
		q.loading.Unlock()
		return err
	}
	q.mu.Lock()
	for _, m := range msgs {
		if _, ok := q.entries[m.ID]; !ok {
			e := newEntry(m)
			q.entries[m.ID] = e
			q.refresh(e)
		}
	}
	q.loading.Unlock()
	var unfinished []*entry
	for _, e := range q.entries {
		if needsFinish(e.msg) {
			unfinished = append(unfinished, e)
		}
	}
	q.mu.Unlock()
	q.logger().Info("queue started", "messages", len(msgs))
	// Reports planned before a crash are created (or found) before any
	// delivery, so a report that was already queued is never queued twice.
	for _, e := range unfinished {
		e.persist.Lock()
		q.finish(ctx, e)
		e.persist.Unlock()
		q.mu.Lock()
		q.refresh(e)
		q.mu.Unlock()
	}

	var wg sync.WaitGroup
	if shared {
		wg.Add(1)
		go func() { defer wg.Done(); q.runLeases(ctx, cl) }()
	}
	poll := orDefault(q.PollInterval, DefaultPollInterval)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := q.dispatch(ctx, &wg)
		wait := poll
		if !next.IsZero() {
			wait = min(max(next.Sub(q.now()), time.Millisecond), poll)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// needsFinish reports whether m has reports to create or can be removed.
func needsFinish(m *Message) bool {
	if m.Done() {
		return true
	}
	for _, r := range m.Recipients {
		if (r.FinalReport != "" && !r.FinalReportDone) || (r.DelayReport != "" && !r.DelayReportDone) {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// envelope builds the envelope of one attempt.
func envelope(m *Message, idx []int) *transport.Envelope {
	env := &transport.Envelope{
		ID:            m.ID,
		From:          m.From,
		RequireTLS:    m.RequireTLS,
		TLSRequiredNo: m.TLSRequiredNo,
		SMTPUTF8:      m.SMTPUTF8,
		Body:          m.BodyType,
		Size:          m.Size,
		Return:        m.Return,
		EnvelopeID:    m.EnvelopeID,
		Helo:          m.Helo,
		AuthIdentity:  m.AuthIdentity,
		ReceivedAt:    m.ReceivedAt,
	}
	if m.ReceivedTLS != nil {
		t := *m.ReceivedTLS
		env.TLS = &t
	}
	for _, i := range idx {
		r := m.Recipients[i]
		env.Recipients = append(env.Recipients, transport.Recipient{
			Address: r.Address, Notify: r.Notify, ORCPT: r.ORCPT,
		})
	}
	return env
}

// attempt runs one job: Deliver, then record every result durably before
// anything else (so a recipient is not delivered twice for one success,
// except when the process dies between the remote's acceptance and the
// write), then create the reports that are due.
func (q *Queue) attempt(ctx context.Context, j job) {
	defer q.endJob(j)
	q.mu.Lock()
	m := j.e.msg
	q.mu.Unlock()
	log := q.logger()

	release, ok := q.acquireSlot(ctx, j)
	if !ok {
		return
	}
	defer release()
	body, err := q.Store.Body(ctx, m.ID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			q.drop(j.e)
			return
		}
		log.Error("opening message body", "id", m.ID, "err", err)
		if ctx.Err() == nil {
			// Count it as a temporary failure so the message is not retried
			// in a tight loop.
			q.record(ctx, j, envelope(m, j.idx), nil, err)
		}
		return
	}
	env := envelope(m, j.idx)
	actx, cancel := context.WithTimeout(ctx, orDefault(q.AttemptTimeout, DefaultAttemptTimeout))
	res, derr := q.delivererFor(j.domain).Deliver(actx, env, body, body.Size())
	cancel()
	body.Close()
	if ctx.Err() != nil {
		// Shutting down: the attempt was cut short by us, not by the remote.
		// Final results are recorded; recipients left deferred by the
		// interruption are not charged an attempt and stay due.
		log.Info("attempt interrupted by shutdown", "id", m.ID, "domain", j.domain, "err", derr)
		if derr != nil {
			return
		}
	}
	q.record(ctx, j, env, res, derr)
}

// record applies the results of one attempt, persists them, logs them and
// then creates the reports they call for.
func (q *Queue) record(ctx context.Context, j job, env *transport.Envelope, res *transport.Result, derr error) {
	outs := outcomes(env, res, derr)
	e := j.e
	e.persist.Lock()
	defer e.persist.Unlock()
	q.mu.Lock()
	if e.gone {
		q.mu.Unlock()
		return
	}
	m := e.msg.Clone()
	q.mu.Unlock()

	now := q.now()
	expiry := m.ReceivedAt.Add(q.maxAge())
	var finals, delays []int
	shutdown := ctx.Err() != nil
	for k, i := range j.idx {
		r, o := m.Recipients[i], outs[k]
		if shutdown && o.state == transport.Deferred {
			outs[k].interrupted = true
			continue
		}
		r.Attempts++
		r.LastAttempt = now
		if o.remoteMTA != "" {
			r.RemoteMTA = o.remoteMTA
		}
		r.TLS, r.Policy = o.tls, o.policy
		r.State = o.state
		switch o.state {
		case transport.Delivered, transport.Relayed:
			r.LastError = nil
		case transport.Failed:
			r.LastError = o.err
		case transport.Deferred:
			r.LastError = o.err
			if !now.Before(expiry) {
				r.State = transport.Failed
				r.Expired = true
			} else {
				r.NextAttempt = now.Add(q.backoff(r.Attempts))
				if r.NextAttempt.After(expiry) {
					r.NextAttempt = expiry
				}
			}
		}
		if r.State.Final() && r.FinalReport == "" && q.reportWanted(m, r, actionOf(r.State)) {
			finals = append(finals, i)
		}
		if r.State == transport.Deferred && r.DelayReport == "" && q.delayWarning() > 0 &&
			now.Sub(m.ReceivedAt) >= q.delayWarning() &&
			q.reportWanted(m, r, ndr.ActionDelayed) {
			delays = append(delays, i)
		}
	}
	// Plan the reports in the same write as the results: report ids are
	// fixed before any report exists, so creating one is idempotent.
	if len(finals) > 0 {
		m.ReportSeq++
		id := fmt.Sprintf("%s.r%d", m.ID, m.ReportSeq)
		for _, i := range finals {
			m.Recipients[i].FinalReport = id
		}
	}
	if len(delays) > 0 {
		m.ReportSeq++
		id := fmt.Sprintf("%s.r%d", m.ID, m.ReportSeq)
		for _, i := range delays {
			m.Recipients[i].DelayReport = id
		}
	}
	var err error
	deleted := false
	if m.Done() {
		// Every recipient is final and no report is due: removing the
		// message records the results (see Store.Delete for how durably).
		err = q.Store.Delete(context.WithoutCancel(ctx), m.ID)
		deleted = err == nil
	} else {
		err = q.Store.Update(context.WithoutCancel(ctx), m)
	}
	q.mu.Lock()
	e.msg = m
	if err != nil {
		e.dirty = true
		e.retryAt = now.Add(time.Minute)
	}
	q.mu.Unlock()
	if errors.Is(err, ErrLeaseLost) {
		// Another node owns the message now, or removed it: its record
		// wins, and this attempt may have delivered a second time.
		q.logger().Warn("lease lost: results not recorded, the message is another node's", "id", m.ID, "err", err)
		q.drop(e)
		return
	}
	if errors.Is(err, ErrNotFound) {
		q.drop(e)
		return
	}
	if err != nil {
		q.logger().Error("recording delivery results", "id", m.ID, "err", err)
	}
	for k, i := range j.idx {
		if !outs[k].interrupted {
			q.logAttempt(m, m.Recipients[i], outs[k])
		}
	}
	if deleted {
		q.drop(e)
		q.logger().Info("message done", "id", m.ID, "recipients", len(m.Recipients))
		return
	}
	if err == nil {
		q.finish(ctx, e)
	}
}

// logAttempt writes the queue's line for one recipient after an attempt,
// with the keys of the Connector's line for the same attempt (queue_id,
// rcpt_domain, mx, tls_version, cipher, verified, policy_level,
// policy_source) and the recipient's state as result; id and policy are
// kept for existing log searches.
func (q *Queue) logAttempt(m *Message, r *Recipient, o outcome) {
	level := slog.LevelInfo
	if r.State == transport.Failed || r.State == transport.Deferred {
		level = slog.LevelWarn
	}
	log := q.logger()
	if log.Enabled(context.Background(), level) {
		log.Log(context.Background(), level, "delivery attempt", attemptAttrs(m, r, o)...)
	}
	if m.Report && r.State == transport.Failed {
		log.Warn("dropping undeliverable report", "id", m.ID, "rcpt", r.Address,
			"reply", r.LastError.Reply())
	}
}

// attemptAttrs are the attributes logAttempt logs.
func attemptAttrs(m *Message, r *Recipient, o outcome) []any {
	attrs := []any{
		"id", m.ID, "queue_id", m.ID, "rcpt", r.Address, "rcpt_domain", domainOf(r.Address), "mx", o.remoteMTA, "next_hop", o.nextHop,
	}
	if o.tls != nil {
		attrs = append(attrs, "tls_version", o.tls.VersionName(), "cipher", o.tls.CipherName(), "verified", o.tls.Verified)
	} else {
		attrs = append(attrs, "tls_version", "none", "cipher", "", "verified", false)
	}
	attrs = append(attrs, "policy", o.policy, "policy_level", o.level, "policy_source", o.source,
		"result", r.State.String(), "attempt", r.Attempts)
	if r.LastError != nil {
		attrs = append(attrs, "reply", r.LastError.Reply())
		if r.LastError.TLSFailure != "" {
			attrs = append(attrs, "tls_failure", r.LastError.TLSFailure)
		}
	}
	if r.State == transport.Deferred {
		attrs = append(attrs, "next_retry", r.NextAttempt.UTC().Format(time.RFC3339))
	}
	if r.Expired {
		attrs = append(attrs, "expired", true)
	}
	return attrs
}

func actionOf(s transport.Status) ndr.Action {
	switch s {
	case transport.Delivered:
		return ndr.ActionDelivered
	case transport.Relayed:
		return ndr.ActionRelayed
	case transport.Failed:
		return ndr.ActionFailed
	}
	return ndr.ActionDelayed
}

// drop forgets a message removed from the store.
func (q *Queue) drop(e *entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dropLocked(e)
}

// dropLocked is drop with q.mu held.
func (q *Queue) dropLocked(e *entry) {
	e.gone = true
	q.refresh(e)
	if cur, ok := q.entries[e.msg.ID]; ok && cur == e {
		delete(q.entries, e.msg.ID)
		if q.claimFull {
			q.claimFull = false
			select {
			case q.reclaim <- struct{}{}:
			default:
			}
		}
	}
}

// finish writes a pending state, creates the planned reports and removes
// the message once it is done. The caller holds e.persist. Failures are
// logged and retried a minute later.
func (q *Queue) finish(ctx context.Context, e *entry) {
	ctx = context.WithoutCancel(ctx)
	log := q.logger()
	q.mu.Lock()
	if e.gone {
		q.mu.Unlock()
		return
	}
	m := e.msg.Clone()
	dirty := e.dirty
	q.mu.Unlock()
	fail := func(err error) {
		q.mu.Lock()
		e.retryAt = q.now().Add(time.Minute)
		q.mu.Unlock()
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeaseLost) {
			q.drop(e)
			return
		}
		log.Error("finishing message", "id", m.ID, "err", err)
	}
	if dirty {
		if err := q.Store.Update(ctx, m); err != nil {
			fail(err)
			return
		}
		q.mu.Lock()
		e.dirty = false
		q.mu.Unlock()
	}
	changed := false
	var created []*Message
	// Reports already stored are scheduled even if this run fails half-way.
	defer func() {
		for _, r := range created {
			q.add(r)
		}
	}()
	for {
		id, delay := nextReport(m)
		if id == "" {
			break
		}
		r, err := q.sendReport(ctx, m, id, delay)
		if err != nil {
			fail(err)
			return
		}
		if r != nil {
			created = append(created, r)
		}
		for _, r := range m.Recipients {
			if r.FinalReport == id {
				r.FinalReportDone = true
			}
			if r.DelayReport == id {
				r.DelayReportDone = true
			}
		}
		changed = true
	}
	// A message that is done is deleted without recording the reports as
	// queued first: if the delete is lost in a crash, Run finds the reports
	// in the store and does not queue them again.
	if changed && !m.Done() {
		if err := q.Store.Update(ctx, m); err != nil {
			q.mu.Lock()
			e.msg, e.dirty = m, true
			q.mu.Unlock()
			fail(err)
			return
		}
		q.mu.Lock()
		e.msg = m
		q.mu.Unlock()
	}
	if m.Done() {
		if err := q.Store.Delete(ctx, m.ID); err != nil && !errors.Is(err, ErrNotFound) {
			fail(err)
			return
		}
		q.drop(e)
		log.Info("message done", "id", m.ID, "recipients", len(m.Recipients))
	}
}

// nextReport returns a planned report not yet queued.
func nextReport(m *Message) (id string, delay bool) {
	for _, r := range m.Recipients {
		if r.FinalReport != "" && !r.FinalReportDone {
			return r.FinalReport, false
		}
		if r.DelayReport != "" && !r.DelayReportDone {
			return r.DelayReport, true
		}
	}
	return "", false
}

// CountStates counts the recipients of msgs by state as Counts does: every
// State and Held are present, and the pending and deferred recipients of
// held messages are counted under Held.
func CountStates(msgs []*Message) map[transport.Status]int {
	c := make(map[transport.Status]int, len(storedStates)+1)
	for _, s := range storedStates {
		c[s] = 0
	}
	c[transport.Held] = 0
	for _, m := range msgs {
		for _, r := range m.Recipients {
			if m.Held && !r.State.Final() {
				c[transport.Held]++
			} else {
				c[r.State]++
			}
		}
	}
	return c
}

func sortByAge(msgs []*Message) {
	slices.SortFunc(msgs, func(a, b *Message) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// messageOf is the record of a message with envelope env, accepted at now
// if env does not say when: every recipient pending and due now.
func messageOf(env *transport.Envelope, now time.Time) *Message {
	m := &Message{
		ReceivedID:    env.ID,
		From:          env.From,
		RequireTLS:    env.RequireTLS,
		TLSRequiredNo: env.TLSRequiredNo,
		SMTPUTF8:      env.SMTPUTF8,
		BodyType:      env.Body,
		Return:        env.Return,
		EnvelopeID:    env.EnvelopeID,
		Helo:          env.Helo,
		AuthIdentity:  env.AuthIdentity,
		ReceivedAt:    env.ReceivedAt,
	}
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = now
	}
	if env.ClientAddr != nil {
		m.ClientAddr = env.ClientAddr.String()
	}
	if env.TLS != nil {
		t := *env.TLS
		m.ReceivedTLS = &t
	}
	for _, r := range env.Recipients {
		m.Recipients = append(m.Recipients, &Recipient{
			Address:     r.Address,
			Notify:      r.Notify,
			ORCPT:       r.ORCPT,
			State:       transport.Pending,
			NextAttempt: now,
		})
	}
	return m
}
