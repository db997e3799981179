package pgstore

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// recorder is a Deliverer that records which messages it delivered; with
// block set it holds every attempt until its context ends.
type recorder struct {
	mu    sync.Mutex
	ids   []string
	block bool
}

func (r *recorder) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	if r.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	r.mu.Lock()
	r.ids = append(r.ids, env.ID)
	r.mu.Unlock()
	return acceptAll(env), nil
}

// acceptAll is the result of an attempt the next hop accepted for every
// recipient.
func acceptAll(env *transport.Envelope) *transport.Result {
	res := &transport.Result{}
	for _, rc := range env.Recipients {
		res.Recipients = append(res.Recipients, transport.RecipientResult{Recipient: rc, Status: transport.Delivered,
			Reply: &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "ok"}})
	}
	return res
}

func (r *recorder) delivered() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// sharedStore is a Store and Claimer without queue.Waker, for the control
// run: a node that can only poll.
type sharedStore interface {
	queue.Store
	queue.Claimer
}

// TestIdleNodeWokenByNotify: node a holds as many messages as it may
// (Concurrency 1: two) and is stuck delivering; the messages it accepts
// beyond that are released at once and announced with NOTIFY, and idle
// node b, whose due-index scan runs only every 20 s (PollInterval 1 min,
// lease 1 min), claims and delivers them within seconds. The control: the
// same node b without LISTEN (its Store hidden behind an interface that
// is not a queue.Waker) delivers nothing in that time.
func TestIdleNodeWokenByNotify(t *testing.T) {
	for _, listen := range []bool{true, false} {
		t.Run(fmt.Sprintf("listen=%v", listen), func(t *testing.T) {
			dsn := pgtest.DB(t)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			run := func(node string, d queue.Deliverer, wrap bool) *queue.Queue {
				st, err := Open(ctx, dsn, Options{Node: node, Lease: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				var store queue.Store = st
				if wrap {
					store = struct{ sharedStore }{st}
				}
				q := &queue.Queue{Store: store, Deliverer: d, Hostname: node, Concurrency: 1, PollInterval: time.Minute}
				wg.Add(1)
				go func() { defer wg.Done(); q.Run(ctx) }()
				return q
			}
			busy, idle := &recorder{block: true}, &recorder{}
			a := run("a", busy, false)
			run("b", idle, !listen)
			time.Sleep(500 * time.Millisecond) // both have made their first scan
			var ids []string
			for i := range 5 {
				env := &transport.Envelope{From: "s@example.org", Recipients: []transport.Recipient{{Address: fmt.Sprintf("r%d@example.net", i)}}}
				id, err := a.Enqueue(ctx, env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			wait := 10 * time.Second // far below b's 20 s scan, with room for a loaded machine
			if !listen {
				wait = 2 * time.Second
			}
			deadline := time.Now().Add(wait)
			for len(idle.delivered()) < 3 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			got := idle.delivered()
			if !listen {
				if len(got) != 0 {
					t.Fatalf("without LISTEN, b delivered %v before its scan", got)
				}
				return
			}
			if len(got) != 3 {
				t.Fatalf("b delivered %d of the 3 messages a released: %v", len(got), got)
			}
			for _, id := range got {
				if id == ids[0] || id == ids[1] {
					t.Errorf("b delivered %s, which a holds", id)
				}
			}
			if d := a.Depth(); d.Messages != 2 {
				t.Errorf("a holds %d messages, want 2", d.Messages)
			}
		})
	}
}
