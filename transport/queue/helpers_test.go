package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/mailtls/mailtls/internal/syncbuf"
	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
)

// clock is a fake Now seam that tests advance by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// script decides the result of one attempt for one recipient; n counts the
// attempts for that recipient, from 1.
type script func(rcpt string, n int) transport.RecipientResult

// fakeDeliverer delivers by script and records every call. Reports (null
// reverse-path) are kept for parsing and delivered, unless reportScript
// says otherwise.
type fakeDeliverer struct {
	mu           sync.Mutex
	script       script
	reportScript script
	attempts     map[string]int // per recipient
	delivered    map[string]int // successes per recipient
	reports      [][]byte
	reportTo     []string
	envelopes    []*transport.Envelope
}

func newFake(s script) *fakeDeliverer {
	return &fakeDeliverer{script: s, attempts: map[string]int{}, delivered: map[string]int{}}
}

func (f *fakeDeliverer) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	data, err := io.ReadAll(io.NewSectionReader(body, 0, size))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.envelopes = append(f.envelopes, env)
	res := &transport.Result{}
	for _, rc := range env.Recipients {
		f.attempts[rc.Address]++
		n := f.attempts[rc.Address]
		var rr transport.RecipientResult
		switch {
		case env.From == "" && f.reportScript != nil:
			rr = f.reportScript(rc.Address, n)
		case env.From == "":
			rr = ok()
		default:
			rr = f.script(rc.Address, n)
		}
		rr.Recipient = rc
		if rr.RemoteMTA.IP != nil {
			// The fake connected to the server its result names.
			res.Attempts = append(res.Attempts, transport.Attempt{RemoteMTA: rr.RemoteMTA, SourceIP: net.IPv4(127, 0, 0, 1)})
		}
		if rr.Status == transport.Delivered || rr.Status == transport.Relayed {
			f.delivered[rc.Address]++
			if env.From == "" {
				f.reports = append(f.reports, data)
				f.reportTo = append(f.reportTo, rc.Address)
			}
		}
		res.Recipients = append(res.Recipients, rr)
	}
	return res, nil
}

func (f *fakeDeliverer) counts(rcpt string) (attempts, delivered int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[rcpt], f.delivered[rcpt]
}

// parsedReports parses every report delivered so far.
func (f *fakeDeliverer) parsedReports(t *testing.T) []*ndr.Report {
	t.Helper()
	f.mu.Lock()
	raw := append([][]byte(nil), f.reports...)
	f.mu.Unlock()
	var out []*ndr.Report
	for _, b := range raw {
		r, err := ndr.Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("report does not parse: %v\n%s", err, b)
		}
		out = append(out, r)
	}
	return out
}

func (f *fakeDeliverer) rawReports() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.reports...)
}

func ok() transport.RecipientResult {
	return transport.RecipientResult{
		Status:      transport.Delivered,
		Reply:       &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "OK queued"},
		RemoteMTA:   transport.RemoteMTA{Host: "mx.example.net", Port: 25},
		TLS:         &transport.TLSInfo{Version: 0x0304, CipherSuite: 0x1301, Verified: true},
		Requirement: policy.Requirement{Level: policy.Verify, Source: policy.SourceStatic},
	}
}

func relayed() transport.RecipientResult {
	r := ok()
	r.Status = transport.Relayed
	return r
}

// tlsFailure is a STARTTLS-not-offered result, found by the Connector
// itself on a connection to mx.legacy.example: deferred or failed.
func tlsFailure(status transport.Status) transport.RecipientResult {
	code, class := 451, 4
	if status == transport.Failed {
		code, class = 554, 5
	}
	return transport.RecipientResult{
		Status: status,
		Reply: &transport.Error{Local: true, Code: code, EnhancedCode: transport.EnhancedCode{class, 7, 4},
			Message: "STARTTLS required by policy but not offered by mx.legacy.example",
			Err:     transport.ErrSTARTTLSNotOffered},
		RemoteMTA:   transport.RemoteMTA{Host: "mx.legacy.example", IP: net.IPv4(192, 0, 2, 25), Port: 25},
		Requirement: policy.Requirement{Domain: "legacy.example", Level: policy.Encrypt, Source: policy.SourceStatic},
		TLSFailure:  policy.FailureSTARTTLSNotSupported,
	}
}

