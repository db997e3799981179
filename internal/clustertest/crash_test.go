package clustertest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
)

// TestClusterCrash: three relay processes on one PostgreSQL queue accept
// mail from a concurrent sender and deliver it to a TLS sink that records
// which node delivered what, when. Every 2-4s a random node is killed
// with SIGKILL and restarted, ten times; then PostgreSQL is restarted
// (immediate mode) while the nodes run. Every recipient of every message
// that got 250 must be delivered (or, for bad-*, reported to the sender
// in a DSN); no recipient may be in two nodes' transactions at the same
// time; every repeated delivery or DSN must follow a kill of the node
// that made the first one (or the database restart), between the sink's
// 250 and the repeat.
//
//	go test -run TestClusterCrash -v ./internal/clustertest/
func TestClusterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster crash test skipped in -short mode")
	}
	w := newWorld(t, pgtest.DB(t))
	for range 3 {
		w.addNode().start()
	}
	ctx, stopSending := context.WithCancel(context.Background())
	s := &sender{w: w}
	sent := make(chan struct{})
	go func() { s.run(ctx, 4, 20*time.Millisecond); close(sent) }()

	for range 10 {
		time.Sleep(time.Duration(2000+rand.IntN(2000)) * time.Millisecond)
		n := w.nodes[rand.IntN(len(w.nodes))]
		n.kill()
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		n.start()
	}
	time.Sleep(2 * time.Second)
	w.restartDB()
	time.Sleep(3 * time.Second)
	stopSending()
	<-sent

	acc := s.accepted()
	if len(acc) < 50 {
		t.Fatalf("only %d of %d messages accepted", len(acc), s.n)
	}
	if !w.drained(acc, 90*time.Second) {
		t.Errorf("not everything accepted was delivered within 90s after the last message")
	}
	byNode := map[string]int{}
	for _, m := range w.sink.Messages() {
		byNode[m.Envelope.Helo]++
	}
	for _, n := range w.nodes {
		if byNode[n.name] == 0 {
			t.Errorf("%s delivered nothing: the test did not run three nodes", n.name)
		}
	}
	c, problems := w.check(acc)
	t.Logf("cluster crash test: 3 nodes, 10 kills, 1 database restart; %d transactions tried; %v; sink received %d messages (by node: %v)",
		s.n, c, len(w.sink.Messages()), byNode)
	for i, p := range problems {
		if i == 20 {
			t.Errorf("... and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}
}
