package queue

import (
	"container/heap"
	"context"
	"sort"
	"sync"
	"time"
)

// The scheduler keeps every queued message in a min-heap ordered by the
// time it next needs attention (entry.due), so a pass costs O(log n) per
// message that is due, not O(n) over the whole queue. A message whose
// due recipients of some domain cannot start because that domain is at
// PerDomainConcurrency is "parked" on the domain: those recipients leave
// its due time until a job for the domain ends and unparks the oldest
// parked message. A queue with a large backlog for one domain therefore
// does not rescan the backlog on every event.

// entry is the in-memory state of one queued message. msg is an immutable
// snapshot replaced (copy on write) under Queue.mu; persist serializes the
// read-modify-write cycles of one message and its Store.Update calls. The
// other fields are guarded by Queue.mu.
type entry struct {
	msg      *Message
	inflight map[int]bool // recipient indexes being delivered
	busy     bool         // a finish job runs
	dirty    bool         // msg is newer than the store (an Update failed)
	retryAt  time.Time    // when to retry a failed finish job
	gone     bool         // removed from the queue
	persist  sync.Mutex

	due     time.Time       // when the scheduler must look at it; zero: nothing to do
	hidx    int             // index in Queue.heap, -1 when absent
	blocked map[string]bool // domains it is parked on
}

func newEntry(m *Message) *entry {
	return &entry{msg: m, inflight: make(map[int]bool), hidx: -1}
}

// dueNow is the due time of work that can start at once (the earliest
// non-zero time, so it sorts first and never looks "unset").
func dueNow() time.Time { return time.Time{}.Add(1) }

// dueHeap is a min-heap of entries by due time.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hidx = -1
	return e
}

// computeDue returns when e next needs the scheduler: a finish job (reports
// to queue, a state to write, a message to remove) or a recipient that is
// neither final, in flight, nor parked, of a message that is not held.
func computeDue(e *entry) time.Time {
	var due time.Time
	consider := func(t time.Time) {
		if t.IsZero() {
			t = dueNow()
		}
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	if !e.busy && (e.dirty || needsFinish(e.msg)) {
		consider(e.retryAt)
	}
	for i, r := range e.msg.Recipients {
		if e.msg.Held || r.State.Final() || e.inflight[i] || e.blocked[domainOf(r.Address)] {
			continue
		}
		consider(r.NextAttempt)
	}
	return due
}

// refresh recomputes e's due time and its place in the heap. q.mu is held.
func (q *Queue) refresh(e *entry) {
	if e.gone {
		if e.hidx >= 0 {
			heap.Remove(&q.heap, e.hidx)
		}
		return
	}
	e.due = computeDue(e)
	switch {
	case e.due.IsZero():
		if e.hidx >= 0 {
			heap.Remove(&q.heap, e.hidx)
		}
	case e.hidx >= 0:
		heap.Fix(&q.heap, e.hidx)
	default:
		heap.Push(&q.heap, e)
	}
}

// park records that e has due recipients in domain that wait for a slot.
func (q *Queue) park(e *entry, domain string) {
	if e.blocked == nil {
		e.blocked = make(map[string]bool)
	}
	if !e.blocked[domain] {
		e.blocked[domain] = true
		q.parked[domain] = append(q.parked[domain], e)
	}
}

// unpark releases up to n messages parked on domain, oldest first.
// Pointers left by removed or already released messages are skipped.
func (q *Queue) unpark(domain string, n int) {
	list := q.parked[domain]
	for n > 0 && len(list) > 0 {
		e := list[0]
		list[0] = nil
		list = list[1:]
		if e.gone || !e.blocked[domain] {
			continue
		}
		delete(e.blocked, domain)
		q.refresh(e)
		n--
	}
	if len(list) == 0 {
		delete(q.parked, domain)
	} else {
		q.parked[domain] = list
	}
}

// job is one Deliver call: the due recipients of one message for one domain.
type job struct {
	e      *entry
	domain string
	idx    []int
}

// dispatch starts the work that is due and fits the concurrency limits,
// and returns when the earliest work not started is due (zero if none).
// Work left out because Concurrency is reached stays in the heap; a job
// that ends signals the scheduler.
func (q *Queue) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Time {
	if ctx.Err() != nil {
		return time.Time{}
	}
	now := q.now()
	conc := orDefault(q.Concurrency, DefaultConcurrency)
	perDomain := orDefault(q.PerDomainConcurrency, DefaultPerDomainConcurrency)

	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.heap) > 0 && !q.heap[0].due.After(now) && q.active < conc {
		e := heap.Pop(&q.heap).(*entry)
		if !e.busy && (e.dirty || needsFinish(e.msg)) && !e.retryAt.After(now) {
			e.busy = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.persist.Lock()
				q.finish(ctx, e)
				e.persist.Unlock()
				q.mu.Lock()
				e.busy = false
				q.refresh(e)
				q.mu.Unlock()
				q.signal()
			}()
		}
		groups := make(map[string][]int)
		for i, r := range e.msg.Recipients {
			if e.msg.Held || r.State.Final() || e.inflight[i] || r.NextAttempt.After(now) {
				continue
			}
			d := domainOf(r.Address)
			if e.blocked[d] {
				continue
			}
			groups[d] = append(groups[d], i)
		}
		domains := make([]string, 0, len(groups))
		for d := range groups {
			domains = append(domains, d)
		}
		sort.Strings(domains)
		for _, d := range domains {
			if q.active >= conc {
				break // the rest stays due; refresh keeps e in the heap
			}
			if q.domains[d] >= perDomain {
				q.park(e, d)
				continue
			}
			j := job{e: e, domain: d, idx: groups[d]}
			q.active++
			q.domains[d]++
			for _, i := range j.idx {
				e.inflight[i] = true
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.attempt(ctx, j)
			}()
		}
		q.refresh(e)
	}
	if len(q.heap) > 0 {
		return q.heap[0].due
	}
	return time.Time{}
}

// endJob releases the slots of a job and lets the scheduler look at its
// message again.
func (q *Queue) endJob(j job) {
	q.mu.Lock()
	for _, i := range j.idx {
		delete(j.e.inflight, i)
	}
	q.active--
	if q.domains[j.domain]--; q.domains[j.domain] <= 0 {
		delete(q.domains, j.domain)
	}
	q.refresh(j.e)
	q.unpark(j.domain, 1)
	q.mu.Unlock()
	q.signal()
}
