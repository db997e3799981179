package pgstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// TestOperatorAcrossNodes: operator calls made on one node act on the
// whole cluster's queue. Counts and List see a message another node holds;
// Hold made on node b while node a holds the message is refused with
// ErrLeased (a would overwrite it with its result) and changes nothing;
// once a released it, b's Hold is stored and a, claiming again, does not
// deliver it; Release on b and RetryNow make it due, and Remove on b
// deletes it.
func TestOperatorAcrossNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a := openLease(t, dsn, "a")
	b := openLease(t, dsn, "b")
	qa := &queue.Queue{Store: a, Deliverer: &recorder{}}
	qb := &queue.Queue{Store: b, Deliverer: &recorder{}}
	env := &transport.Envelope{From: "s@example.org", Recipients: []transport.Recipient{{Address: "r@example.net"}}}
	id, err := qa.Enqueue(ctx, env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := qb.Counts(ctx); err != nil || c[transport.Pending] != 1 {
		t.Fatalf("Counts on b = %v, %v", c, err)
	}
	if l, err := qb.List(ctx); err != nil || len(l) != 1 || l[0].ID != id {
		t.Fatalf("List on b = %v, %v", l, err)
	}
	// a holds it (it created it): b's Hold is refused, nothing changed.
	if err := qb.Hold(ctx, id); !errors.Is(err, queue.ErrLeased) || !strings.Contains(err.Error(), "node a") {
		t.Fatalf("Hold on b while a holds it = %v, want ErrLeased naming a", err)
	}
	if n, err := qb.RetryAll(ctx); err != nil || n != 0 {
		t.Fatalf("RetryAll on b while a holds the only message = %d, %v; want 0, nil (skipped)", n, err)
	}
	if m, _ := b.Get(ctx, id); m.Held {
		t.Fatal("the refused Hold was stored")
	}
	if err := a.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := qb.Hold(ctx, id); err != nil {
		t.Fatalf("Hold on b after a released it = %v", err)
	}
	if got, err := a.Claim(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("a claimed a held message: %v, %v", got, err)
	}
	if err := qb.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := qb.RetryNow(ctx, id); err != nil {
		t.Fatal(err)
	}
	got, err := a.Claim(ctx, 10)
	if err != nil || len(got) != 1 || got[0].Held {
		t.Fatalf("a's claim after Release and RetryNow on b = %v, %v", got, err)
	}
	// Remove works whoever holds it; the holder's next write finds it gone.
	if err := qb.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(ctx, got[0]); !errors.Is(err, queue.ErrNotFound) || !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("a.Update after b removed it = %v, want ErrNotFound and ErrLeaseLost", err)
	}
}

func openLease(t *testing.T, dsn, node string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn, Options{Node: node, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
