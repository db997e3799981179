package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/transport"
)

type traceLog struct {
	mu    sync.Mutex
	steps []string
}

func (l *traceLog) add(op, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(name, tmpPrefix) {
		name = "tmp"
	}
	l.steps = append(l.steps, op+" "+name)
}

func (l *traceLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.steps
	l.steps = nil
	return s
}

// TestEnqueueDurabilityOrder checks, through the store's trace seam, that
// Enqueue returns only after header, record and body were written to one
// temporary file, linked into place as ID.msg, the file fsynced and the
// directory fsynced; that Update does the same for ID.json; and that
// Delete removes ID.msg before ID.json and leaves the directory fsync to a
// later change or to its timer, which does run.
func TestEnqueueDurabilityOrder(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.deleteSyncDelay = 20 * time.Millisecond
	tl := &traceLog{}
	st.trace = tl.add
	q := &Queue{Store: st, Deliverer: newFake(nil)}
	id, err := q.Enqueue(context.Background(), &transport.Envelope{From: "a@example.org",
		Recipients: []transport.Recipient{{Address: "b@example.net"}}}, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	steps := tl.take() // Enqueue has returned: everything below happened before
	want := []string{
		"write tmp", // header (with the CRC), record, body
		"rename " + id + msgSuffix,
		"fsync tmp", // data, after the name: a torn file fails its CRC
		"fsyncdir " + filepath.Base(dir),
	}
	if strings.Join(steps, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Create steps:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
	// The file is in place: header line, record, then the body as given.
	b, err := os.ReadFile(filepath.Join(dir, id+msgSuffix))
	if err != nil || !strings.HasPrefix(string(b), msgMagic2) || !strings.HasSuffix(string(b), testMessage) {
		t.Fatalf("spool file: %q, %v", b, err)
	}
	if whole, err := checkWhole(filepath.Join(dir, id+msgSuffix)); !whole || err != nil {
		t.Fatalf("CRC of the spool file does not match: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	body, err := st.Body(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(io.NewSectionReader(body, 0, body.Size()))
	body.Close()
	if string(data) != testMessage || body.Size() != int64(len(testMessage)) {
		t.Fatalf("Body = %q (size %d)", data, body.Size())
	}

	m, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != int64(len(testMessage)) {
		t.Errorf("Size from the spool file = %d", m.Size)
	}
	m.Recipients[0].State = transport.Deferred
	if err := st.Update(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	want = []string{"write tmp", "fsync tmp", "rename " + id + metaSuffix, "fsyncdir " + filepath.Base(dir)}
	if got := tl.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Update steps: %v, want %v", got, want)
	}
	if m2, err := st.Get(context.Background(), id); err != nil || m2.Recipients[0].State != transport.Deferred || m2.Size != m.Size {
		t.Fatalf("Get after Update: %+v, %v", m2, err)
	}
	if err := st.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	want = []string{"remove " + id + msgSuffix, "remove " + id + metaSuffix}
	if got := tl.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Delete steps: %v, want %v", got, want)
	}
	// The timer makes the removal durable.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := tl.take()
		if strings.Join(got, "\n") == "fsyncdir "+filepath.Base(dir) {
			break
		}
		if len(got) != 0 || time.Now().After(deadline) {
			t.Fatalf("after Delete: %v, want one deferred fsyncdir", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The trace names the step before it runs: wait for it to complete.
	for {
		st.dirSync.mu.Lock()
		synced, lazy, timer := st.dirSync.synced, st.lazy, st.lazyTimer != nil
		st.dirSync.mu.Unlock()
		if synced >= lazy && !timer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deferred sync: synced %d, lazy %d, timer %v", synced, lazy, timer)
		}
		time.Sleep(time.Millisecond)
	}

	// A Create after a Delete covers it: Close has nothing left to sync.
	id2, err := q.Enqueue(context.Background(), &transport.Envelope{From: "a@example.org",
		Recipients: []transport.Recipient{{Address: "b@example.net"}}}, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(context.Background(), id2); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(context.Background(), &transport.Envelope{From: "a@example.org",
		Recipients: []transport.Recipient{{Address: "b@example.net"}}}, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	tl.take()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tl.take(); len(got) != 0 {
		t.Errorf("Close after a covering Create: %v, want nothing", got)
	}
}

// TestDirStoreDeleteSyncedByClose: a Delete not yet covered by a
// directory fsync is made durable by Close.
func TestDirStoreDeleteSyncedByClose(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.deleteSyncDelay = time.Hour
	m := &Message{ID: "d1", Recipients: []*Recipient{{Address: "b@example.net", State: transport.Pending}}}
	if err := st.Create(context.Background(), m, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	tl := &traceLog{}
	st.trace = tl.add
	if err := st.Delete(context.Background(), "d1"); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"remove d1" + msgSuffix, "remove d1" + metaSuffix, "fsyncdir " + filepath.Base(dir)}
	if got := tl.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Delete then Close: %v, want %v", got, want)
	}
}

// TestDirStoreLegacyLayout: a spool written before the .msg format (ID.eml
// and ID.json) is listed, read, updated and deleted; a legacy body without
// its record is cleaned.
func TestDirStoreLegacyLayout(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m := &Message{ID: "old-1", From: "a@example.org", Size: 5,
		Recipients: []*Recipient{{Address: "b@example.net", State: transport.Pending}}}
	meta, err := encodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"old-1.json": string(meta), "old-1.eml": "hello", "half.eml": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := os.Stat(filepath.Join(dir, "half.eml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("legacy body without record kept: %v", err)
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "old-1" || list[0].Size != 5 {
		t.Fatalf("List = %v, %v", list, err)
	}
	b, err := st.Body(ctx, "old-1")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	b.Close()
	if string(data) != "hello" {
		t.Errorf("legacy body = %q", data)
	}
	list[0].Recipients[0].State = transport.Deferred
	if err := st.Update(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(ctx, "old-1"); err != nil || got.Recipients[0].State != transport.Deferred {
		t.Fatalf("Get after Update: %+v, %v", got, err)
	}
	if err := st.Create(ctx, &Message{ID: "old-1", Recipients: list[0].Recipients}, strings.NewReader("y")); !errors.Is(err, ErrExists) {
		t.Errorf("Create over a legacy message = %v, want ErrExists", err)
	}
	if err := st.Delete(ctx, "old-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "old-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != lockName {
		t.Errorf("left in the spool: %v", entries)
	}
}

// TestDirStoreCorruptSpoolFile: .msg files with a bad header are named in
// an ErrCorrupt error and left in place; Body refuses them.
func TestDirStoreCorruptSpoolFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"nomagic.msg":  "hello\r\n",
		"short.msg":    msgMagic + "500\n{}",
		"badlen.msg":   msgMagic + "x\n{}",
		"otherid.msg":  msgMagic + "60\n" + `{"id":"zz","recipients":[{"address":"a","state":"pending"}]}` + "body",
		"negative.msg": msgMagic + "-1\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msgs, err := st.List(context.Background())
	if len(msgs) != 0 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List = %v, %v", msgs, err)
	}
	for _, id := range []string{"nomagic", "short", "badlen", "otherid", "negative"} {
		if !strings.Contains(err.Error(), id+msgSuffix) {
			t.Errorf("%s not named in %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(dir, id+msgSuffix)); err != nil {
			t.Errorf("%s not left in place: %v", id, err)
		}
	}
	for _, id := range []string{"nomagic", "short", "badlen", "negative"} {
		if b, err := st.Body(context.Background(), id); err == nil {
			b.Close()
			t.Errorf("Body(%s) accepted a bad header", id)
		}
	}
}

// FuzzReadMsgHeader: the start of a spool file is parsed without panics,
// and whatever is accepted names a valid record and an offset inside the
// input.
func FuzzReadMsgHeader(f *testing.F) {
	rec := `{"id":"a","recipients":[{"address":"b","state":"pending"}]}`
	f.Add([]byte(msgMagic + "59\n" + rec + "body"))                  // good
	f.Add([]byte(msgMagic + "059\n" + rec))                          // leading zero
	f.Add([]byte(msgMagic + "99999999999999999999\n"))               // overflow
	f.Add([]byte("mailtls-spool-2 59\n" + rec))                      // other version
	f.Add([]byte(msgMagic + "58" + strings.Repeat(" ", 100) + "\n")) // long line
	f.Fuzz(func(t *testing.T, b []byte) {
		m, off, err := readMsgHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if !validID(m.ID) || off <= 0 || off > int64(len(b)) {
			t.Fatalf("accepted id %q at offset %d of %d", m.ID, off, len(b))
		}
	})
}

func TestDirStoreRejectsCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"bad.json": "{not json", "bad.eml": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	good := &Message{ID: "good", Recipients: []*Recipient{{Address: "b@example.net", State: transport.Pending}}}
	if err := st.Create(context.Background(), good, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	msgs, err := st.List(context.Background())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("List over a corrupt record = %v, want ErrCorrupt naming it", err)
	}
	if len(msgs) != 1 || msgs[0].ID != "good" {
		t.Errorf("List returned %d messages, want the good one", len(msgs))
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.json")); err != nil {
		t.Errorf("corrupt record not left for the operator: %v", err)
	}

	// The queue starts anyway and delivers the good message.
	delivered := make(chan string, 1)
	d := DeliverFunc(func(_ context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		delivered <- env.Recipients[0].Address
		rr := ok()
		rr.Recipient = env.Recipients[0]
		return &transport.Result{Recipients: []transport.RecipientResult{rr}}, nil
	})
	logs := &logBuffer{}
	q := &Queue{Store: st, Deliverer: d, PollInterval: 2 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("good message not delivered next to a corrupt one")
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "spool records skipped") {
		t.Errorf("corrupt record not logged:\n%s", logs)
	}
}

func TestCleanRemovesMetadataWithoutBody(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDirStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("metadata without body kept: %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	m := &Message{ID: "0001-ab", From: "a@example.org", ReceivedAt: time.Unix(0, 0).UTC(), ReportSeq: 2,
		Recipients: []*Recipient{{Address: "b@example.net", State: transport.Deferred, Attempts: 3,
			LastError:   &LastError{Code: 451, EnhancedCode: "4.7.4", Message: "no STARTTLS", TLSFailure: "starttls-not-supported"},
			FinalReport: "0001-ab.r1"}}}
	good, err := encodeMessage(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{}`))                                                             // no id
	f.Add([]byte(`{"id":"x","recipients":[null]}`))                                 // null recipient
	f.Add([]byte(`{"id":"x","recipients":[{"address":"a","state":"bogus"}]}`))      // unknown state
	f.Add([]byte(`{"id":"../x","recipients":[{"address":"a","state":"pending"}]}`)) // path in id
	f.Add([]byte(`{"id":"x","size":-1,"recipients":[{"state":"failed","final_report":"a/b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		// Whatever decodes must be safe to use as file names and must
		// survive a write and a read unchanged in the fields that matter.
		if !validID(m.ID) {
			t.Fatalf("accepted id %q", m.ID)
		}
		enc, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("re-encoding an accepted record: %v", err)
		}
		m2, err := DecodeMessage(enc)
		if err != nil {
			t.Fatalf("decoding a re-encoded record: %v", err)
		}
		if m2.ID != m.ID || len(m2.Recipients) != len(m.Recipients) || m2.Done() != m.Done() {
			t.Fatalf("round trip changed the record")
		}
		for i, r := range m.Recipients {
			if m2.Recipients[i].State != r.State || m2.Recipients[i].Address != r.Address {
				t.Fatalf("recipient %d changed", i)
			}
		}
		_ = m.Clone()
	})
}

// TestDirStoreConcurrentCreates exercises the shared directory fsync:
// every Create returns only after a sync that began after its renames.
func TestDirStoreConcurrentCreates(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &Message{ID: "c" + strings.Repeat("x", i%5) + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
				Recipients: []*Recipient{{Address: "b@example.net", State: transport.Pending}}}
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
	if _, err := OpenDirStore(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenDirStore while open = %v, want ErrLocked", err)
	}
	st.Close()
	st2, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	msgs, err := st2.List(context.Background())
	if err != nil || len(msgs) != 40 {
		t.Fatalf("after reopen: %d messages, %v", len(msgs), err)
	}
	// Every sync asked for ran; a Create alone asks for a directory fsync,
	// Creates together share syncfs(2), which covers the directory too.
	for _, g := range []*groupSync{&st.dirSync, &st.dataSync} {
		g.mu.Lock()
		if g.synced != g.requested {
			t.Errorf("synced %d of %d requested syncs", g.synced, g.requested)
		}
		g.mu.Unlock()
	}
	if n := st.dirSync.requested + st.dataSync.requested; n != 40 {
		t.Errorf("%d syncs asked for by 40 Creates", n)
	}
}

// TestDeliveredMessageStoreSteps: a message delivered at its first attempt
// costs, in the store, one file fsync and a directory fsync before Enqueue
// returns, then two removals and no write at all; the removal is made
// durable by the deferred directory fsync. The delivery starts as soon as
// the message is queued: the poll interval here is an hour, so only
// Enqueue's wake-up can start it.
func TestDeliveredMessageStoreSteps(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.deleteSyncDelay = 10 * time.Millisecond
	tl := &traceLog{}
	st.trace = tl.add
	fake := newFake(func(string, int) transport.RecipientResult { return ok() })
	q := &Queue{Store: st, Deliverer: fake, PollInterval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Let Run load the (empty) store and go to sleep first.
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		running := q.running
		q.mu.Unlock()
		if running || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)

	start := time.Now()
	id, err := q.Enqueue(context.Background(), &transport.Envelope{From: "a@example.org",
		Recipients: []transport.Recipient{{Address: "b@example.net"}}}, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for {
		steps = append(steps, tl.take()...)
		if len(steps) >= 7 || time.Since(start) > 5*time.Second {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	want := []string{
		"write tmp", "rename " + id + msgSuffix, "fsync tmp", "fsyncdir " + filepath.Base(dir),
		"remove " + id + msgSuffix, "remove " + id + metaSuffix,
		"fsyncdir " + filepath.Base(dir),
	}
	if strings.Join(steps, "\n") != strings.Join(want, "\n") {
		t.Fatalf("store steps:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
	if _, delivered := fake.counts("b@example.net"); delivered != 1 {
		t.Fatalf("delivered %d times", delivered)
	}
	// Far below the poll interval: the wake-up started the delivery.
	if elapsed > 2*time.Second {
		t.Errorf("enqueue to durable removal took %v", elapsed)
	}
	time.Sleep(30 * time.Millisecond)
	if extra := tl.take(); len(extra) != 0 {
		t.Errorf("store steps after the message was done: %v", extra)
	}
}

// TestGroupCommitData: Creates in flight together share one commit (one
// syncfs(2) for many files, on Linux), and each file is synced after it
// was written and linked as ID.msg; every message is then complete on
// reopen.
func TestGroupCommitData(t *testing.T) {
	if !haveSyncFS {
		t.Skip("no syncfs(2) here: every Create fsyncs its own file")
	}
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var steps []string
	st.trace = func(op, name string) {
		mu.Lock()
		steps = append(steps, op+" "+name)
		mu.Unlock()
	}
	const n = 64
	body := strings.Repeat("x", 8<<10) + "\r\n"
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- st.Create(context.Background(), benchMessage(fmt.Sprintf("m%02d", i)), strings.NewReader(body))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	runs, shared := 0, 0
	written, linked := map[string]bool{}, map[string]bool{}
	for _, s := range steps {
		op, name, _ := strings.Cut(s, " ")
		switch op {
		case "write":
			written[name] = true
		case "rename":
			linked[strings.TrimSuffix(name, msgSuffix)] = true
		case "syncfs", "fsync":
			_, id, _ := strings.Cut(name, ".")
			if !written[name] || !linked[id] {
				t.Errorf("%s before the file was written and linked", s)
			}
			if op == "syncfs" {
				shared++
			}
		case "syncfs-run":
			runs++
		}
	}
	t.Logf("%d Creates: %d data syncs shared among %d callers, %d on their own", n, runs, shared, n-shared)
	if shared == 0 || runs == 0 || runs >= shared {
		t.Errorf("%d syncfs runs for %d callers that asked for one: no group commit", runs, shared)
	}
	st2, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for i := 0; i < n; i++ {
		b, err := st2.Body(context.Background(), fmt.Sprintf("m%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		if b.Size() != int64(len(body)) {
			t.Errorf("m%02d: body %d bytes, want %d", i, b.Size(), len(body))
		}
		b.Close()
	}
}

// TestRecoverInterruptedCommit: the states a power cut can leave a Create
// in before its commit returned (its temporary name still linked to
// ID.msg, the data whole, torn or missing) and the ones a process crash
// leaves (a temporary file not linked yet, or an older Create's). On
// reopen a whole message is kept, a torn one removed, and every
// temporary name is gone.
func TestRecoverInterruptedCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("line of the body\r\n", 200)
	ids := []string{"whole", "torn", "empty", "zeroed", "badheader", "unlinked", "kept"}
	for _, id := range ids {
		if err := st.Create(ctx, benchMessage(id), strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	msg := func(id string) string { return filepath.Join(dir, id+msgSuffix) }
	relink := func(id string) {
		if err := os.Link(msg(id), filepath.Join(dir, tmpPrefix+"0123456789abcdef."+id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"whole", "torn", "empty", "zeroed", "badheader"} {
		relink(id)
	}
	size := func(id string) int64 {
		fi, err := os.Stat(msg(id))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if err := os.Truncate(msg("torn"), size("torn")-100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(msg("empty"), 0); err != nil {
		t.Fatal(err)
	}
	// Blocks allocated but never written come back as zeros.
	f, err := os.OpenFile(msg("zeroed"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 512), 1024)
	f.Close()
	f, _ = os.OpenFile(msg("badheader"), os.O_WRONLY, 0)
	f.WriteAt(make([]byte, 10), 0)
	f.Close()
	// A temporary file whose link was never made, and one from the
	// ordered path (no id in its name): removed, nothing else touched.
	os.WriteFile(filepath.Join(dir, tmpPrefix+"fedcba9876543210.unlinked"), []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(dir, tmpPrefix+"fedcba9876543210"), []byte("partial"), 0o600)

	st2, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	msgs, err := st2.List(ctx)
	if err != nil {
		t.Fatalf("List after recovery: %v", err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.ID)
		b, err := st2.Body(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
		b.Close()
		if string(data) != body {
			t.Errorf("%s: body of %d bytes not the one written", m.ID, len(data))
		}
	}
	sort.Strings(got)
	if want := "kept unlinked whole"; strings.Join(got, " ") != want {
		t.Errorf("after recovery: %v, want %s", got, want)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temporary file %s left after recovery", e.Name())
		}
	}
}

// BenchmarkCreateParallel measures Create, 1 KiB bodies, with 1, 4 and 16
// concurrent callers, in the same run for each way of committing:
//
//   - commit: the single-flush commit (link, then one fsync or shared
//     syncfs), lingering up to DefaultCommitLinger for Creates in flight;
//   - commit-nolinger: the same without lingering;
//   - commit-fsync: the same order, each Create fsyncing its own file
//     (the kernel's journal may still share one commit among them), then
//     the shared directory fsync;
//   - ordered: data synced (shared syncfs when others are in flight),
//     link, shared directory fsync;
//   - ordered-fsync: data fsynced per file, link, shared directory fsync.
//
// go test ./transport/queue -run '^$' -bench CreateParallel -count 5
func BenchmarkCreateParallel(b *testing.B) {
	modes := []struct {
		name             string
		ordered, noGroup bool
		linger           time.Duration
	}{
		{"commit", false, false, 0},
		{"commit-nolinger", false, false, -1},
		{"commit-fsync", false, true, 0},
		{"ordered", true, false, 0},
		{"ordered-fsync", true, true, 0},
		{"log", false, false, 0}, // LogStore
	}
	for _, c := range []int{1, 4, 16} {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("c=%d/%s", c, mode.name), func(b *testing.B) {
				var st Store
				if mode.name == "log" {
					ls, err := OpenLogStore(b.TempDir(), LogStoreOptions{})
					if err != nil {
						b.Fatal(err)
					}
					defer ls.Close()
					st = ls
				} else {
					ds, err := OpenDirStore(b.TempDir())
					if err != nil {
						b.Fatal(err)
					}
					defer ds.Close()
					ds.ordered, ds.noGroupData, ds.linger = mode.ordered, mode.noGroup, mode.linger
					st = ds
				}
				body := strings.Repeat("y", 1<<10)
				var seq atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for g := 0; g < c; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := seq.Add(1)
							if i > int64(b.N) {
								return
							}
							id := fmt.Sprintf("b%d", i)
							if err := st.Create(context.Background(), benchMessage(id), strings.NewReader(body)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}

func benchMessage(id string) *Message {
	return &Message{ID: id, From: "a@example.org", Recipients: []*Recipient{{Address: "b@example.net"}}}
}
