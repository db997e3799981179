package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

func TestRetryThenSuccess(t *testing.T) {
	h := newHarness(t, func(_ string, n int) transport.RecipientResult {
		if n < 3 {
			return tempFail()
		}
		return ok()
	})
	h.run()
	id := h.enqueue("alice@example.org", rcpt("bob@example.net"))
	h.waitFor("first attempt", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 1 })
	h.settle()

	m, err := h.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Recipients[0]
	if r.State != transport.Deferred || r.Attempts != 1 || r.LastError == nil || r.LastError.Code != 451 {
		t.Fatalf("after first attempt: %+v %+v", r, r.LastError)
	}
	if want := h.clock.Now().Add(10 * time.Minute); !r.NextAttempt.Equal(want) {
		t.Errorf("NextAttempt = %v, want %v", r.NextAttempt, want)
	}
	// Not due yet: nothing happens.
	h.clock.Advance(9 * time.Minute)
	time.Sleep(20 * time.Millisecond)
	if a, _ := h.fake.counts("bob@example.net"); a != 1 {
		t.Fatalf("retried before the backoff elapsed: %d attempts", a)
	}
	h.clock.Advance(time.Minute)
	h.waitFor("second attempt", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 2 })
	h.settle()
	h.clock.Advance(10 * time.Minute)
	h.waitFor("delivery", func() bool { return h.queued() == 0 })
	h.waitFor("log of the last attempt", func() bool { return strings.Contains(h.logs.String(), "message done") })

	a, d := h.fake.counts("bob@example.net")
	if a != 3 || d != 1 {
		t.Errorf("attempts %d, deliveries %d; want 3 and 1", a, d)
	}
	if n := len(h.fake.rawReports()); n != 0 {
		t.Errorf("%d reports sent for a delivered message with default NOTIFY", n)
	}
	if !strings.Contains(h.logs.String(), "next_retry=") || !strings.Contains(h.logs.String(), "result=delivered") {
		t.Errorf("attempt log lines missing fields:\n%s", h.logs)
	}
}

func TestExpiryFailedDSN(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return tlsFailure(transport.Deferred) })
	h.q.DelayWarning = -1 // this test is about the failed report only
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@legacy.example"))
	// MaxAge 1h, backoff 10m: attempts at 0, 10, ..., 50 min, then the
	// next is capped at the expiry time 60 min and fails for good.
	for i := 0; i < 6; i++ {
		h.waitFor("attempt", func() bool { a, _ := h.fake.counts("bob@legacy.example"); return a == i+1 })
		h.settle()
		if len(h.fake.rawReports()) != 0 {
			t.Fatalf("report sent before expiry, after attempt %d", i+1)
		}
		h.clock.Advance(10 * time.Minute)
	}
	h.waitFor("failed report", func() bool { return len(h.fake.rawReports()) == 1 })
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	if a, _ := h.fake.counts("bob@legacy.example"); a != 7 {
		t.Errorf("%d attempts, want 7", a)
	}
	reps := h.fake.parsedReports(t)
	rep := reps[0]
	if rep.Sender != "alice@example.org" || h.fake.reportTo[0] != "alice@example.org" {
		t.Errorf("report to %q / %q, want the original sender", rep.Sender, h.fake.reportTo[0])
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("report has %d recipients", len(rep.Recipients))
	}
	rr := rep.Recipients[0]
	if rr.Action != ndr.ActionFailed || rr.Status != "5.7.4" || !strings.Contains(rr.FinalRecipient, "bob@legacy.example") {
		t.Errorf("recipient group = %+v", rr)
	}
	// Our own finding, not the server's reply (RFC 3464 §2.3.6).
	if rr.DiagnosticType != LocalDiagnosticType || !strings.Contains(rr.DiagnosticCode, "not offered") || !strings.Contains(rr.RemoteMTA, "mx.legacy.example") {
		t.Errorf("diagnostic %q remote %q", rr.DiagnosticCode, rr.RemoteMTA)
	}
	if rep.OriginalEnvelopeID != "env-1" || !strings.Contains(rep.ReportingMTA, "relay.example.org") {
		t.Errorf("per-message fields: envid %q reporting %q", rep.OriginalEnvelopeID, rep.ReportingMTA)
	}
	if raw := string(h.fake.rawReports()[0]); !strings.Contains(raw, "did not offer STARTTLS") {
		t.Errorf("human part does not explain the TLS failure:\n%s", raw)
	}
}

