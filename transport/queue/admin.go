package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/transport"
)

// Operator introspection. These methods read and change the Store, so they
// work whether or not Run is running (a command-line tool can open the
// spool with the queue stopped).

// List returns every queued message, oldest first, with the state, attempt
// count, next attempt and last error of each recipient. Unreadable records
// are reported by an error wrapping ErrCorrupt, returned with the others.
func (q *Queue) List(ctx context.Context) ([]*Message, error) {
	msgs, err := q.Store.List(ctx)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	sortByAge(msgs)
	return msgs, err
}

// Get returns one queued message, or an error wrapping ErrNotFound.
func (q *Queue) Get(ctx context.Context, id string) (*Message, error) {
	return q.Store.Get(ctx, id)
}

// Counts returns how many recipients of queued messages are in each state;
// every stored transport.Status is present in the map, and Held, under which the pending and
// deferred recipients of held messages are counted (not under their own
// state). Unreadable records are not counted
// and are reported as by List. Delivered, relayed and failed
// recipients are counted only while their message is still queued (some
// other recipient pending, or a report still to be queued).
func (q *Queue) Counts(ctx context.Context) (map[transport.Status]int, error) {
	msgs, err := q.Store.List(ctx)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	return CountStates(msgs), err
}

// RetryNow makes every pending or deferred recipient of message id due now
// (Postfix's "postqueue -i"). It does not reset attempts or the message's
// age, and does not release a held message (see Release). It returns an
// error wrapping ErrNotFound if there is no such message.
func (q *Queue) RetryNow(ctx context.Context, id string) error {
	now := q.now()
	err := q.modify(ctx, id, func(m *Message) {
		for _, r := range m.Recipients {
			if !r.State.Final() {
				r.NextAttempt = now
			}
		}
	})
	if err == nil {
		q.signal()
	}
	return err
}

// RetryDomain makes due now the pending and deferred recipients whose
// domain is domain (compared without case and trailing dot), in every
// message (Postfix's "postqueue -s site"). It returns how many messages
// it changed; held messages are changed but stay held.
func (q *Queue) RetryDomain(ctx context.Context, domain string) (int, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	return q.retryWhere(ctx, func(addr string) bool { return domainOf(addr) == domain })
}

// RetryAll makes every pending and deferred recipient due now (Postfix's
// "postqueue -f"). It returns how many messages it changed; held messages
// are changed but stay held.
func (q *Queue) RetryAll(ctx context.Context) (int, error) {
	return q.retryWhere(ctx, func(string) bool { return true })
}

func (q *Queue) retryWhere(ctx context.Context, match func(addr string) bool) (int, error) {
	msgs, err := q.Store.List(ctx)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return 0, err
	}
	now := q.now()
	n := 0
	for _, m := range msgs {
		if !slices.ContainsFunc(m.Recipients, func(r *Recipient) bool { return !r.State.Final() && match(r.Address) }) {
			continue
		}
		err := q.modify(ctx, m.ID, func(m *Message) {
			for _, r := range m.Recipients {
				if !r.State.Final() && match(r.Address) {
					r.NextAttempt = now
				}
			}
		})
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrLeased):
			continue // delivered or removed since the listing, or being attempted by another node
		case err != nil:
			return n, err
		}
		n++
	}
	if n > 0 {
		q.signal()
	}
	return n, nil
}

// Hold stops delivery attempts for message id until Release (Postfix's
// "postsuper -h"): the mark is stored in the message's record, so it
// survives restarts. An attempt already in flight is not interrupted, and
// its result is recorded. Reports already planned are still queued, and
// the message still expires by MaxAge at its first attempt after Release.
// Holding a held message changes nothing. It returns an error wrapping
// ErrNotFound if there is no such message.
func (q *Queue) Hold(ctx context.Context, id string) error {
	now := q.now()
	err := q.modify(ctx, id, func(m *Message) {
		if !m.Held {
			m.Held, m.HeldAt = true, now
		}
	})
	if err == nil {
		q.logger().Info("message held by operator", "id", id)
	}
	return err
}

// Release undoes Hold (Postfix's "postsuper -H"): the recipients are
// attempted again at their NextAttempt, at once if it has passed. It
// returns an error wrapping ErrNotFound if there is no such message.
func (q *Queue) Release(ctx context.Context, id string) error {
	err := q.modify(ctx, id, func(m *Message) {
		m.Held, m.HeldAt = false, time.Time{}
	})
	if err == nil {
		q.signal()
		q.logger().Info("message released by operator", "id", id)
	}
	return err
}

// Remove deletes message id from the queue without any report (Postfix's
// "postsuper -d"). An attempt already in flight for it is not interrupted,
// but its result is discarded. It returns an error wrapping ErrNotFound if
// there is no such message.
func (q *Queue) Remove(ctx context.Context, id string) error {
	e, done := q.lookup(id)
	defer done()
	if e != nil {
		e.persist.Lock()
		defer e.persist.Unlock()
	}
	if err := q.Store.Delete(ctx, id); err != nil {
		return err
	}
	if e != nil {
		q.drop(e)
	}
	q.logger().Info("message removed by operator", "id", id)
	return nil
}

// lookup returns the scheduler's entry for id, or nil if it has none. When
// it returns nil, Run cannot be loading the Store until the caller calls
// done, so a change the caller makes to the Store is either read by Run's
// List or made before it, never overwritten by a copy Run listed earlier.
// The caller must call done once it has finished with the Store.
func (q *Queue) lookup(id string) (e *entry, done func()) {
	q.loading.RLock()
	q.mu.Lock()
	q.init()
	e = q.entries[id]
	q.mu.Unlock()
	if e != nil {
		q.loading.RUnlock()
		return e, func() {}
	}
	return nil, q.loading.RUnlock
}

// modify applies f to message id, in memory and in the Store.
func (q *Queue) modify(ctx context.Context, id string, f func(*Message)) error {
	e, done := q.lookup(id)
	defer done()
	if e == nil {
		m, err := q.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		f(m)
		return q.Store.Update(ctx, m)
	}
	e.persist.Lock()
	defer e.persist.Unlock()
	q.mu.Lock()
	if e.gone {
		q.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	m := e.msg.Clone()
	q.mu.Unlock()
	f(m)
	if err := q.Store.Update(ctx, m); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeaseLost) {
			q.drop(e) // gone, or another node's now: its record wins
		}
		return err
	}
	q.mu.Lock()
	e.msg = m
	q.refresh(e)
	q.mu.Unlock()
	return nil
}
