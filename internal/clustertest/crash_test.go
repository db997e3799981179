package clustertest

import (
	"context"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
)

// claims reports whether pgstore claims work across nodes; until it
// does, the cross-node assertions (no concurrent delivery, every repeat
// explained) are reported and the test is skipped after the counts.
var claims = func() bool {
	_, ok := reflect.TypeFor[*pgstore.Store]().MethodByName("Claim")
	return ok
}()

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
	c, problems := w.check(acc)
	t.Logf("cluster crash test: 3 nodes, 10 kills, 1 database restart; %d transactions tried; %v; sink received %d messages",
		s.n, c, len(w.sink.Messages()))
	if c.lost > 0 {
		t.Errorf("%d recipients of accepted messages lost", c.lost)
	}
	report := t.Errorf
	if !claims {
		report = t.Logf
	}
	for i, p := range problems {
		if i == 20 {
			report("... and %d more", len(problems)-i)
			break
		}
		if c.lost > 0 || !strings.HasPrefix(p, "lost:") {
			report("%s", p)
		}
	}
	if !claims && !t.Failed() {
		t.Skipf("pgstore does not claim work across nodes yet: %d concurrent deliveries and %d unexplained repeats are expected without it", c.overlaps, c.unexplained)
	}
}
