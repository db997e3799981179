package queue

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is returned by a shared Store's Update or Delete when this
// node's lease on the message was taken over by another node (it was
// paused or cut off longer than the lease): the other node now owns the
// message, and this node's copy must be dropped without delivering. When
// the message was removed meanwhile (by the node that took it over and
// finished it, or by an operator), the error matches ErrNotFound too.
var ErrLeaseLost = errors.New("queue: lease on message taken over by another node")

// ErrLeased is returned by a shared Store's Update from a node that does
// not hold the message (an operator's RetryNow, Hold or Release) while
// another node holds it: that node is delivering it or about to, and would
// overwrite the change with its result. The operator tries again; the
// Queue's RetryDomain and RetryAll skip such messages (they are being
// attempted already).
var ErrLeased = errors.New("queue: message is held by another node; try again")

// ValidID reports whether id is a well-formed message id: ASCII letters,
// digits, '.', '-' and '_', not starting with '.', at most 200 bytes. A
// Store may rely on it (the file store uses ids as file names).
func ValidID(id string) bool { return validID(id) }

// EncodeMessage checks m and renders it as the spool record (JSON), the
// inverse of DecodeMessage. Stores other than the file store keep this
// record as it is.
func EncodeMessage(m *Message) ([]byte, error) { return encodeMessage(m) }

// Claimer is implemented by a Store shared by several Queues, one per node
// (pgstore.Store): each message is leased to one node at a time, and a
// Queue whose Store is a Claimer works only on the messages it holds.
//
// Such a Queue does not load the Store at start. It claims due messages
// (Claim), up to twice its Concurrency in memory; the messages it creates
// (Enqueue, reports) are leased to it by Create, and released at once by
// Enqueue when it already holds that many, for an idle node to claim (see
// Waker). Every LeaseDuration/3, or
// PollInterval if shorter, it renews its leases (Renew), forgets the
// messages another node took over, releases those not due within a lease
// period (Release: any node may claim them when they are due), and claims
// more. A node that dies stops renewing: its leases expire and other nodes
// claim the messages. A node that was paused past its lease finds its
// Update and Delete refused with ErrLeaseLost (the lease carries a fencing
// epoch) and drops the message without recording anything.
//
// A report is planned in its message's record before it is created, with
// an id fixed there, and its creation is recorded after. A node that dies
// in between leaves both to be claimed apart: the report may be delivered
// and deleted before another node claims the message and creates the
// report again. A Claimer's Create therefore refuses with ErrExists an id
// that was ever created, for longer than MaxAge after its creation, even
// once the message is deleted; and a message whose planned report is not
// created yet is due at once, held or not.
type Claimer interface {
	// Claim leases to this node up to n messages that are due and not
	// leased to another node (or whose lease expired), raising each
	// one's epoch, and returns their records.
	Claim(ctx context.Context, n int) ([]*Message, error)
	// Renew extends every lease this node holds by LeaseDuration and
	// returns the ids of the messages another node has taken over.
	Renew(ctx context.Context) (lost []string, err error)
	// Release ends this node's lease on id.
	Release(ctx context.Context, id string) error
	// LeaseDuration is how long a lease lasts without renewal.
	LeaseDuration() time.Duration
}

// Waker is an optional interface of a Claimer whose Store can tell a node
// that a message nobody holds has become due (one released by a node with
// more than it can hold, or made due by an operator on another node):
// Wakeups delivers a value then, and the Queue claims at once instead of
// at its next poll. Wake-ups may be merged or lost; a lost one only delays
// the work to the next poll (the due-time scan every PollInterval, or
// LeaseDuration/3 if shorter). pgstore.Store implements it with
// PostgreSQL's LISTEN/NOTIFY.
type Waker interface {
	Wakeups() <-chan struct{}
}

// DomainSlots is an optional interface of a Claimer that makes
// Queue.PerDomainConcurrency hold across all the nodes sharing the Store,
// not per node. Before each delivery attempt the Queue takes a slot for
// the recipients' domain; when all are taken it leaves the recipients due
// a moment later without counting an attempt. A slot is renewed with the
// node's leases (Renew), so the slot of a node that dies is free once its
// lease expires.
type DomainSlots interface {
	// AcquireSlot takes one of limit delivery slots for domain, shared by
	// every node, and returns the function that gives it back; ok is
	// false, with a nil release, when all limit slots are taken.
	AcquireSlot(ctx context.Context, domain string, limit int) (release func(), ok bool, err error)
}

// slotWait is how long recipients whose domain had no free slot on any
// node wait before they are tried again.
const slotWait = 500 * time.Millisecond

// acquireSlot takes a cluster-wide slot for j's domain when the Store
// shares them (DomainSlots). When none is free, or the Store cannot say,
// j's recipients are left due slotWait later, no attempt counted, and ok
// is false.
func (q *Queue) acquireSlot(ctx context.Context, j job) (release func(), ok bool) {
	ds, shared := q.Store.(DomainSlots)
	if !shared {
		return func() {}, true
	}
	release, ok, err := ds.AcquireSlot(ctx, j.domain, orDefault(q.PerDomainConcurrency, DefaultPerDomainConcurrency))
	if err != nil && ctx.Err() == nil {
		q.logger().Error("taking a delivery slot", "domain", j.domain, "err", err)
	}
	if err == nil && ok {
		return release, true
	}
	later := q.now().Add(slotWait)
	q.mu.Lock()
	m := j.e.msg.Clone()
	for _, i := range j.idx {
		if r := m.Recipients[i]; !r.State.Final() && r.NextAttempt.Before(later) {
			r.NextAttempt = later // in memory only: no attempt was made
		}
	}
	j.e.msg = m
	q.mu.Unlock()
	return nil, false
}

