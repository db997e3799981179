package pgstore

import (
	"context"
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

// BenchmarkSharedQueue measures messages enqueued and delivered (a
// discarding Deliverer) per second through Queues on one PostgreSQL
// database, with 1, 2 and 3 nodes (Queues, each with its own Store and
// connection pool, in this process), against one Queue on a DirStore in
// the same run; 8 goroutines enqueue 1 KiB messages, spread over the
// nodes. It also reports what each message costs the database: commits,
// rows written and WAL bytes (pg_stat_database and pg_current_wal_lsn
// before and after).
//
//	go test ./transport/queue/pgstore -run '^$' -bench SharedQueue -benchtime 2000x -count 3
func BenchmarkSharedQueue(b *testing.B) {
	for _, nodes := range []int{0, 1, 2, 3} { // 0: DirStore
		name := fmt.Sprintf("postgres-%d-nodes", nodes)
		if nodes == 0 {
			name = "dirstore"
		}
		b.Run(name, func(b *testing.B) { benchNodes(b, nodes) })
	}
}

func benchNodes(b *testing.B, nodes int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var delivered atomic.Int64
	deliver := queue.DeliverFunc(func(_ context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		delivered.Add(int64(len(env.Recipients)))
		return acceptAll(env), nil
	})
	var queues []*queue.Queue
	var stores []*Store
	var dsn string
	if nodes == 0 {
		st, err := queue.OpenDirStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		queues = append(queues, &queue.Queue{Store: st, Deliverer: deliver, Hostname: "relay.test"})
	} else {
		dsn = pgtest.DB(b)
		for i := range nodes {
			st, err := Open(ctx, dsn, Options{Node: fmt.Sprintf("n%d", i)})
			if err != nil {
				b.Fatal(err)
			}
			stores = append(stores, st)
			queues = append(queues, &queue.Queue{Store: st, Deliverer: deliver, Hostname: "relay.test", PollInterval: 100 * time.Millisecond})
		}
	}
	var wg sync.WaitGroup
	for _, q := range queues {
		wg.Add(1)
		go func() { defer wg.Done(); q.Run(ctx) }()
	}
	before := dbStats(b, dsn) // includes the schema's creation
	body := "Subject: bench\r\n\r\n" + strings.Repeat("x", 1<<10) + "\r\n"
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var ewg sync.WaitGroup
	for w := range 8 {
		ewg.Add(1)
		go func() {
			defer ewg.Done()
			for next.Add(1) <= int64(b.N) {
				env := &transport.Envelope{From: "a@example.org", Recipients: []transport.Recipient{{Address: "b@example.net"}}}
				if _, err := queues[w%len(queues)].Enqueue(ctx, env, strings.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	ewg.Wait()
	for delivered.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	// Delivered is not done: wait until every message is removed.
	for _, q := range queues {
		for {
			msgs, err := q.Store.List(ctx)
			if err == nil && len(msgs) == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if nodes > 0 {
			break // one database: one List covers every node
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	cancel()
	wg.Wait()
	// Closed connections have flushed their statistics.
	for _, st := range stores {
		st.Close()
	}
	if nodes > 0 {
		after := dbStats(b, dsn)
		n := float64(b.N)
		b.ReportMetric(float64(after.commits-before.commits)/n, "commits/msg")
		b.ReportMetric(float64(after.rows-before.rows)/n, "rows/msg")
		b.ReportMetric(float64(after.wal-before.wal)/n, "WAL-bytes/msg")
	}
}

type pgStats struct{ commits, rows, wal int64 }

func dbStats(b *testing.B, dsn string) pgStats {
	if dsn == "" {
		return pgStats{}
	}
	st, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var s pgStats
	err = st.pool.QueryRow(context.Background(), `
SELECT xact_commit, tup_inserted + tup_updated + tup_deleted, pg_current_wal_lsn() - '0/0'::pg_lsn
  FROM pg_stat_database WHERE datname = current_database()`).Scan(&s.commits, &s.rows, &s.wal)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCommit measures one durable commit (an INSERT in its own
// transaction, synchronous_commit on) from one connection: the latency
// every Create and Delete pays at least once.
func BenchmarkCommit(b *testing.B) {
	st, err := Open(context.Background(), pgtest.DB(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.pool.Exec(ctx, `CREATE TABLE bench_commit (n bigint)`); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := st.pool.Exec(ctx, `INSERT INTO bench_commit VALUES ($1)`, i); err != nil {
			b.Fatal(err)
		}
	}
}
