package pgstore

import (
	"context"
	"sync"
	"time"

	"github.com/mailtls/mailtls/transport/queue"
)

var _ queue.Waker = (*Store)(nil)

// listener holds the LISTEN connection behind Wakeups.
type listener struct {
	once sync.Once
	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

// Wakeups implements queue.Waker: on first use it takes one connection out
// of the pool and LISTENs on it for the NOTIFY that Release (of a message
// due now) and an operator's Update making a message due send; each
// notification, and each (re)connection (a notification may have been
// missed while it was down), delivers a value. The connection is
// reopened, once a second at most, after the database went away, and
// closed by Close.
func (s *Store) Wakeups() <-chan struct{} {
	l := &s.listen
	l.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		l.wake, l.stop, l.done = make(chan struct{}, 1), cancel, make(chan struct{})
		go s.listenLoop(ctx)
	})
	return l.wake
}

func (s *Store) listenLoop(ctx context.Context) {
	defer close(s.listen.done)
	for ctx.Err() == nil {
		s.listenOnce(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// listenOnce LISTENs on a connection of its own until it fails or ctx is
// done.
func (s *Store) listenOnce(ctx context.Context) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return
	}
	conn := pc.Hijack() // LISTEN state must not go back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return
	}
	s.wakeup()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return
		}
		s.wakeup()
	}
}

func (s *Store) wakeup() {
	select {
	case s.listen.wake <- struct{}{}:
	default:
	}
}

// stopListening ends the LISTEN connection, if Wakeups started one.
func (s *Store) stopListening() {
	l := &s.listen
	l.once.Do(func() {}) // none started: none will be
	if l.stop != nil {
		l.stop()
		<-l.done
	}
}