func TestPermanentFailureImmediateDSN(t *testing.T) {
	// A policy with OnFailure=Bounce makes the Connector return Failed.
	h := newHarness(t, func(string, int) transport.RecipientResult { return tlsFailure(transport.Failed) })
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@legacy.example"))
	h.waitFor("failed report", func() bool { return len(h.fake.rawReports()) == 1 })
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	if a, _ := h.fake.counts("bob@legacy.example"); a != 1 {
		t.Errorf("%d attempts, want 1 (no retry after a permanent failure)", a)
	}
	rep := h.fake.parsedReports(t)[0]
	rr := rep.Recipients[0]
	if rr.Action != ndr.ActionFailed || rr.Status != "5.7.4" || rr.OriginalRecipient == "" {
		t.Errorf("recipient group = %+v", rr)
	}
	// The report itself went out with a null reverse-path.
	h.fake.mu.Lock()
	last := h.fake.envelopes[len(h.fake.envelopes)-1]
	h.fake.mu.Unlock()
	if last.From != "" || last.Recipients[0].Address != "alice@example.org" {
		t.Errorf("report envelope from %q to %v", last.From, last.Recipients)
	}
}

func TestDelayedDSN(t *testing.T) {
	h := newHarness(t, func(_ string, n int) transport.RecipientResult {
		if n < 6 {
			return tempFail()
		}
		return ok()
	})
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@example.net"))
	for i := 0; i < 5; i++ {
		h.waitFor("attempt", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == i+1 })
		h.settle()
		want := 0
		if i >= 3 { // attempts at 0,10,20 min: no report; at 30 and 40: one
			want = 1
		}
		if got := len(h.fake.rawReports()); got != want {
			t.Fatalf("after attempt %d (t=%dm): %d reports, want %d", i+1, 10*i, got, want)
		}
		h.clock.Advance(10 * time.Minute)
	}
	h.waitFor("delivery", func() bool { return h.queued() == 0 })
	reps := h.fake.parsedReports(t)
	if len(reps) != 1 {
		t.Fatalf("%d reports, want exactly one delayed report", len(reps))
	}
	rr := reps[0].Recipients[0]
	if rr.Action != ndr.ActionDelayed || rr.Status != "4.3.0" || rr.WillRetryUntil.IsZero() {
		t.Errorf("recipient group = %+v", rr)
	}
}

func TestNotifyNeverSendsNothing(t *testing.T) {
	h := newHarness(t, func(a string, n int) transport.RecipientResult {
		if strings.HasPrefix(a, "perm") {
			return permFail()
		}
		return tempFail()
	})
	h.q.DelayWarning = 5 * time.Minute
	h.run()
	h.enqueue("alice@example.org", rcpt("perm@example.net", "NEVER"), rcpt("temp@example.net", "NEVER"))
	for i := 0; i < 7; i++ {
		h.waitFor("attempt", func() bool { a, _ := h.fake.counts("temp@example.net"); return a == i+1 })
		h.settle()
		h.clock.Advance(10 * time.Minute)
	}
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	if n := len(h.fake.rawReports()); n != 0 {
		t.Errorf("%d reports sent with NOTIFY=NEVER", n)
	}
}

func TestNullSenderNeverReported(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return permFail() })
	h.run()
	h.enqueue("", rcpt("bob@example.net"), rcpt("carol@example.net", "SUCCESS", "FAILURE", "DELAY"))
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	if a, _ := h.fake.counts("carol@example.net"); a != 1 {
		t.Fatalf("carol attempted %d times", a)
	}
	h.fake.mu.Lock()
	n := len(h.fake.envelopes)
	h.fake.mu.Unlock()
	if n != 1 {
		t.Errorf("%d Deliver calls, want 1 (no report about a null-sender message)", n)
	}
}

func TestFailedReportIsDroppedNotReported(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return permFail() })
	h.fake.reportScript = func(string, int) transport.RecipientResult { return permFail() }
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@example.net"))
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	h.settle()
	if a, _ := h.fake.counts("alice@example.org"); a != 1 {
		t.Errorf("report attempted %d times, want 1", a)
	}
	h.fake.mu.Lock()
	n := len(h.fake.envelopes)
	h.fake.mu.Unlock()
	if n != 2 {
		t.Errorf("%d Deliver calls, want 2 (message, report; nothing about the report)", n)
	}
	if !strings.Contains(h.logs.String(), "dropping undeliverable report") {
		t.Errorf("dropped report not logged:\n%s", h.logs)
	}
}

