package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/transport/queue"
)

var _ queue.DomainSlots = (*Store)(nil)

// AcquireSlot takes the lowest free one of limit delivery slots for domain
// in queue_slot (queue.DomainSlots): a row per slot taken, free when
// absent or its until has passed. Two nodes that pick the same free slot
// at once conflict on the primary key: the second one's conditional
// ON CONFLICT update sees the first one's live row and takes nothing, and
// it looks again (a few times) for another free slot. The slot lasts
// Options.Lease and is renewed by Renew with the node's leases; the
// release function deletes it, if this acquisition still holds it.
//
// A released slot stays this node's for slotIdle, and the next attempt
// for the domain on this node takes it without a statement: under load a
// node keeps the slots it uses, instead of a commit to take and one to
// give back per delivery.
func (s *Store) AcquireSlot(ctx context.Context, domain string, limit int) (func(), bool, error) {
	if limit <= 0 {
		return nil, false, nil
	}
	s.mu.Lock()
	for list := s.idleSlots[domain]; len(list) > 0; list = s.idleSlots[domain] {
		h := list[len(list)-1]
		s.idleSlots[domain] = list[:len(list)-1]
		if h.slot < limit {
			s.mu.Unlock()
			return func() { s.parkSlot(h) }, true, nil
		}
		s.expired = append(s.expired, h) // the limit went down
	}
	s.mu.Unlock()
	var b [8]byte
	rand.Read(b[:])
	holder := s.node + "/" + hex.EncodeToString(b[:])
	for range 3 {
		var slot int
		err := s.pool.QueryRow(ctx, `
INSERT INTO queue_slot (domain, slot, holder, until)
SELECT $1, n, $3, now() + make_interval(secs => $4)
  FROM generate_series(0, $2 - 1) AS n
 WHERE NOT EXISTS (SELECT 1 FROM queue_slot t WHERE t.domain = $1 AND t.slot = n AND t.until > now())
 ORDER BY n LIMIT 1
ON CONFLICT (domain, slot) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
 WHERE queue_slot.until <= now()
RETURNING slot`, domain, limit, holder, s.leaseFor.Seconds()).Scan(&slot)
		if errors.Is(err, pgx.ErrNoRows) {
			// All taken, or lost a race for the one we saw free: look again.
			var free bool
			if err := s.pool.QueryRow(ctx, `
SELECT count(*) < $2 FROM queue_slot WHERE domain = $1 AND until > now()`, domain, limit).Scan(&free); err != nil {
				return nil, false, fmt.Errorf("pgstore: counting slots of %s: %w", domain, err)
			}
			if !free {
				return nil, false, nil
			}
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("pgstore: taking a slot for %s: %w", domain, err)
		}
		s.mu.Lock()
		s.slots[holder] = true
		s.mu.Unlock()
		h := heldSlot{domain: domain, slot: slot, holder: holder}
		return func() { s.parkSlot(h) }, true, nil
	}
	return nil, false, nil
}

// slotIdle is how long a node keeps a slot it no longer uses for the next
// attempt to the same domain before it gives it back.
const slotIdle = 250 * time.Millisecond

// heldSlot is a delivery slot this node holds (its row in queue_slot).
type heldSlot struct {
	domain string
	slot   int
	holder string
	since  time.Time // when it was last given back (idle)
}

// parkSlot keeps a released slot for the next attempt to its domain, and
// gives it back slotIdle later if none came.
func (s *Store) parkSlot(h heldSlot) {
	h.since = time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idleSlots[h.domain] = append(s.idleSlots[h.domain], h)
	if s.slotTimer == nil {
		s.slotTimer = time.AfterFunc(slotIdle, s.freeIdleSlots)
	}
}

// freeIdleSlots gives back the slots idle for slotIdle (and those over a
// lowered limit), and looks again later while some are idle.
func (s *Store) freeIdleSlots() {
	s.mu.Lock()
	s.slotTimer = nil
	free := s.expired
	s.expired = nil
	cutoff := time.Now().Add(-slotIdle)
	pending := false
	for d, list := range s.idleSlots {
		kept := list[:0]
		for _, h := range list {
			if h.since.After(cutoff) {
				kept = append(kept, h)
			} else {
				free = append(free, h)
			}
		}
		if len(kept) == 0 {
			delete(s.idleSlots, d)
		} else {
			s.idleSlots[d], pending = kept, true
		}
	}
	if pending && !s.closed {
		s.slotTimer = time.AfterFunc(slotIdle, s.freeIdleSlots)
	}
	holders := make([]string, len(free))
	for i, h := range free {
		holders[i] = h.holder
		delete(s.slots, h.holder)
	}
	s.mu.Unlock()
	if len(holders) > 0 {
		// Best effort: a slot not deleted (database away) frees itself
		// when its until passes.
		s.pool.Exec(context.Background(), `DELETE FROM queue_slot WHERE holder = ANY($1)`, holders)
	}
}

// dropIdleSlots gives back every idle slot at once (Close).
func (s *Store) dropIdleSlots() {
	s.mu.Lock()
	s.closed = true
	if s.slotTimer != nil {
		s.slotTimer.Stop()
		s.slotTimer = nil
	}
	for d, list := range s.idleSlots {
		for i := range list {
			list[i].since = time.Time{}
		}
		s.idleSlots[d] = list
	}
	s.mu.Unlock()
	s.freeIdleSlots()
}

// renewSlots extends the slots this node holds.
func (s *Store) renewSlots(ctx context.Context) error {
	s.mu.Lock()
	holders := make([]string, 0, len(s.slots))
	for h := range s.slots {
		holders = append(holders, h)
	}
	s.mu.Unlock()
	if len(holders) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE queue_slot SET until = now() + make_interval(secs => $1) WHERE holder = ANY($2)`,
		s.leaseFor.Seconds(), holders); err != nil {
		return fmt.Errorf("pgstore: renewing delivery slots: %w", err)
	}
	return nil
}