// runLeases keeps this node's share of a shared store (see Claimer) until
// ctx is done.
func (q *Queue) runLeases(ctx context.Context, cl Claimer) {
	lease := cl.LeaseDuration()
	t := time.NewTicker(min(orDefault(q.PollInterval, DefaultPollInterval), lease/3))
	defer t.Stop()
	var wake <-chan struct{}
	if w, ok := cl.(Waker); ok {
		wake = w.Wakeups()
	}
	q.mu.Lock()
	q.init()
	reclaim := q.reclaim
	q.mu.Unlock()
	q.syncLeases(ctx, cl, lease)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.syncLeases(ctx, cl, lease)
			continue
		case <-wake:
		case <-reclaim:
		}
		q.mu.Lock()
		room := q.claimRoom() - len(q.entries)
		q.mu.Unlock()
		q.claim(ctx, cl, room)
	}
}

// claimRoom is how many messages a node holds in memory at most when its
// Store is a Claimer: twice Concurrency, so that the next attempts are
// ready when slots free up. q.mu is held.
func (q *Queue) claimRoom() int { return 2 * orDefault(q.Concurrency, DefaultConcurrency) }

// claim claims up to room due messages and schedules them.
func (q *Queue) claim(ctx context.Context, cl Claimer, room int) {
	if room <= 0 || ctx.Err() != nil {
		return
	}
	msgs, err := cl.Claim(ctx, room)
	if err != nil {
		if ctx.Err() == nil {
			q.logger().Error("claiming messages", "err", err)
		}
		return
	}
	for _, m := range msgs {
		q.add(m)
	}
	// A full claim may have left due messages behind: claim again as soon
	// as one leaves memory, not at the next poll.
	q.mu.Lock()
	q.claimFull = len(msgs) == room
	q.mu.Unlock()
}

// holdOrRelease schedules a message this node just created in a shared
// Store (it holds its lease) or, when the node already holds as many as
// it may, releases it so that an idle node claims it (see Waker).
func (q *Queue) holdOrRelease(ctx context.Context, cl Claimer, m *Message) {
	q.mu.Lock()
	q.init()
	full := len(q.entries) >= q.claimRoom()
	q.mu.Unlock()
	if !full {
		q.add(m)
		return
	}
	if err := cl.Release(context.WithoutCancel(ctx), m.ID); err != nil {
		// Still leased to this node: it is claimed when the lease expires.
		q.logger().Error("releasing a new message for other nodes", "id", m.ID, "err", err)
	}
}

// syncLeases renews, releases and claims once (see Claimer).
func (q *Queue) syncLeases(ctx context.Context, cl Claimer, lease time.Duration) {
	log := q.logger()
	lost, err := cl.Renew(ctx)
	if err != nil && ctx.Err() == nil {
		log.Error("renewing leases", "err", err)
	}
	for _, id := range lost {
		q.mu.Lock()
		e := q.entries[id]
		q.mu.Unlock()
		if e != nil {
			log.Warn("lease lost: the message is another node's now", "id", id)
			e.persist.Lock() // a record being written is refused (fenced)
			q.drop(e)
			e.persist.Unlock()
		}
		// The store forgets the fenced lease; the release itself changes
		// nothing (the epoch moved on).
		cl.Release(context.WithoutCancel(ctx), id)
	}
	horizon := q.now().Add(lease)
	// Idle: nothing in flight or being written, and nothing due within a
	// lease period. A message parked on a busy domain (blocked) is due
	// now, only waiting for a slot, so it is kept.
	idleNow := func(e *entry) bool {
		return !e.gone && !e.busy && len(e.inflight) == 0 && !e.dirty && len(e.blocked) == 0 &&
			!needsFinish(e.msg) && (e.due.IsZero() || e.due.After(horizon))
	}
	var idle []*entry
	q.mu.Lock()
	for _, e := range q.entries {
		if idleNow(e) {
			idle = append(idle, e)
		}
	}
	room := q.claimRoom() - len(q.entries) + len(idle)
	q.mu.Unlock()
	for _, e := range idle {
		// Checked again under the locks: the scheduler may have started an
		// attempt since, and a message released while in flight would be
		// claimed and delivered by another node as well.
		e.persist.Lock() // no record is being written
		q.mu.Lock()
		still := idleNow(e)
		if still {
			q.dropLocked(e)
		}
		q.mu.Unlock()
		e.persist.Unlock()
		if !still {
			room--
			continue
		}
		if err := cl.Release(context.WithoutCancel(ctx), e.msg.ID); err != nil && !errors.Is(err, ErrLeaseLost) {
			log.Error("releasing lease", "id", e.msg.ID, "err", err)
		}
	}
	q.claim(ctx, cl, room)
}
