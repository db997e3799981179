// Package storetest is the contract every queue.Store keeps, as one test
// suite run against each implementation (the file store and the
// PostgreSQL store).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// Run runs the contract tests as subtests of t; open returns a new, empty
// store (closed by the caller's cleanup).
func Run(t *testing.T, open func(t *testing.T) queue.Store) {
	t.Run("Operations", func(t *testing.T) { operations(t, open(t)) })
	t.Run("ConcurrentCreates", func(t *testing.T) { concurrentCreates(t, open(t)) })
	t.Run("BodyRanges", func(t *testing.T) { bodyRanges(t, open(t)) })
}

// operations: Create, ErrExists without replacing the body, Get round
// trip, Body, Update of a missing message, malformed ids, List, Delete and
// what is left after it.
func operations(t *testing.T, st queue.Store) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &queue.Message{ID: "abc-1", From: "a@example.org", ReceivedAt: now, EnvelopeID: "e1",
		ReceivedTLS: &transport.TLSInfo{Version: 0x0304, CipherSuite: 0x1301},
		Recipients:  []*queue.Recipient{{Address: "b@example.net", Notify: ndr.NotifySuccess, State: transport.Pending, NextAttempt: now}}}
	if err := st.Create(ctx, m, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if m.Size != 5 {
		t.Errorf("Size = %d", m.Size)
	}
	if err := st.Create(ctx, &queue.Message{ID: "abc-1", Recipients: m.Recipients}, strings.NewReader("other")); !errors.Is(err, queue.ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	got, err := st.Get(ctx, "abc-1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.ReceivedAt.Equal(now) || got.EnvelopeID != "e1" || got.Recipients[0].Notify != ndr.NotifySuccess ||
		got.ReceivedTLS.CipherSuite != 0x1301 || got.Size != 5 {
		t.Errorf("round trip: %+v", got)
	}
	b, err := st.Body(ctx, "abc-1")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	b.Close()
	if string(data) != "hello" {
		t.Errorf("body = %q (the second Create must not have replaced it)", data)
	}
	got.Recipients[0].State = transport.Deferred
	if err := st.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if m2, err := st.Get(ctx, "abc-1"); err != nil || m2.Recipients[0].State != transport.Deferred || m2.Size != 5 {
		t.Fatalf("Get after Update: %+v, %v", m2, err)
	}
	if err := st.Update(ctx, &queue.Message{ID: "nope", Recipients: m.Recipients}); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Update of missing = %v", err)
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "sp ace"} {
		if _, err := st.Get(ctx, bad); !errors.Is(err, queue.ErrBadID) {
			t.Errorf("Get(%q) = %v, want ErrBadID", bad, err)
		}
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if err := st.Delete(ctx, "abc-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "abc-1"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
	if _, err := st.Body(ctx, "abc-1"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Body after Delete = %v", err)
	}
	if err := st.Delete(ctx, "abc-1"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second Delete = %v", err)
	}
	if list, err := st.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after Delete = %v, %v", list, err)
	}
}

// concurrentCreates: 40 Creates at once all succeed and are all listed.
func concurrentCreates(t *testing.T, st queue.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &queue.Message{ID: fmt.Sprintf("c-%02d", i),
				Recipients: []*queue.Recipient{{Address: "b@example.net", State: transport.Pending}}}
			errs <- st.Create(context.Background(), m, strings.NewReader("body"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := st.List(context.Background())
	if err != nil || len(msgs) != 40 {
		t.Fatalf("List: %d messages, %v", len(msgs), err)
	}
}

// bodyRanges: a body of a few hundred KiB (several chunks for a store that
// chunks) reads back exactly at any offset and length, repeatedly, and
// the read past the end ends with io.EOF.
func bodyRanges(t *testing.T, st queue.Store) {
	ctx := context.Background()
	content := make([]byte, 700<<10+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range content {
		content[i] = byte(r.UintN(256))
	}
	m := &queue.Message{ID: "big", Recipients: []*queue.Recipient{{Address: "b@example.net", State: transport.Pending}}}
	if err := st.Create(ctx, m, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if m.Size != int64(len(content)) {
		t.Fatalf("Size = %d, want %d", m.Size, len(content))
	}
	b, err := st.Body(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != int64(len(content)) {
		t.Fatalf("Body.Size = %d", b.Size())
	}
	for pass := range 2 {
		data, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
		if err != nil || !bytes.Equal(data, content) {
			t.Fatalf("pass %d: whole body differs (%d bytes, %v)", pass, len(data), err)
		}
	}
	for range 50 {
		off := r.Int64N(int64(len(content)))
		n := r.IntN(300 << 10)
		p := make([]byte, n)
		got, err := b.ReadAt(p, off)
		want := min(n, len(content)-int(off))
		if got != want || !bytes.Equal(p[:got], content[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v; want %d bytes", n, off, got, err, want)
		}
		if got < n && err != io.EOF {
			t.Fatalf("short ReadAt at %d: err %v, want io.EOF", off, err)
		}
	}
}
