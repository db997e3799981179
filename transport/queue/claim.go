package queue

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is returned by a shared Store's Update or Delete when this
// node's lease on the message was taken over by another node (it was
// paused or cut off longer than the lease): the other node now owns the
// message, and this node's copy must be dropped without delivering.
var ErrLeaseLost = errors.New("queue: lease on message taken over by another node")

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
// (Enqueue, reports) are leased to it by Create. Every LeaseDuration/3, or
// PollInterval if shorter, it renews its leases (Renew), forgets the
// messages another node took over, releases those not due within a lease
// period (Release: any node may claim them when they are due), and claims
// more. A node that dies stops renewing: its leases expire and other nodes
// claim the messages. A node that was paused past its lease finds its
// Update and Delete refused with ErrLeaseLost (the lease carries a fencing
// epoch) and drops the message without recording anything.
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

// runLeases keeps this node's share of a shared store (see Claimer) until
// ctx is done.
func (q *Queue) runLeases(ctx context.Context, cl Claimer) {
	lease := cl.LeaseDuration()
	t := time.NewTicker(min(orDefault(q.PollInterval, DefaultPollInterval), lease/3))
	defer t.Stop()
	for {
		q.syncLeases(ctx, cl, lease)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
	var idle []*entry
	q.mu.Lock()
	for _, e := range q.entries {
		if !e.busy && len(e.inflight) == 0 && !e.dirty && !needsFinish(e.msg) && (e.due.IsZero() || e.due.After(horizon)) {
			idle = append(idle, e)
		}
	}
	room := 2*orDefault(q.Concurrency, DefaultConcurrency) - len(q.entries) + len(idle)
	q.mu.Unlock()
	for _, e := range idle {
		e.persist.Lock() // no record is being written
		q.drop(e)
		e.persist.Unlock()
		if err := cl.Release(context.WithoutCancel(ctx), e.msg.ID); err != nil && !errors.Is(err, ErrLeaseLost) {
			log.Error("releasing lease", "id", e.msg.ID, "err", err)
		}
	}
	if room <= 0 || ctx.Err() != nil {
		return
	}
	msgs, err := cl.Claim(ctx, room)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("claiming messages", "err", err)
		}
		return
	}
	for _, m := range msgs {
		q.add(m)
	}
}
