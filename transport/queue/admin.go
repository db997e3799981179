package queue

import (
	"context"
	"errors"
	"fmt"
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
// every State is present in the map. Unreadable records are not counted
// and are reported as by List. Delivered, relayed and failed
// recipients are counted only while their message is still queued (some
// other recipient pending, or a report still to be queued).
func (q *Queue) Counts(ctx context.Context) (map[State]int, error) {
	msgs, err := q.Store.List(ctx)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	return countStates(msgs), err
}

// RetryNow makes every pending or deferred recipient of message id due now
// (Postfix's "postqueue -i"). It does not reset attempts or the message's
// age. It returns an error wrapping ErrNotFound if there is no such message.
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
		if errors.Is(err, ErrNotFound) {
			q.drop(e)
		}
		return err
	}
	q.mu.Lock()
	e.msg = m
	q.refresh(e)
	q.mu.Unlock()
	return nil
}