func TestPartialSuccess(t *testing.T) {
	h := newHarness(t, func(a string, n int) transport.RecipientResult {
		switch {
		case strings.HasPrefix(a, "ok"):
			return ok()
		case strings.HasPrefix(a, "bad"):
			return permFail()
		case n < 2:
			return tempFail()
		}
		return ok()
	})
	h.run()
	id := h.enqueue("alice@example.org", rcpt("ok@example.net"), rcpt("bad@example.net"), rcpt("later@other.example"))
	h.waitFor("report about bad", func() bool { return len(h.fake.rawReports()) == 1 })
	h.settle()
	m, err := h.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	states := []transport.Status{m.Recipients[0].State, m.Recipients[1].State, m.Recipients[2].State}
	if states[0] != transport.Delivered || states[1] != transport.Failed || states[2] != transport.Deferred {
		t.Fatalf("states = %v", states)
	}
	if m.Recipients[1].LastError == nil || m.Recipients[1].LastError.EnhancedCode != "5.1.1" {
		t.Errorf("last error of bad = %+v", m.Recipients[1].LastError)
	}
	counts, err := h.q.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts[transport.Delivered] != 1 || counts[transport.Failed] != 1 || counts[transport.Deferred] != 1 || counts[transport.Pending] != 0 {
		t.Errorf("counts = %v", counts)
	}
	h.clock.Advance(10 * time.Minute)
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	for addr, want := range map[string]int{"ok@example.net": 1, "bad@example.net": 1, "later@other.example": 2} {
		if a, _ := h.fake.counts(addr); a != want {
			t.Errorf("%s attempted %d times, want %d", addr, a, want)
		}
	}
	reps := h.fake.parsedReports(t)
	if len(reps) != 1 || len(reps[0].Recipients) != 1 || !strings.Contains(reps[0].Recipients[0].FinalRecipient, "bad@example.net") {
		t.Fatalf("reports = %+v", reps)
	}
}

func TestSuccessReports(t *testing.T) {
	for _, tc := range []struct {
		name   string
		result func() transport.RecipientResult
		final  bool
		want   ndr.Action // "" for no report
	}{
		{"relayed", relayed, false, ndr.ActionRelayed},
		{"delivered to DSN-capable relay", ok, false, ""},
		{"delivered as final delivery", ok, true, ndr.ActionDelivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(string, int) transport.RecipientResult { return tc.result() })
			h.q.FinalDelivery = tc.final
			h.run()
			h.enqueue("alice@example.org", rcpt("bob@example.net", "SUCCESS"), rcpt("carol@example.net"))
			h.waitFor("queue empty", func() bool { return h.queued() == 0 })
			h.settle()
			reps := h.fake.parsedReports(t)
			if tc.want == "" {
				if len(reps) != 0 {
					t.Fatalf("%d reports, want none", len(reps))
				}
				return
			}
			if len(reps) != 1 || len(reps[0].Recipients) != 1 {
				t.Fatalf("reports = %+v", reps)
			}
			rr := reps[0].Recipients[0]
			if rr.Action != tc.want || rr.Status != "2.0.0" || !strings.Contains(rr.FinalRecipient, "bob@") {
				t.Errorf("recipient group = %+v", rr)
			}
		})
	}
}

