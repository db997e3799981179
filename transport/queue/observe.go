package queue

import (
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// Observer receives what a Queue does, as typed events, for metrics
// (package transport/prommetrics adapts it to Prometheus). Methods are
// called synchronously from the queue's goroutines: they must be safe for
// concurrent use, must not block and should be cheap. Methods may be added;
// implementations that embed NopObserver keep compiling.
//
// The queue's depth is not an event: a metrics system reads it when it
// needs it, with Queue.Depth.
type Observer interface {
	// ObserveReport is called once per delivery status notification the
	// queue has stored for sending (RFC 3464), once for each distinct
	// Action it reports on (RFC 3464 §2.3.3): a report about one failed and
	// one delivered recipient is observed as ActionFailed and as
	// ActionDelivered.
	ObserveReport(ReportEvent)
}

// NopObserver ignores every event. Embed it in an Observer implementation
// to keep compiling when events are added.
type NopObserver struct{}

// ObserveReport does nothing.
func (NopObserver) ObserveReport(ReportEvent) {}

var _ Observer = NopObserver{}

// ReportEvent describes a delivery status notification queued for the
// sender of a message.
type ReportEvent struct {
	// Action is the RFC 3464 §2.3.3 action reported.
	Action ndr.Action
	// Recipients is how many recipients the report names with Action.
	Recipients int
}

// observeReport reports the actions of a report just stored.
func (q *Queue) observeReport(rep *ndr.Report) {
	o := q.Observer
	if o == nil {
		return
	}
	var actions []ReportEvent
next:
	for _, r := range rep.Recipients {
		for i := range actions {
			if actions[i].Action == r.Action {
				actions[i].Recipients++
				continue next
			}
		}
		actions = append(actions, ReportEvent{Action: r.Action, Recipients: 1})
	}
	for _, ev := range actions {
		o.ObserveReport(ev)
	}
}

// Depth is a snapshot of the queue for monitoring.
type Depth struct {
	// Recipients counts the recipients of queued messages by status,
	// as Counts does: every stored status and Held are present, the waiting
	// recipients of held messages count under Held, and final states are
	// counted only while their message is still queued.
	Recipients map[transport.Status]int
	// Messages is the number of queued messages.
	Messages int
	// Oldest is the arrival time of the oldest queued message; zero when
	// the queue is empty.
	Oldest time.Time
}

// Depth returns the queue's depth as the scheduler holds it in memory: the
// messages loaded by Run and those enqueued since. Unlike Counts it reads
// nothing from the Store, so a metrics scrape may call it: it costs one
// pass over the queued messages under the scheduler's lock. Before Run has
// loaded the Store, messages left from an earlier run are not counted.
func (q *Queue) Depth() Depth {
	var d Depth
	q.mu.Lock()
	msgs := make([]*Message, 0, len(q.entries))
	for _, e := range q.entries {
		if e.gone {
			continue
		}
		msgs = append(msgs, e.msg)
		if d.Oldest.IsZero() || e.msg.ReceivedAt.Before(d.Oldest) {
			d.Oldest = e.msg.ReceivedAt
		}
	}
	d.Recipients = CountStates(msgs)
	q.mu.Unlock()
	d.Messages = len(msgs)
	return d
}
