package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

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
func (s *Store) AcquireSlot(ctx context.Context, domain string, limit int) (func(), bool, error) {
	if limit <= 0 {
		return nil, false, nil
	}
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
		return func() { s.releaseSlot(domain, slot, holder) }, true, nil
	}
	return nil, false, nil
}

func (s *Store) releaseSlot(domain string, slot int, holder string) {
	s.mu.Lock()
	delete(s.slots, holder)
	s.mu.Unlock()
	// Best effort: a slot not deleted (database away) frees itself when
	// its until passes.
	s.pool.Exec(context.Background(), `DELETE FROM queue_slot WHERE domain = $1 AND slot = $2 AND holder = $3`, domain, slot, holder)
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