func TestRestartResumes(t *testing.T) {
	h := newHarness(t, func(_ string, n int) transport.RecipientResult {
		if n == 1 {
			return tempFail()
		}
		return ok()
	})
	// Accepted while the queue is not running.
	id := h.enqueue("alice@example.org", rcpt("bob@example.net"))
	h.run()
	h.waitFor("first attempt", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 1 })
	h.settle()
	h.stop()

	// Debris of an interrupted Create: must be cleaned, not delivered.
	for _, name := range []string{"tmp-123", "orphan" + bodySuffix} {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.open()
	for _, name := range []string{"tmp-123", "orphan" + bodySuffix} {
		if _, err := os.Stat(filepath.Join(h.dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not cleaned on open: %v", name, err)
		}
	}
	m, err := h.q.Get(context.Background(), id)
	if err != nil || m.Recipients[0].State != transport.Deferred || m.Recipients[0].Attempts != 1 {
		t.Fatalf("state after restart: %+v, %v", m, err)
	}
	h.clock.Advance(10 * time.Minute)
	h.run()
	h.waitFor("delivery after restart", func() bool { return h.queued() == 0 })
	if a, d := h.fake.counts("bob@example.net"); a != 2 || d != 1 {
		t.Errorf("attempts %d deliveries %d, want 2 and 1", a, d)
	}
}

func TestReportCreationIdempotentAfterCrash(t *testing.T) {
	// State as a crash leaves it between queueing a report and recording
	// that it was queued: the report exists, the original says "not done".
	h := newHarness(t, func(string, int) transport.RecipientResult { return permFail() })
	ctx := context.Background()
	orig := &Message{ID: "orig", From: "alice@example.org", ReceivedAt: h.clock.Now(), ReportSeq: 1,
		Recipients: []*Recipient{{Address: "bob@example.net", State: transport.Failed, Attempts: 1,
			LastError: &LastError{Code: 550, EnhancedCode: "5.1.1", Message: "no such user"}, FinalReport: "orig.r1"}}}
	if err := h.store.Create(ctx, orig, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	dsn := &Message{ID: "orig.r1", From: "", Report: true, ReceivedAt: h.clock.Now(),
		Recipients: []*Recipient{{Address: "alice@example.org", State: transport.Pending}}}
	if err := h.store.Create(ctx, dsn, strings.NewReader("From: MAILER-DAEMON\r\n\r\nreport\r\n")); err != nil {
		t.Fatal(err)
	}
	h.run()
	h.waitFor("queue empty", func() bool { return h.queued() == 0 })
	h.settle()
	if a, _ := h.fake.counts("alice@example.org"); a != 1 {
		t.Errorf("report delivered %d times, want 1", a)
	}
}

func TestRetryNowAndRemove(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return tempFail() })
	h.run()
	ctx := context.Background()
	id1 := h.enqueue("alice@example.org", rcpt("bob@example.net"))
	id2 := h.enqueue("alice@example.org", rcpt("carol@example.net"))
	h.waitFor("first attempts", func() bool {
		a, _ := h.fake.counts("bob@example.net")
		b, _ := h.fake.counts("carol@example.net")
		return a == 1 && b == 1
	})
	h.settle()
	if err := h.q.RetryNow(ctx, id1); err != nil {
		t.Fatal(err)
	}
	h.waitFor("retry now", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 2 })
	if a, _ := h.fake.counts("carol@example.net"); a != 1 {
		t.Errorf("RetryNow(%s) also retried %s", id1, id2)
	}
	list, err := h.q.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %d messages, %v", len(list), err)
	}
	if list[0].Recipients[0].LastError.Reply() != "451 4.3.0 try again later" {
		t.Errorf("last error = %q", list[0].Recipients[0].LastError.Reply())
	}
	if err := h.q.Remove(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Remove(ctx, id2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	if err := h.q.RetryNow(ctx, id2); !errors.Is(err, ErrNotFound) {
		t.Errorf("RetryNow of removed message: %v, want ErrNotFound", err)
	}
	h.settle()
	h.clock.Advance(10 * time.Minute)
	h.waitFor("bob retried", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 3 })
	h.settle()
	if a, _ := h.fake.counts("carol@example.net"); a != 1 {
		t.Errorf("removed message attempted again")
	}
	if h.queued() != 1 {
		t.Errorf("%d messages queued, want 1", h.queued())
	}
}

// blockingDeliverer holds every call until released and records the
// maximum concurrency overall and per domain.
type blockingDeliverer struct {
	mu       sync.Mutex
	active   int
	perDom   map[string]int
	maxAll   int
	maxDom   map[string]int
	calls    int
	release  chan struct{}
	finished int
}

func (b *blockingDeliverer) Deliver(ctx context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
	d := domainOf(env.Recipients[0].Address)
	b.mu.Lock()
	b.calls++
	b.active++
	b.perDom[d]++
	b.maxAll = max(b.maxAll, b.active)
	b.maxDom[d] = max(b.maxDom[d], b.perDom[d])
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	b.mu.Lock()
	b.active--
	b.perDom[d]--
	b.finished++
	b.mu.Unlock()
	res := &transport.Result{}
	for _, r := range env.Recipients {
		rr := ok()
		rr.Recipient = r
		res.Recipients = append(res.Recipients, rr)
	}
	return res, nil
}

