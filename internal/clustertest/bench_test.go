package clustertest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/internal/stats"
)

// TestClusterThroughput measures end-to-end messages per second (SMTP in
// from concurrent clients, queued, delivered over TLS to the sink) with
// one relay on DirStore and with 1, 2 and 3 relays on one PostgreSQL
// queue, in the same run, the configurations in a different order each
// round; it prints each configuration's rate as a ratio to DirStore of the
// same round (median [min, max] over the rounds) and, for one PostgreSQL
// relay, the database's cost per message. It runs only when asked:
//
//	MAILTLS_CLUSTER_BENCH=1 go test -run TestClusterThroughput -v -timeout 30m ./internal/clustertest/
//
// MAILTLS_CLUSTER_ROUNDS (default 3), MAILTLS_CLUSTER_MESSAGES (default
// 1000) and MAILTLS_CLUSTER_CLIENTS (default 16) change the run.
func TestClusterThroughput(t *testing.T) {
	if os.Getenv("MAILTLS_CLUSTER_BENCH") != "1" {
		t.Skip("set MAILTLS_CLUSTER_BENCH=1 to run the cluster benchmark")
	}
	rounds := envInt("MAILTLS_CLUSTER_ROUNDS", 3)
	msgs := envInt("MAILTLS_CLUSTER_MESSAGES", 1000)
	clients := envInt("MAILTLS_CLUSTER_CLIENTS", 16)
	configs := []struct {
		name  string
		nodes int
		pg    bool
	}{{"DirStore, 1 relay", 1, false}, {"PostgreSQL, 1 relay", 1, true}, {"PostgreSQL, 2 relays", 2, true}, {"PostgreSQL, 3 relays", 3, true}}
	rates := make([][]float64, len(configs)) // [config][round]
	var cost string
	for round := range rounds {
		for k := range configs {
			i := (k + round) % len(configs)
			c := configs[i]
			dsn := ""
			if c.pg {
				dsn = pgtest.DB(t)
			}
			var before dbStats
			if c.pg && c.nodes == 1 && cost == "" {
				before = readStats(t, dsn)
			}
			rate := throughput(t, dsn, c.nodes, msgs, clients)
			rates[i] = append(rates[i], rate)
			t.Logf("round %d: %s: %.0f msgs/s", round+1, c.name, rate)
			if c.pg && c.nodes == 1 && cost == "" {
				cost = readStats(t, dsn).minus(before).per(msgs)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages per run, %d SMTP clients, %d rounds\n", msgs, clients, rounds)
	fmt.Fprintf(&b, "| configuration | msgs/s, median [min, max] | ratio to DirStore, median [min, max] |\n|---|---|---|\n")
	for i, c := range configs {
		var ratio []float64
		for r := range rates[i] {
			ratio = append(ratio, rates[i][r]/rates[0][r])
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.name, stats.Format(rates[i], "%.0f"), stats.Format(ratio, "%.2f"))
	}
	b.WriteString("database cost per message, one relay (statements counted by pg_stat_database, WAL by pg_stat_wal; includes the relay's polling while it ran):\n" + cost)
	lat := commitLatency(t, pgtest.DB(t))
	b.WriteString(lat)
	t.Log("\n" + b.String())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// throughput starts nodes relays (on dsn, or DirStore for ""), sends msgs
// messages of one recipient from clients connections at a time, spread
// over the relays, and returns messages per second from the first MAIL to
// the sink's last delivery. The relays are stopped before it returns.
func throughput(t *testing.T, dsn string, nodes, msgs, clients int) float64 {
	w := newWorld(t, dsn)
	for range nodes {
		w.addNode().start()
	}
	defer func() {
		for _, n := range w.nodes {
			n.stop()
		}
	}()
	s := &sender{w: w}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			n := w.nodes[c%len(w.nodes)]
			for {
				i := next.Add(1)
				if i > int64(msgs) {
					return
				}
				tag := fmt.Sprintf("b%d", i)
				for try := 0; s.send(n, "sender-"+tag+"@origin.test", []string{"ok-" + tag + "@a.test"}) != nil; try++ {
					if try == 5 {
						t.Errorf("message %d refused 5 times", i)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := w.sink.WaitMessages(ctx, msgs); err != nil {
		t.Fatalf("%d relays: %d of %d delivered: %v", nodes, len(w.sink.Messages()), msgs, err)
	}
	return float64(msgs) / time.Since(start).Seconds()
}

// dbStats are the database's counters of work done.
type dbStats struct {
	commits, inserted, updated, deleted, returned, fetched, walRecords, walBytes float64
}

// readStats reads pg_stat_database for dsn's database and the cluster's
// pg_stat_wal.
func readStats(t *testing.T, dsn string) dbStats {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	time.Sleep(1500 * time.Millisecond) // backends report their counters at most once a second
	var s dbStats
	err = conn.QueryRow(ctx, `SELECT d.xact_commit, d.tup_inserted, d.tup_updated, d.tup_deleted, d.tup_returned, d.tup_fetched,
	   w.wal_records, w.wal_bytes
	  FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()`).
		Scan(&s.commits, &s.inserted, &s.updated, &s.deleted, &s.returned, &s.fetched, &s.walRecords, &s.walBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s dbStats) minus(o dbStats) dbStats {
	return dbStats{s.commits - o.commits, s.inserted - o.inserted, s.updated - o.updated, s.deleted - o.deleted,
		s.returned - o.returned, s.fetched - o.fetched, s.walRecords - o.walRecords, s.walBytes - o.walBytes}
}

func (s dbStats) per(msgs int) string {
	n := float64(msgs)
	return fmt.Sprintf("  transactions (commits) %.1f, rows inserted %.1f, updated %.1f, deleted %.1f, rows read %.1f (index fetches %.1f), WAL records %.1f, WAL bytes %.0f\n",
		s.commits/n, s.inserted/n, s.updated/n, s.deleted/n, s.returned/n, s.fetched/n, s.walRecords/n, s.walBytes/n)
}

// commitLatency measures one-row INSERT commits (synchronous_commit on,
// as the queue runs) from one connection, then from 16 at once (group
// commit), on the same cluster.
func commitLatency(t *testing.T, dsn string) string {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE commit_probe (v int)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	run := func(conns, each int) float64 {
		var wg sync.WaitGroup
		start := time.Now()
		for range conns {
			wg.Go(func() {
				c, err := pgx.Connect(ctx, dsn)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close(ctx)
				for i := range each {
					c.Exec(ctx, `INSERT INTO commit_probe VALUES ($1)`, i)
				}
			})
		}
		wg.Wait()
		return float64(conns*each) / time.Since(start).Seconds()
	}
	one := run(1, 500)
	many := run(16, 200)
	return fmt.Sprintf("commits: one connection %.0f/s (%.2f ms each); 16 connections %.0f/s\n", one, 1000/one, many)
}
