package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/transport"
)

// BenchmarkDispatchLargeQueue measures one scheduler pass over a queue
// holding 20,000 deferred messages that are not due.
func BenchmarkDispatchLargeQueue(b *testing.B) {
	q := &Queue{Now: func() time.Time { return time.Unix(1000, 0) }}
	q.init()
	for i := 0; i < 20000; i++ {
		m := &Message{ID: fmt.Sprintf("m%d", i), Recipients: []*Recipient{
			{Address: fmt.Sprintf("u%d@d%d.example", i, i%50), State: transport.Deferred, NextAttempt: time.Unix(5000, 0)}}}
		e := newEntry(m)
		q.entries[m.ID] = e
		q.refresh(e)
	}
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q.dispatch(ctx, &wg)
	}
}

// BenchmarkDispatchParkedBacklog measures a pass when 20,000 messages are
// due for one domain that is at its concurrency limit: after the first
// pass parks them, a pass does not look at them again.
func BenchmarkDispatchParkedBacklog(b *testing.B) {
	q := &Queue{Now: func() time.Time { return time.Unix(1000, 0) }, PerDomainConcurrency: 1}
	q.init()
	for i := 0; i < 20000; i++ {
		m := &Message{ID: fmt.Sprintf("m%d", i), Recipients: []*Recipient{
			{Address: fmt.Sprintf("u%d@busy.example", i), State: transport.Deferred, NextAttempt: time.Unix(500, 0)}}}
		e := newEntry(m)
		q.entries[m.ID] = e
		q.refresh(e)
	}
	q.domains["busy.example"] = 1 // a job in flight holds the only slot
	q.active = 1
	var wg sync.WaitGroup
	ctx := context.Background()
	q.dispatch(ctx, &wg)
	if len(q.heap) != 0 || len(q.parked["busy.example"]) != 20000 {
		b.Fatalf("heap %d, parked %d", len(q.heap), len(q.parked["busy.example"]))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q.dispatch(ctx, &wg)
	}
}