func TestConcurrencyLimits(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &blockingDeliverer{perDom: map[string]int{}, maxDom: map[string]int{}, release: make(chan struct{})}
	q := &Queue{Store: st, Deliverer: DeliverFunc(b.Deliver), Concurrency: 3, PerDomainConcurrency: 2,
		PollInterval: 2 * time.Millisecond}
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		for _, d := range []string{"a.example", "b.example"} {
			env := &transport.Envelope{From: "x@example.org", Recipients: []transport.Recipient{{Address: "u@" + d}}}
			if _, err := q.Enqueue(ctx, env, strings.NewReader(testMessage)); err != nil {
				t.Fatal(err)
			}
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- q.Run(rctx) }()
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.calls == 3 })
	time.Sleep(30 * time.Millisecond) // give the scheduler a chance to exceed the limit
	b.mu.Lock()
	if b.calls != 3 {
		t.Errorf("%d calls in flight, want 3 (Concurrency)", b.calls)
	}
	b.mu.Unlock()
	close(b.release)
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.finished == 8 })
	cancel()
	<-done
	if b.maxAll > 3 {
		t.Errorf("max concurrency %d > 3", b.maxAll)
	}
	for d, n := range b.maxDom {
		if n > 2 {
			t.Errorf("max concurrency for %s = %d > 2", d, n)
		}
	}
	msgs, _ := st.List(ctx)
	if len(msgs) != 0 {
		t.Errorf("%d messages left", len(msgs))
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdownDoesNotCountInterruptedAttempt(t *testing.T) {
	// Either an error, or (as transport.Connector does) deferred results.
	for _, asResult := range []bool{false, true} {
		testShutdown(t, asResult)
	}
}

func testShutdown(t *testing.T, asResult bool) {
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	d := DeliverFunc(func(ctx context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		if asResult {
			rr := tempFail()
			rr.Recipient = env.Recipients[0]
			return &transport.Result{Recipients: []transport.RecipientResult{rr}}, nil
		}
		return nil, ctx.Err()
	})
	q := &Queue{Store: st, Deliverer: d, PollInterval: 2 * time.Millisecond}
	id, err := q.Enqueue(context.Background(), &transport.Envelope{From: "a@example.org",
		Recipients: []transport.Recipient{{Address: "b@example.net"}}}, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	m, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; r.State != transport.Pending || r.Attempts != 0 {
		t.Errorf("after shutdown: state %s attempts %d, want pending and 0", r.State, r.Attempts)
	}
}

func TestRunTwice(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return ok() })
	h.run()
	h.waitFor("running", func() bool { h.q.mu.Lock(); defer h.q.mu.Unlock(); return h.q.running })
	if err := h.q.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

func TestServeSMTPErrorIs451(t *testing.T) {
	q := &Queue{Store: failingStore{}, Deliverer: newFake(nil)}
	err := q.ServeSMTP(context.Background(), &transport.Envelope{From: "a@example.org",
		Recipients: []transport.Recipient{{Address: "b@example.net"}}}, strings.NewReader("x"))
	te, ok := transport.AsError(err)
	if !ok || te.Code != 451 || te.EnhancedCode.String() != "4.3.0" {
		t.Fatalf("ServeSMTP error = %v", err)
	}
	if !errors.Is(err, errDiskFull) {
		t.Errorf("cause not wrapped: %v", err)
	}
}

var errDiskFull = errors.New("disk full")

type failingStore struct{ Store }

func (failingStore) Create(context.Context, *Message, io.Reader) error { return errDiskFull }

func TestBackoffSchedule(t *testing.T) {
	q := &Queue{Backoff: []time.Duration{time.Minute, 4 * time.Minute}}
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 4 * time.Minute, 3: 4 * time.Minute, 50: 4 * time.Minute} {
		if got := q.backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
	var def Queue
	if got := def.backoff(1); got != 5*time.Minute {
		t.Errorf("default first backoff = %v", got)
	}
	if got := def.backoff(100); got != 4*time.Hour {
		t.Errorf("default last backoff = %v", got)
	}
	q.Jitter = 0.5
	seen := map[time.Duration]bool{}
	for i := 0; i < 200; i++ {
		d := q.backoff(1)
		if d < 30*time.Second || d > 90*time.Second {
			t.Fatalf("jittered backoff %v outside [30s, 90s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter produced only %d distinct waits", len(seen))
	}
}

// BenchmarkEnqueueAndDeliver measures the queue alone: durable Enqueue
// (three fsyncs) and a delivery to a Deliverer that accepts at once (the
// message is then deleted: one more fsync).
func BenchmarkEnqueueAndDeliver(b *testing.B) {
	st, err := OpenDirStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	delivered := 0
	d := DeliverFunc(func(_ context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		res := &transport.Result{}
		for _, r := range env.Recipients {
			rr := ok()
			rr.Recipient = r
			res.Recipients = append(res.Recipients, rr)
		}
		mu.Lock()
		delivered++
		mu.Unlock()
		return res, nil
	})
	q := &Queue{Store: st, Deliverer: d}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	body := strings.Repeat("x", 1024)
	b.SetParallelism(8) // eight concurrent SMTP sessions per CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			env := &transport.Envelope{From: "a@example.org", Recipients: []transport.Recipient{{Address: "b@example.net"}}}
			if _, err := q.Enqueue(ctx, env, strings.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for {
		mu.Lock()
		n := delivered
		mu.Unlock()
		if n >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	if delivered != b.N {
		b.Errorf("delivered %d of %d", delivered, b.N)
	}
}

// TestReportContent checks what the queue passes to ndr: the language, the
// RET parameter (full content or headers), ENVID and ORCPT.
func TestReportContent(t *testing.T) {
	for _, tc := range []struct {
		name, lang, ret string
		requireTLS      bool
		wantText        string
		wantFull        bool
	}{
		{"english headers", "", "", false, "no such user", false},
		{"japanese full", "ja", "FULL", false, "配送", true},
		{"requiretls returns headers only", "", "FULL", true, "REQUIRETLS", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(string, int) transport.RecipientResult { return permFail() })
			h.q.Language = tc.lang
			h.run()
			env := &transport.Envelope{From: "alice@example.org", Return: mustReturn(tc.ret), EnvelopeID: "ENV-42", RequireTLS: tc.requireTLS,
				Recipients: []transport.Recipient{{Address: "bob@example.net", ORCPT: "rfc822;Bob@Example.NET"}}}
			if _, err := h.q.Enqueue(context.Background(), env, strings.NewReader(testMessage)); err != nil {
				t.Fatal(err)
			}
			h.waitFor("report", func() bool { return len(h.fake.rawReports()) == 1 })
			raw := string(h.fake.rawReports()[0])
			rep := h.fake.parsedReports(t)[0]
			if rep.OriginalEnvelopeID != "ENV-42" {
				t.Errorf("Original-Envelope-Id = %q", rep.OriginalEnvelopeID)
			}
			if rr := rep.Recipients[0]; !strings.Contains(rr.OriginalRecipient, "Bob@Example.NET") || rr.Status != "5.1.1" {
				t.Errorf("recipient group = %+v", rr)
			}
			if (rep.Return == ndr.ReturnFull) != tc.wantFull {
				t.Errorf("returned full = %v, want %v", rep.Return == ndr.ReturnFull, tc.wantFull)
			}
			if tc.wantFull != strings.Contains(raw, "Hello Bob.") {
				t.Errorf("original body returned = %v, want %v", !tc.wantFull, tc.wantFull)
			}
			decoded := raw
			if dec, err := decodeParts(raw); err == nil {
				decoded = dec
			}
			if !strings.Contains(decoded, tc.wantText) {
				t.Errorf("report lacks %q:\n%s", tc.wantText, decoded)
			}
		})
	}
}

// TestBusyDomainDoesNotBlockOthers: with a backlog for one domain held at
// its limit, mail for another domain enqueued later still goes out, and
// the backlog drains once the domain answers.
func TestBusyDomainDoesNotBlockOthers(t *testing.T) {
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	got := map[string]int{}
	d := DeliverFunc(func(ctx context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		if domainOf(env.Recipients[0].Address) == "busy.example" {
			<-release
		}
		res := &transport.Result{}
		mu.Lock()
		for _, r := range env.Recipients {
			got[domainOf(r.Address)]++
			rr := ok()
			rr.Recipient = r
			res.Recipients = append(res.Recipients, rr)
		}
		mu.Unlock()
		return res, nil
	})
	q := &Queue{Store: st, Deliverer: d, PerDomainConcurrency: 2, Concurrency: 5, PollInterval: 2 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	for i := 0; i < 30; i++ {
		env := &transport.Envelope{From: "a@example.org", Recipients: []transport.Recipient{{Address: fmt.Sprintf("u%d@busy.example", i)}}}
		if _, err := q.Enqueue(ctx, env, strings.NewReader(testMessage)); err != nil {
			t.Fatal(err)
		}
	}
	env := &transport.Envelope{From: "a@example.org", Recipients: []transport.Recipient{{Address: "v@quiet.example"}}}
	if _, err := q.Enqueue(ctx, env, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return got["quiet.example"] == 1 })
	q.mu.Lock()
	parked := 0
	for _, e := range q.parked["busy.example"] {
		if e.blocked["busy.example"] {
			parked++
		}
	}
	q.mu.Unlock()
	if parked != 28 {
		t.Errorf("%d messages parked on busy.example, want 28 (30 minus 2 in flight)", parked)
	}
	close(release)
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return got["busy.example"] == 30 })
	waitUntil(t, func() bool { msgs, _ := st.List(ctx); return len(msgs) == 0 })
	cancel()
	<-done
}

