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

// TestAcquireSlot: with a limit of 2, two nodes get two slots between
// them and no third; a released slot is taken again at once by the same
// node, and by another once it was idle for slotIdle; a slot its holder
// stops renewing (the node died) is free once its lease passes; Renew
// keeps a slot past its lease.
func TestAcquireSlot(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	var nodes []*Store
	for _, n := range []string{"a", "b"} {
		st, err := Open(ctx, dsn, Options{Node: n, Lease: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		nodes = append(nodes, st)
	}
	a, b := nodes[0], nodes[1]
	take := func(st *Store) (func(), bool) {
		t.Helper()
		rel, ok, err := st.AcquireSlot(ctx, "example.net", 2)
		if err != nil {
			t.Fatal(err)
		}
		return rel, ok
	}
	relA, ok1 := take(a)
	_, ok2 := take(b)
	if !ok1 || !ok2 {
		t.Fatalf("first two slots: %v %v", ok1, ok2)
	}
	if _, ok := take(a); ok {
		t.Fatal("a third slot was given with a limit of 2")
	}
	if _, ok, _ := b.AcquireSlot(ctx, "other.example", 2); !ok {
		t.Fatal("another domain's slots are separate")
	}
	relA()
	relA, ok := take(a) // the releasing node takes it back without a statement
	if !ok {
		t.Fatal("a did not get back the slot it released")
	}
	relA()
	// Another node gets it once a has kept it idle for slotIdle.
	start := time.Now()
	var relB func()
	waitFor(t, "b to get the slot a gave back", 5*time.Second, func() bool {
		var ok bool
		relB, ok = take(b)
		return ok
	})
	if time.Since(start) > 2*slotIdle+time.Second {
		t.Errorf("b waited %v for a slot idle on a (slotIdle %v)", time.Since(start), slotIdle)
	}
	relB()
	// a's slot, renewed, outlives its lease; b's (not renewed: b
	// "died") frees itself.
	waitFor(t, "a to get a slot again", 5*time.Second, func() bool {
		var ok bool
		relA, ok = take(a)
		return ok
	})
	defer relA()
	for range 4 {
		time.Sleep(600 * time.Millisecond)
		if _, err := a.Renew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := take(a); !ok {
		t.Fatal("the slot of a node that stopped renewing was not freed after its lease")
	}
	if _, ok := take(b); ok {
		t.Fatal("a renewed slot was taken over")
	}
}

// TestDomainLimitAcrossNodes: two nodes, each with PerDomainConcurrency
// 2, deliver 24 messages to one domain through a sink that counts the
// attempts in flight to it across both nodes. With the shared slots the
// count never passes 2 and every message is delivered once; the control
// (the same Stores hidden behind an interface without queue.DomainSlots,
// so each node limits only itself) goes past 2, which shows the test can
// see the difference.
func TestDomainLimitAcrossNodes(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			dsn := pgtest.DB(t)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			var mu sync.Mutex
			active, peak := 0, 0
			delivered := map[string]int{}
			d := queue.DeliverFunc(func(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
				mu.Lock()
				active++
				peak = max(peak, active)
				mu.Unlock()
				time.Sleep(150 * time.Millisecond)
				mu.Lock()
				active--
				for _, r := range env.Recipients {
					delivered[r.Address]++
				}
				mu.Unlock()
				return acceptAll(env), nil
			})
			var queues []*queue.Queue
			for _, node := range []string{"a", "b"} {
				st, err := Open(ctx, dsn, Options{Node: node, Lease: 10 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				var store queue.Store = st
				if !shared {
					store = struct{ sharedStore }{st}
				}
				q := &queue.Queue{Store: store, Deliverer: d, Hostname: node, PerDomainConcurrency: 2, Concurrency: 8,
					PollInterval: 50 * time.Millisecond}
				queues = append(queues, q)
				wg.Add(1)
				go func() { defer wg.Done(); q.Run(ctx) }()
			}
			const n = 24
			for i := range n {
				env := &transport.Envelope{From: "s@example.org", Recipients: []transport.Recipient{{Address: fmt.Sprintf("r%d@busy.example", i)}}}
				if _, err := queues[i%2].Enqueue(ctx, env, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, fmt.Sprintf("%d deliveries", n), 30*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(delivered) == n
			})
			mu.Lock()
			defer mu.Unlock()
			t.Logf("peak attempts in flight to busy.example across both nodes: %d", peak)
			for a, c := range delivered {
				if c != 1 {
					t.Errorf("%s delivered %d times", a, c)
				}
			}
			if shared && peak > 2 {
				t.Errorf("%d attempts at once to one domain, limit 2 across the nodes", peak)
			}
			if !shared && peak <= 2 {
				t.Errorf("control: without shared slots the peak was %d; the test cannot tell the difference", peak)
			}
		})
	}
}
