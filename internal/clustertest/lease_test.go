package clustertest

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
)

// TestClusterPausedRelay: a relay paused with SIGSTOP in the middle of a
// delivery (the sink holds its RCPT), past its 2 s lease, loses the
// message to another relay, which delivers it. After SIGCONT the paused
// relay finds its lease taken over (its log says "lease lost") and records
// nothing: the message's record is the other relay's (delivered, removed),
// not overwritten. The paused relay delivers the message at most once:
// the transaction it was in when paused, which the sink completes once
// released (a duplicate at the remote that the queue does not prevent:
// it does not cancel an attempt whose lease it lost).
//
//	go test -run TestClusterPausedRelay -v ./internal/clustertest/
func TestClusterPausedRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	dsn := pgtest.DB(t)
	w := newWorld(t, dsn)
	stalled := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	w.stall = func(addr string) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(stalled)
			<-release
		}
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	a := w.addNode("-queue-lease", "2s")
	b := w.addNode("-queue-lease", "2s")
	a.start()
	s := &sender{w: w}
	const rcpt = "ok-lease@a.test"
	if err := s.send(a, "sender-lease@origin.test", []string{rcpt}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled: // a is delivering, held at RCPT
	case <-time.After(20 * time.Second):
		t.Fatal("the relay did not start delivering")
	}
	a.signal(syscall.SIGSTOP)
	w.note(a.name, "stop")
	time.Sleep(3 * time.Second) // past a's lease
	b.start()
	byNode := func() map[string]int {
		n := map[string]int{}
		for _, d := range w.sinkDeliveries()[rcpt] {
			n[d.node]++
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for byNode()[b.name] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take the message over; its log:\n%s", b.name, b.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.signal(syscall.SIGCONT)
	w.note(a.name, "cont")
	deadline = time.Now().Add(10 * time.Second)
	for !a.logged("lease lost") {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not find its lease lost after SIGCONT; its log:\n%s", a.name, a.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(release) // the transaction a was in when paused goes on
	released = true
	time.Sleep(3 * time.Second)

	got := byNode()
	t.Logf("deliveries of %s: %d by the relay that took over (%s), %d by the paused relay (%s), the transaction it was in when paused",
		rcpt, got[b.name], b.name, got[a.name], a.name)
	if got[b.name] != 1 {
		t.Errorf("%s delivered %d times by %s, want 1", rcpt, got[b.name], b.name)
	}
	if got[a.name] > 1 {
		t.Errorf("the paused relay delivered %s %d times", rcpt, got[a.name])
	}
	st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{Node: "checker"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if left, err := st.List(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("after the takeover: %d messages left (%v), want none", len(left), err)
	}
	t.Logf("the paused relay's log about its lease:\n%s", a.grep("lease lost"))
}
