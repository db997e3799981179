package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
)

// idle lets the scheduler run many polls (PollInterval is 2ms in the
// harness) so that an attempt that should not happen would have happened.
func (h *harness) idle() { time.Sleep(150 * time.Millisecond) }

// A held message is not attempted past its NextAttempt, not even after
// RetryNow; the hold is in the record, so it survives a restart; Release
// delivers it.
func TestHoldRelease(t *testing.T) {
	h := newHarness(t, func(_ string, n int) transport.RecipientResult {
		if n == 1 {
			return tempFail()
		}
		return ok()
	})
	ctx := context.Background()
	h.run()
	id := h.enqueue("alice@example.org", rcpt("bob@example.net"))
	h.waitFor("first attempt", func() bool { a, _ := h.fake.counts("bob@example.net"); return a == 1 })
	h.settle()

	if err := h.q.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	m, err := h.q.Get(ctx, id)
	if err != nil || !m.Held || !m.HeldAt.Equal(h.clock.Now()) {
		t.Fatalf("after Hold: %+v, %v", m, err)
	}
	counts, err := h.q.Counts(ctx)
	if err != nil || counts[transport.Held] != 1 || counts[transport.Deferred] != 0 {
		t.Fatalf("Counts after Hold = %v, %v", counts, err)
	}
	h.clock.Advance(time.Hour - time.Minute) // well past NextAttempt, before MaxAge
	h.idle()
	if err := h.q.RetryNow(ctx, id); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if a, _ := h.fake.counts("bob@example.net"); a != 1 {
		t.Fatalf("held message attempted: %d attempts", a)
	}

	// Restart: the hold is read back from the spool.
	h.stop()
	h.open()
	h.run()
	h.idle()
	if a, _ := h.fake.counts("bob@example.net"); a != 1 {
		t.Fatalf("held message attempted after a restart: %d attempts", a)
	}
	if m, err := h.q.Get(ctx, id); err != nil || !m.Held {
		t.Fatalf("hold lost in restart: %+v, %v", m, err)
	}

	if err := h.q.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	h.waitFor("delivery after release", func() bool { return h.queued() == 0 })
	if a, d := h.fake.counts("bob@example.net"); a != 2 || d != 1 {
		t.Fatalf("attempts %d deliveries %d, want 2 and 1", a, d)
	}
	if err := h.q.Hold(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Hold of a delivered message: %v, want ErrNotFound", err)
	}
	if err := h.q.Release(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release of an unknown id: %v, want ErrNotFound", err)
	}
}

// A message held before Run starts (an operator holding mail while the
// relay is down) is not attempted when Run loads the spool.
func TestHoldBeforeRun(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return ok() })
	ctx := context.Background()
	id := h.enqueue("alice@example.org", rcpt("bob@example.net"))
	if err := h.q.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.run()
	h.idle()
	if a, _ := h.fake.counts("bob@example.net"); a != 0 {
		t.Fatalf("held message attempted at start: %d attempts", a)
	}
	if err := h.q.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	h.waitFor("delivery after release", func() bool { return h.queued() == 0 })
}

// RetryDomain makes due only the recipients of that domain; RetryAll
// makes every waiting recipient due.
func TestRetryDomainAndAll(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return tempFail() })
	ctx := context.Background()
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@example.net"), rcpt("carol@other.example"))
	h.enqueue("alice@example.org", rcpt("dave@Example.NET"))
	h.enqueue("alice@example.org", rcpt("erin@third.example"))
	addrs := []string{"bob@example.net", "carol@other.example", "dave@Example.NET", "erin@third.example"}
	attempts := func() []int {
		var out []int
		for _, a := range addrs {
			n, _ := h.fake.counts(a)
			out = append(out, n)
		}
		return out
	}
	h.waitFor("first attempts", func() bool { return equalInts(attempts(), []int{1, 1, 1, 1}) })
	h.settle()

	n, err := h.q.RetryDomain(ctx, "EXAMPLE.net.")
	if err != nil || n != 2 {
		t.Fatalf("RetryDomain = %d, %v; want 2 messages", n, err)
	}
	h.waitFor("example.net retried", func() bool { return equalInts(attempts(), []int{2, 1, 2, 1}) })
	h.settle()
	h.idle()
	if got := attempts(); !equalInts(got, []int{2, 1, 2, 1}) {
		t.Fatalf("attempts after RetryDomain = %v", got)
	}
	if n, err := h.q.RetryDomain(ctx, "nowhere.example"); err != nil || n != 0 {
		t.Fatalf("RetryDomain(nowhere) = %d, %v", n, err)
	}
	n, err = h.q.RetryAll(ctx)
	if err != nil || n != 3 {
		t.Fatalf("RetryAll = %d, %v; want 3 messages", n, err)
	}
	h.waitFor("all retried", func() bool { return equalInts(attempts(), []int{3, 2, 3, 2}) })
}

