package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/mailtls/mailtls/transport/queue"
)

var _ queue.Claimer = (*Store)(nil)

// LeaseDuration returns Options.Lease (queue.Claimer).
func (s *Store) LeaseDuration() time.Duration { return s.leaseFor }

// Claim leases to this node up to n messages that are due and that no
// node holds (no lease, or an expired one), raising their epochs, and
// returns their records (queue.Claimer). Rows another node is claiming at
// the same moment are skipped (FOR UPDATE SKIP LOCKED), never waited for
// or taken twice.
func (s *Store) Claim(ctx context.Context, n int) ([]*queue.Message, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE queue_message q
   SET lease_owner = $1, lease_until = now() + make_interval(secs => $2), lease_epoch = q.lease_epoch + 1
 WHERE q.id IN (
   SELECT id FROM queue_message
    WHERE due IS NOT NULL AND due <= now() AND (lease_until IS NULL OR lease_until < now())
    ORDER BY due LIMIT $3
    FOR UPDATE SKIP LOCKED)
RETURNING q.id, q.record, q.lease_epoch`, s.node, s.leaseFor.Seconds(), n)
	if err != nil {
		return nil, fmt.Errorf("pgstore: claiming: %w", err)
	}
	defer rows.Close()
	var msgs []*queue.Message
	for rows.Next() {
		var id string
		var rec []byte
		var epoch int64
		if err := rows.Scan(&id, &rec, &epoch); err != nil {
			return nil, fmt.Errorf("pgstore: claiming: %w", err)
		}
		s.mu.Lock()
		s.leases[id] = epoch
		delete(s.fenced, id)
		s.mu.Unlock()
		m, err := queue.DecodeMessage(rec)
		if err != nil {
			// Held by this node, so that nobody loops on it; an operator
			// sees it in List's error.
			continue
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: claiming: %w", err)
	}
	return msgs, nil
}

// Renew extends every lease this node holds by Options.Lease (and its
// delivery slots, AcquireSlot), and returns
// the ids whose lease another node has taken over (the epoch moved on) or
// whose message is gone; this node forgets them (queue.Claimer).
func (s *Store) Renew(ctx context.Context) ([]string, error) {
	if err := s.renewSlots(ctx); err != nil {
		return nil, err
	}
	s.pruneIDs(ctx)
	s.mu.Lock()
	ids := make([]string, 0, len(s.leases))
	epochs := make([]int64, 0, len(s.leases))
	for id, e := range s.leases {
		ids, epochs = append(ids, id), append(epochs, e)
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil, nil
	}
	return s.renew(ctx, ids, epochs)
}

// renew extends the leases of ids at epochs, as Renew read them from
// s.leases. One this node released since (Release keeps the epoch and
// clears the owner) must not be extended: that would hold the message
// for a lease period with nobody delivering it, so the owner is checked
// too.
func (s *Store) renew(ctx context.Context, ids []string, epochs []int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE queue_message q SET lease_until = now() + make_interval(secs => $1)
  FROM unnest($2::text[], $3::bigint[]) AS l(id, epoch)
 WHERE q.id = l.id AND q.lease_epoch = l.epoch AND q.lease_owner = $4
RETURNING q.id`, s.leaseFor.Seconds(), ids, epochs, s.node)
	if err != nil {
		return nil, fmt.Errorf("pgstore: renewing leases: %w", err)
	}
	defer rows.Close()
	kept := make(map[string]bool, len(ids))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("pgstore: renewing leases: %w", err)
		}
		kept[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: renewing leases: %w", err)
	}
	var lost []string
	s.mu.Lock()
	for k, id := range ids {
		if !kept[id] && s.leases[id] == epochs[k] {
			delete(s.leases, id)
			s.fenced[id] = epochs[k]
			lost = append(lost, id)
		}
	}
	s.mu.Unlock()
	return lost, nil
}

// Release ends this node's lease on id, if it still holds it; any node
// may then claim the message when it is due (queue.Claimer).
func (s *Store) Release(ctx context.Context, id string) error {
	epoch, ok := s.lease(id)
	if !ok {
		return nil
	}
	s.forget(id)
	// A message released while due (a node holding more than it can
	// deliver) is announced to idle nodes in the same statement.
	_, err := s.pool.Exec(ctx, `
WITH r AS (
  UPDATE queue_message SET lease_owner = NULL, lease_until = NULL
   WHERE id = $1 AND lease_epoch = $2
  RETURNING due)
SELECT pg_notify($3, '') FROM r WHERE r.due <= now()`, id, epoch, notifyChannel)
	if err != nil {
		return fmt.Errorf("pgstore: releasing %s: %w", id, err)
	}
	return nil
}

// pruneIDs forgets, at most every pruneEvery and 10,000 at a time, the ids
// created more than Options.IDRetention ago whose messages are gone (see
// Create).
// Failures are left to the next try.
func (s *Store) pruneIDs(ctx context.Context) {
	now := time.Now() // with its monotonic reading: a clock step does not stall pruning
	last := s.pruned.Load()
	if (last != nil && now.Sub(*last) < pruneEvery) || !s.pruned.CompareAndSwap(last, &now) {
		return
	}
	s.pool.Exec(ctx, `
DELETE FROM queue_id WHERE id IN (
  SELECT i.id FROM queue_id i
   WHERE i.created < now() - make_interval(secs => $1)
     AND NOT EXISTS (SELECT 1 FROM queue_message m WHERE m.id = i.id)
   LIMIT 10000)`, s.idRetention.Seconds())
}