// deferredThenReopened queues a message to bob@example.net whose first
// attempt is deferred (retry 10 minutes later on the harness's clock),
// stops Run, and opens a fresh Queue on the same spool, not running.
func deferredThenReopened(t *testing.T) (*harness, string) {
	t.Helper()
	h := newHarness(t, func(string, int) transport.RecipientResult { return tempFail() })
	h.run()
	id := h.enqueue("alice@example.org", rcpt("bob@example.net"))
	h.waitFor("first attempt", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 1 })
	h.settle()
	h.stop()
	h.open()
	return h, id
}

// TestAdminWhileStopped: RetryNow and Remove work on the store when Run is
// not running (an operator tool with the relay stopped).
func TestAdminWhileStopped(t *testing.T) {
	h, id := deferredThenReopened(t) // as a separate tool would
	ctx := context.Background()
	if err := h.q.RetryNow(ctx, id); err != nil {
		t.Fatal(err)
	}
	m, err := h.q.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; !r.NextAttempt.Equal(h.clock.Now()) || r.Attempts != 1 || r.State != transport.Deferred {
		t.Errorf("after RetryNow: %+v", r)
	}
	if err := h.q.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove = %v", err)
	}
}

// TestRetryNowWhileRunStarts: RetryNow called right after "go Run" on a
// fresh Queue makes the message due at once. Run's load of the Store must
// not replace the retried message with the copy it listed before RetryNow
// wrote it (the fake clock never reaches the old NextAttempt).
func TestRetryNowWhileRunStarts(t *testing.T) {
	h, id := deferredThenReopened(t) // a restarted process: the Queue knows nothing until Run loads
	h.run()
	if err := h.q.RetryNow(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for a, _ := h.fake.counts("bob@example.net"); a != 2; a, _ = h.fake.counts("bob@example.net") {
		if time.Now().After(deadline) {
			m, _ := h.q.Get(context.Background(), id)
			t.Fatalf("RetryNow right after go Run: %d attempts after 3s, want 2; stored NextAttempt %v, now %v",
				a, m.Recipients[0].NextAttempt, h.clock.Now())
		}
		time.Sleep(time.Millisecond)
	}
}

func mustReturn(s string) ndr.Return {
	r, err := ndr.ParseReturn(s)
	if err != nil {
		panic(err)
	}
	return r
}

// removedStore is a shared store whose message was removed by another
// node while this one delivered it: Delete finds it gone, as pgstore
// reports it (ErrNotFound and ErrLeaseLost).
type removedStore struct{ *DirStore }

func (s removedStore) Delete(ctx context.Context, id string) error {
	if err := s.DirStore.Delete(ctx, id); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s, removed while node a held it: %w", ErrNotFound, id, ErrLeaseLost)
}

// TestLeaseLostToRemovalLogged: results a node cannot record because its
// leased message was removed by another node are dropped with the lost
// lease logged (the delivery may have been a second one), not silently
// as an operator's removal of a message nobody held.
func TestLeaseLostToRemovalLogged(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return ok() })
	h.q.Store = removedStore{h.store}
	h.run()
	id := h.enqueue("a@example.org", transport.Recipient{Address: "b@example.net"})
	h.waitFor("the lost lease logged", func() bool {
		return strings.Contains(h.logs.String(), "lease lost: results not recorded") && strings.Contains(h.logs.String(), id)
	})
	if strings.Contains(h.logs.String(), "recording delivery results") {
		t.Errorf("logged as a store failure:\n%s", h.logs.String())
	}
}
