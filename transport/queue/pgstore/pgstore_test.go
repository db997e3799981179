package pgstore

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/internal/storetest"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

func TestMain(m *testing.M) {
	if os.Getenv(pgCrashEnvMode) != "" {
		crashChild() // a node of TestClusterCrash; runs until killed
	}
	os.Exit(pgtest.Main(m))
}

// waitFor polls cond until it holds, failing t with what after limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// open returns a Store on a fresh database, closed at the end of t.
func open(t *testing.T, opt Options) *Store {
	t.Helper()
	st, err := Open(context.Background(), pgtest.DB(t), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestContract runs the Store contract shared with DirStore.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store { return open(t, Options{}) })
}

// TestSchemaVersioned: Open creates the schema once and records its
// version; a second Open (another node) migrates nothing; a database with
// a newer schema is refused.
func TestSchemaVersioned(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	for range 2 {
		st, err := Open(ctx, dsn, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := st.pool.QueryRow(ctx, `SELECT version FROM mailtls_schema`).Scan(&v); err != nil || v != len(migrations) {
			t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
		}
		var rows int
		st.pool.QueryRow(ctx, `SELECT count(*) FROM mailtls_schema`).Scan(&rows)
		if rows != 1 {
			t.Fatalf("%d rows in mailtls_schema", rows)
		}
		st.Close()
	}
	st, _ := Open(ctx, dsn, Options{})
	st.pool.Exec(ctx, `UPDATE mailtls_schema SET version = 999`)
	st.Close()
	if _, err := Open(ctx, dsn, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open on a newer schema = %v", err)
	}
}

// TestUnreachable: a database that does not answer is a clear error at
// Open, naming the cause.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=2", Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the database") {
		t.Fatalf("Open = %v", err)
	}
	if _, err := Open(ctx, "postgres://[bad", Options{}); err == nil || !strings.Contains(err.Error(), "bad connection string") {
		t.Fatalf("Open(bad URL) = %v", err)
	}
}

// TestCorruptRecord: a row whose record does not decode is named in an
// ErrCorrupt error from List, returned with the good ones, and left in
// place; Get refuses it.
func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	st := open(t, Options{})
	good := &queue.Message{ID: "good", Recipients: []*queue.Recipient{{Address: "b@example.net", State: transport.Pending}}}
	if err := st.Create(ctx, good, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.pool.Exec(ctx, `INSERT INTO queue_message (id, record, size, received_at) VALUES ('bad', '{"id":"bad","recipients":[]}', 0, now())`); err != nil {
		t.Fatal(err)
	}
	msgs, err := st.List(ctx)
	if !errors.Is(err, queue.ErrCorrupt) || !strings.Contains(err.Error(), "bad") {
		t.Errorf("List = %v, want ErrCorrupt naming the record", err)
	}
	if len(msgs) != 1 || msgs[0].ID != "good" {
		t.Errorf("List returned %v", msgs)
	}
	if _, err := st.Get(ctx, "bad"); !errors.Is(err, queue.ErrCorrupt) {
		t.Errorf("Get(bad) = %v", err)
	}
}

// TestDue: when a record makes its message claimable (the due column).
func TestDue(t *testing.T) {
	t1 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	rc := func(st transport.Status, next time.Time) *queue.Recipient {
		return &queue.Recipient{Address: "r@example.net", State: st, NextAttempt: next}
	}
	planned := rc(transport.Failed, time.Time{})
	planned.FinalReport = "m.r1"
	reported := rc(transport.Failed, time.Time{})
	reported.FinalReport, reported.FinalReportDone = "m.r1", true
	now := time.Time{} // due at once
	for _, tt := range []struct {
		name  string
		held  bool
		rcpts []*queue.Recipient
		want  *time.Time
	}{
		{"waiting: the earliest next attempt", false, []*queue.Recipient{rc(transport.Deferred, t2), rc(transport.Pending, t1)}, &t1},
		{"held", true, []*queue.Recipient{rc(transport.Deferred, t1)}, nil},
		{"a report to create, others waiting", false, []*queue.Recipient{planned, rc(transport.Deferred, t2)}, &now},
		{"a report to create, held", true, []*queue.Recipient{planned, rc(transport.Deferred, t2)}, &now},
		{"report created, others waiting", false, []*queue.Recipient{reported, rc(transport.Deferred, t2)}, &t2},
		{"all final, nothing left: removal due", false, []*queue.Recipient{reported, rc(transport.Delivered, time.Time{})}, &now},
	} {
		got := due(&queue.Message{ID: "m", Held: tt.held, Recipients: tt.rcpts})
		if (got == nil) != (tt.want == nil) || (got != nil && !got.Equal(*tt.want)) {
			t.Errorf("%s: due = %v, want %v", tt.name, got, tt.want)
		}
	}
}