func tempFail() transport.RecipientResult {
	return transport.RecipientResult{
		Status:    transport.Deferred,
		Reply:     &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 3, 0}, Message: "try again later"},
		RemoteMTA: transport.RemoteMTA{Host: "mx.example.net", Port: 25},
	}
}

func permFail() transport.RecipientResult {
	return transport.RecipientResult{
		Status:    transport.Failed,
		Reply:     &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 1, 1}, Message: "no such user"},
		RemoteMTA: transport.RemoteMTA{Host: "mx.example.net", Port: 25},
	}
}

// logBuffer collects log output safely.
type logBuffer = syncbuf.Buffer

type harness struct {
	t     *testing.T
	dir   string
	store *DirStore
	clock *clock
	fake  *fakeDeliverer
	q     *Queue
	logs  *logBuffer
	stop  func()
}

// newHarness builds a queue on a fresh spool with a fake clock, a 10-minute
// backoff, a 1-hour MaxAge and a 30-minute DelayWarning.
func newHarness(t *testing.T, s script) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newClock(), fake: newFake(s), logs: &logBuffer{}}
	h.open()
	return h
}

func (h *harness) open() {
	h.t.Helper()
	if h.store != nil {
		h.store.Close()
	}
	st, err := OpenDirStore(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { st.Close() })
	h.store = st
	h.q = &Queue{
		Store:        st,
		Deliverer:    h.fake,
		Hostname:     "relay.example.org",
		MaxAge:       time.Hour,
		DelayWarning: 30 * time.Minute,
		Backoff:      []time.Duration{10 * time.Minute},
		PollInterval: 2 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:          h.clock.Now,
	}
}

func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.q.Run(ctx) }()
	h.stop = func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				h.t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			h.t.Fatal("Run did not return after cancel")
		}
		h.stop = nil
	}
	h.t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
		}
	})
}

func (h *harness) enqueue(from string, rcpts ...transport.Recipient) string {
	h.t.Helper()
	env := &transport.Envelope{From: from, Recipients: rcpts, EnvelopeID: "env-1"}
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader(testMessage))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\nlogs:\n%s", what, h.logs.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// settle waits until no recipient is due now and nothing is in flight,
// so that advancing the clock starts a new round.
func (h *harness) settle() {
	h.t.Helper()
	h.waitFor("queue to settle", func() bool {
		h.q.mu.Lock()
		defer h.q.mu.Unlock()
		if h.q.active > 0 {
			return false
		}
		now := h.clock.Now()
		for _, e := range h.q.entries {
			if e.busy || e.dirty || len(e.inflight) > 0 || needsFinish(e.msg) {
				return false
			}
			for _, r := range e.msg.Recipients {
				if !r.State.Final() && !r.NextAttempt.After(now) {
					return false
				}
			}
		}
		return true
	})
}

func (h *harness) queued() int {
	h.t.Helper()
	msgs, err := h.store.List(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return len(msgs)
}

func rcpt(addr string, notify ...string) transport.Recipient {
	n, err := ndr.ParseNotify(strings.Join(notify, ","))
	if err != nil {
		panic(err)
	}
	return transport.Recipient{Address: addr, Notify: n, ORCPT: "rfc822;" + addr}
}

const testMessage = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nHello Bob.\r\n"

// decodeParts returns the decoded text of every leaf part of a MIME
// message, read with go-message (independently of ndr).
func decodeParts(raw string) (string, error) {
	e, err := message.Read(strings.NewReader(raw))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if mr := part.MultipartReader(); mr != nil {
			return nil
		}
		data, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		b.Write(data)
		b.WriteString("\n")
		return nil
	})
	return b.String(), err
}