// The record keeps the TLS session and the policy of each recipient's
// last attempt, for operators ("relay queue show").
func TestLastAttemptTLSRecorded(t *testing.T) {
	h := newHarness(t, func(rcpt string, _ int) transport.RecipientResult {
		if rcpt == "bob@example.net" {
			return ok()
		}
		return tlsFailure(transport.Deferred)
	})
	ctx := context.Background()
	h.run()
	id := h.enqueue("alice@example.org", rcpt("bob@example.net"), rcpt("old@legacy.example"))
	h.waitFor("attempts", func() bool {
		m, err := h.q.Get(ctx, id)
		return err == nil && m.Recipients[0].Attempts == 1 && m.Recipients[1].Attempts == 1
	})
	m, err := h.q.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	bob, old := m.Recipients[0], m.Recipients[1]
	if bob.TLS == nil || bob.TLS.Version != 0x0304 || !bob.TLS.Verified || bob.Policy != "static:verify" {
		t.Errorf("bob: tls %+v policy %q", bob.TLS, bob.Policy)
	}
	if old.TLS != nil || old.Policy != "static:encrypt" || old.LastError == nil ||
		old.LastError.TLSFailure != policy.FailureSTARTTLSNotSupported {
		t.Errorf("old: tls %+v policy %q last error %+v", old.TLS, old.Policy, old.LastError)
	}
	c := m.Clone()
	c.Recipients[0].TLS.Verified = false
	if !m.Recipients[0].TLS.Verified {
		t.Error("Clone shares the TLS record")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A spool written before holds existed (a record with no "held", "tls" or
// "policy" keys, as the previous version wrote it, deferred past its next
// attempt) is read as not held and delivered.
func TestRecordWithoutHoldIsDelivered(t *testing.T) {
	h := newHarness(t, func(string, int) transport.RecipientResult { return ok() })
	rec := `{
	"id": "66100a0b0c0d0-0123456789ab",
	"from": "alice@example.org",
	"recipients": [
		{
			"address": "bob@example.net",
			"state": "deferred",
			"attempts": 1,
			"last_attempt": "2026-11-27T08:50:00Z",
			"next_attempt": "2026-11-27T08:55:00Z",
			"last_error": {"code": 451, "enhanced_code": "4.3.0", "message": "try again later"}
		}
	],
	"received_at": "2026-11-27T08:45:00Z",
	"size": ` + fmt.Sprint(len(testMessage)) + `
}
`
	file := msgMagic + fmt.Sprint(len(rec)) + "\n" + rec + testMessage
	if err := os.WriteFile(filepath.Join(h.dir, "66100a0b0c0d0-0123456789ab"+msgSuffix), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	h.open()
	m, err := h.q.Get(context.Background(), "66100a0b0c0d0-0123456789ab")
	if err != nil || m.Held || m.Recipients[0].TLS != nil || m.Recipients[0].Policy != "" {
		t.Fatalf("old record: %+v, %v", m, err)
	}
	h.run()
	h.waitFor("delivery of the old record", func() bool { return h.queued() == 0 })
	if a, d := h.fake.counts("bob@example.net"); a != 1 || d != 1 {
		t.Fatalf("attempts %d deliveries %d", a, d)
	}
}
