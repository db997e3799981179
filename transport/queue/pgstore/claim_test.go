package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

func msg(id string) *queue.Message {
	return &queue.Message{ID: id, From: "a@example.org", ReceivedAt: time.Now(),
		Recipients: []*queue.Recipient{{Address: "b@example.net"}}}
}

// openNode opens a Store named node on dsn with the given lease, closed
// when the test ends.
func openNode(t *testing.T, dsn, node string, lease time.Duration) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn, Options{Node: node, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestLeaseTakeover: a message its creating node stops renewing is
// claimed by another node once the lease has expired, with a higher
// epoch; the first node's Update and Delete are then refused with
// ErrLeaseLost and change nothing, and its Renew reports the loss.
func TestLeaseTakeover(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, b := openNode(t, dsn, "a", time.Second), openNode(t, dsn, "b", time.Minute)
	if err := a.Create(ctx, msg("m1"), strings.NewReader("body\r\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Claim(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("b claimed %d (%v) while a holds the lease", len(got), err)
	}
	time.Sleep(1500 * time.Millisecond) // a is "paused": no renewal
	got, err := b.Claim(ctx, 10)
	if err != nil || len(got) != 1 || got[0].ID != "m1" {
		t.Fatalf("b claimed %v, %v; want m1 after the lease expired", got, err)
	}
	// The paused node comes back: its writes are fenced off.
	m := msg("m1")
	m.Recipients[0].State = transport.Delivered
	if err := a.Update(ctx, m); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("a's Update after takeover = %v, want ErrLeaseLost", err)
	}
	if rec, err := b.Get(ctx, "m1"); err != nil || rec.Recipients[0].State == transport.Delivered {
		t.Fatalf("a's refused Update changed the record: %+v %v", rec, err)
	}
	if err := a.Create(ctx, msg("m2"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	// b takes m2 over too (a is paused again), then a renews: it learns
	// it lost m2, and its Delete is refused.
	time.Sleep(1500 * time.Millisecond)
	if got, err := b.Claim(ctx, 10); err != nil || len(got) != 1 {
		t.Fatalf("b claimed %d, %v", len(got), err)
	}
	lost, err := a.Renew(ctx)
	if err != nil || len(lost) != 1 || lost[0] != "m2" {
		t.Fatalf("a's Renew = %v, %v; want m2 lost", lost, err)
	}
	if err := a.Delete(ctx, "m2"); err == nil {
		t.Fatal("a's Delete of a message it lost succeeded")
	}
	if _, err := b.Get(ctx, "m2"); err != nil {
		t.Fatalf("m2 gone after a's refused Delete: %v", err)
	}
	// b's own writes go through.
	if err := b.Update(ctx, m); err != nil {
		t.Fatalf("b's Update = %v", err)
	}
}

// slowDeliverer records every delivery and fails the test if two
// deliveries of one recipient overlap or repeat. The first attempt of
// each message is deferred, so that retries are claimed by any node.
type slowDeliverer struct {
	t        *testing.T
	node     string
	mu       *sync.Mutex
	active   map[string]string // rcpt → node delivering it
	done     map[string]string // rcpt → node that delivered it
	tried    map[string]bool
	perNode  map[string]*atomic.Int64
	failures *atomic.Int64
}

func (d slowDeliverer) Deliver(ctx context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
	res := &transport.Result{}
	for _, r := range env.Recipients {
		d.mu.Lock()
		if n, ok := d.active[r.Address]; ok {
			d.failures.Add(1)
			d.t.Errorf("%s delivered by %s while %s delivers it", r.Address, d.node, n)
		}
		if n, ok := d.done[r.Address]; ok {
			d.failures.Add(1)
			d.t.Errorf("%s delivered again by %s (first by %s)", r.Address, d.node, n)
		}
		first := !d.tried[r.Address]
		d.tried[r.Address] = true
		d.active[r.Address] = d.node
		d.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		d.mu.Lock()
		delete(d.active, r.Address)
		st := transport.Delivered
		if first {
			st = transport.Deferred
		} else {
			d.done[r.Address] = d.node
			d.perNode[d.node].Add(1)
		}
		d.mu.Unlock()
		code := 250
		if st == transport.Deferred {
			code = 451
		}
		res.Recipients = append(res.Recipients, transport.RecipientResult{Recipient: r, Status: st,
			Reply: &transport.Error{Code: code, EnhancedCode: transport.EnhancedCode{code / 100, 0, 0}, Message: "test"}})
	}
	return res, nil
}

// TestQueuesShareAStore: two Queues (two nodes) on one database; every
// message is enqueued on node a, each first attempt defers with a retry
// later than the lease period, so a releases the message and the retries
// are claimed by whichever node comes first. Every recipient is delivered
// exactly once, never by two nodes at the same time, and both nodes
// deliver.
func TestQueuesShareAStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.DB(t)
	var mu sync.Mutex
	shared := slowDeliverer{t: t, mu: &mu, active: map[string]string{}, done: map[string]string{}, tried: map[string]bool{},
		perNode: map[string]*atomic.Int64{"a": {}, "b": {}}, failures: &atomic.Int64{}}
	var queues []*queue.Queue
	var wg sync.WaitGroup
	rctx, stop := context.WithCancel(ctx)
	for _, node := range []string{"a", "b"} {
		st, err := Open(ctx, dsn, Options{Node: node, Lease: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		d := shared
		d.node = node
		q := &queue.Queue{Store: st, Deliverer: d, Hostname: "relay.test", PollInterval: 50 * time.Millisecond,
			Backoff: []time.Duration{3 * time.Second}}
		queues = append(queues, q)
		wg.Add(1)
		go func() { defer wg.Done(); q.Run(rctx) }()
	}
	const n = 40
	for i := range n {
		env := &transport.Envelope{From: "a@example.org", Recipients: []transport.Recipient{{Address: fmt.Sprintf("r%d@example.net", i)}}}
		if _, err := queues[0].Enqueue(ctx, env, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%d deliveries", n), 45*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(shared.done) == n
	})
	stop()
	wg.Wait()
	t.Logf("delivered by a: %d, by b: %d", shared.perNode["a"].Load(), shared.perNode["b"].Load())
	if shared.failures.Load() != 0 {
		t.Fatalf("%d overlapping or repeated deliveries", shared.failures.Load())
	}
	if shared.perNode["a"].Load() == 0 || shared.perNode["b"].Load() == 0 {
		t.Errorf("one node delivered everything: a %d, b %d", shared.perNode["a"].Load(), shared.perNode["b"].Load())
	}
}

// TestReportNotCreatedTwiceAfterTakeover: a node dies after creating the
// DSN its record planned (m.r1) and before recording it as created. Its
// leases expire; another node claims the report, delivers it and deletes
// it; then a third node claims the message, whose record still says the
// report is to be created. The report must not be created again: its id
// was used once (Create refuses it with ErrExists even after the Delete),
// so the sender gets one DSN, not two.
func TestReportNotCreatedTwiceAfterTakeover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := pgtest.DB(t)
	dead := openNode(t, dsn, "dead", time.Second)
	m := &queue.Message{ID: "m", From: "sender@example.org", ReceivedAt: time.Now(), ReportSeq: 1,
		Recipients: []*queue.Recipient{
			{Address: "bad@example.net", State: transport.Failed, Attempts: 1, FinalReport: "m.r1",
				LastError: &queue.LastError{Code: 550, EnhancedCode: "5.1.1", Message: "no such user"}},
			// Retried in an hour: the planned report must not wait for it.
			{Address: "later@example.net", State: transport.Deferred, Attempts: 1, NextAttempt: time.Now().Add(time.Hour)},
		}}
	if err := dead.Create(ctx, m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	report := &queue.Message{ID: "m.r1", Report: true, ReceivedAt: time.Now(),
		Recipients: []*queue.Recipient{{Address: "sender@example.org", NextAttempt: time.Now()}}}
	if err := dead.Create(ctx, report, strings.NewReader("Subject: dsn\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	// "dead" stops here. Once its leases expire, node b delivers the
	// report (it claims both; it only deletes the report, as its delivery
	// would, and releases the message).
	time.Sleep(1500 * time.Millisecond)
	b := openNode(t, dsn, "b", time.Minute)
	got, err := b.Claim(ctx, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("b claimed %d (%v), want the message and its report", len(got), err)
	}
	if err := b.Delete(ctx, "m.r1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, report, strings.NewReader("again\r\n")); !errors.Is(err, queue.ErrExists) {
		t.Fatalf("creating the delivered report's id again = %v, want ErrExists", err)
	}
	// Node c claims the message and finishes it.
	c := openNode(t, dsn, "c", time.Minute)
	rec := &recorder{}
	q := &queue.Queue{Store: c, Deliverer: rec, Hostname: "c.test", PollInterval: 50 * time.Millisecond}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); q.Run(rctx) }()
	waitFor(t, "the report marked as created", 10*time.Second, func() bool {
		m, err := c.Get(ctx, "m")
		return err == nil && m.Recipients[0].FinalReportDone
	})
	time.Sleep(300 * time.Millisecond) // a report created again would be claimed and delivered by now
	stop()
	<-done
	if d := rec.delivered(); len(d) != 0 {
		t.Fatalf("node c delivered %v: the report was created a second time", d)
	}
	if _, err := c.Get(ctx, "m.r1"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("m.r1 is back in the queue: %v", err)
	}
}

// TestIDRetention: a deleted message's id is refused by Create until it
// is older than Options.IDRetention and a Renew has pruned it, which a
// Renew does at most every pruneEvery.
func TestIDRetention(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, pgtest.DB(t), Options{Node: "a", IDRetention: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Create(ctx, msg("x"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, msg("x"), strings.NewReader("x\r\n")); !errors.Is(err, queue.ErrExists) {
		t.Fatalf("Create of a deleted id within the retention = %v, want ErrExists", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := st.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, msg("x"), strings.NewReader("x\r\n")); err != nil {
		t.Fatalf("Create of an id past the retention = %v", err)
	}
	// Pruning runs at most every pruneEvery: a Renew soon after the last
	// pruning leaves an id past the retention in place.
	if err := st.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := st.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, msg("x"), strings.NewReader("x\r\n")); !errors.Is(err, queue.ErrExists) {
		t.Fatalf("Create after a Renew within pruneEvery of the last pruning = %v, want ErrExists", err)
	}
}

// TestRenewAfterRelease: a renewal that read this node's leases before it
// released a message must not extend that lease (the message would stay
// unclaimable for a lease period, delivered by nobody): another node
// claims it at once. Seen as a 30 s stall in BenchmarkSharedQueue, one
// run in three, before the owner was checked.
func TestRenewAfterRelease(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, b := openNode(t, dsn, "a", time.Minute), openNode(t, dsn, "b", time.Minute)
	if err := a.Create(ctx, msg("m"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	epoch, _ := a.lease("m") // what Renew has read when Release runs
	if err := a.Release(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	lost, err := a.renew(ctx, []string{"m"}, []int64{epoch})
	if err != nil || len(lost) != 0 {
		t.Fatalf("renew after release = %v, %v; want nothing lost (this node let it go)", lost, err)
	}
	got, err := b.Claim(ctx, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("b claimed %d (%v) after a released m: a's stale renewal holds it", len(got), err)
	}
}
