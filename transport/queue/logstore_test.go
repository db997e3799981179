package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailtls/mailtls/transport"
)

func logMsgFor(id string) *Message {
	return &Message{ID: id, From: "a@example.org", Recipients: []*Recipient{{Address: "b@example.net", State: transport.Pending}}}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "log-*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readBody(t *testing.T, st Store, id string) string {
	t.Helper()
	b, err := st.Body(context.Background(), id)
	if err != nil {
		t.Fatalf("Body(%s): %v", id, err)
	}
	defer b.Close()
	data, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestLogStoreReopen: what Create, Update and Delete did is what the next
// OpenLogStore finds, records and bodies, across segment changes and the
// copies that keep the log short.
func TestLogStoreReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "log")
	opt := LogStoreOptions{SegmentSize: 4 << 10, MaxSealedSegments: 1}
	st, err := OpenLogStore(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	// One message that stays (deferred), many that come and go: the
	// segments they fill must be removed, the one that stays copied.
	keep := logMsgFor("keep")
	if err := st.Create(ctx, keep, strings.NewReader("the body that stays\r\n")); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		id := fmt.Sprintf("m%d", i)
		if err := st.Create(ctx, logMsgFor(id), strings.NewReader(strings.Repeat("x", 300)+"\r\n")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := st.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if i == 100 {
			keep.Recipients[0].State = transport.Deferred
			keep.Recipients[0].Attempts = 3
			if err := st.Update(ctx, keep); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Half of the 200 stay, about 70 KiB: with 4 KiB segments and copies
	// forward, about 20 segments hold them; without removal there would
	// be over 30.
	if n := len(segFiles(t, dir)); n > 25 {
		t.Errorf("%d segments for about 70 KiB of live messages in 4 KiB segments", n)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = OpenLogStore(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, err := st.List(ctx)
	if err != nil || len(list) != 101 {
		t.Fatalf("List after reopen: %d messages, %v; want 101", len(list), err)
	}
	got, err := st.Get(ctx, "keep")
	if err != nil || got.Recipients[0].Attempts != 3 || got.Recipients[0].State != transport.Deferred {
		t.Fatalf("keep after reopen: %+v, %v", got, err)
	}
	if b := readBody(t, st, "keep"); b != "the body that stays\r\n" {
		t.Errorf("keep's body = %q", b)
	}
	if b := readBody(t, st, "m199"); b != strings.Repeat("x", 300)+"\r\n" {
		t.Errorf("m199's body = %q", b)
	}
	if _, err := st.Get(ctx, "m198"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted m198 after reopen: %v", err)
	}
}

// TestLogStoreTornTail: a crash that cut the last entry of a segment (the
// file ends in the middle of it, or the entry is garbage) loses that entry
// only, which no caller had seen return; the entries before it are read,
// writing goes on in a new segment, and the next open reads both alike.
func TestLogStoreTornTail(t *testing.T) {
	ctx := context.Background()
	for _, cut := range []string{"truncated", "zeroed", "flipped"} {
		t.Run(cut, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "log")
			st, err := OpenLogStore(dir, LogStoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a", "b", "c"} {
				if err := st.Create(ctx, logMsgFor(id), strings.NewReader("body of "+id+"\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments: %v", segs)
			}
			data, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			last := bytes.LastIndex(data, []byte("body of c"))
			switch cut {
			case "truncated":
				data = data[:last+3]
			case "zeroed":
				copy(data[last:], make([]byte, 8))
			case "flipped":
				data[last] ^= 1
			}
			if err := os.WriteFile(segs[0], data, 0o600); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				st, err = OpenLogStore(dir, LogStoreOptions{})
				if err != nil {
					t.Fatal(err)
				}
				list, err := st.List(ctx)
				want := 2 + round
				if err != nil || len(list) != want {
					t.Fatalf("round %d: %d messages, %v; want %d", round, len(list), err, want)
				}
				if _, err := st.Get(ctx, "c"); !errors.Is(err, ErrNotFound) {
					t.Errorf("the torn entry c was read: %v", err)
				}
				if b := readBody(t, st, "b"); b != "body of b\r\n" {
					t.Errorf("b = %q", b)
				}
				if round == 0 {
					if err := st.Create(ctx, logMsgFor("d"), strings.NewReader("body of d\r\n")); err != nil {
						t.Fatal(err)
					}
				} else if b := readBody(t, st, "d"); b != "body of d\r\n" {
					t.Errorf("d = %q", b)
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestLogStoreRefusesDirStore: a DirStore spool is not opened as a log
// (its messages would be ignored).
func TestLogStoreRefusesDirStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	ds, err := OpenDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Create(context.Background(), logMsgFor("x"), strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	ds.Close()
	if st, err := OpenLogStore(dir, LogStoreOptions{}); err == nil || !strings.Contains(err.Error(), "DirStore") {
		if st != nil {
			st.Close()
		}
		t.Fatalf("OpenLogStore of a DirStore spool = %v", err)
	}
}

// TestLogStorePowerCut simulates power cuts at the level of the disk:
// after a flush completed, what the disk holds is everything written
// before that flush began, plus any subset of the 512-byte sectors
// written since (a device may write back dirty data in any order, and a
// power cut drops the rest). Four goroutines create, update and delete
// messages; before each flush the test copies what was written so far.
// For sampled flushes and random subsets of the later sectors, a LogStore
// opened on that image must hold every message whose Create had
// returned after that flush completed, with its body intact and at
// least the last update that had returned, and nothing that was never
// created. (Segments are prepared with zeros and flushed before use, so
// the file's size and blocks do not change: the sectors are the whole
// state.)
func TestLogStorePowerCut(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "log")
	st, err := OpenLogStore(dir, LogStoreOptions{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var snaps [][]byte // content written before flush i began
	completed := -1    // the last flush that completed
	st.flushHook = func(f *os.File, end int64, done bool) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			completed = len(snaps) - 1
			return
		}
		b := make([]byte, end)
		if _, err := f.ReadAt(b, 0); err != nil {
			t.Error(err)
		}
		snaps = append(snaps, b)
	}
	acked := func() int { mu.Lock(); defer mu.Unlock(); return completed }

	type history struct {
		body     string
		created  int // flush completed when Create returned
		updates  map[int]int
		attempts int // last update that returned
	}
	var hmu sync.Mutex
	hist := map[string]*history{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 60 {
				id := fmt.Sprintf("g%d-%d", g, i)
				body := strings.Repeat(fmt.Sprintf("%s:%d ", id, rnd.IntN(1000)), 1+rnd.IntN(200)) + "\r\n"
				m := logMsgFor(id)
				if err := st.Create(ctx, m, strings.NewReader(body)); err != nil {
					t.Error(err)
					return
				}
				h := &history{body: body, created: acked(), updates: map[int]int{}}
				hmu.Lock()
				hist[id] = h
				hmu.Unlock()
				for a := 1; a <= rnd.IntN(3); a++ {
					m.Recipients[0].State, m.Recipients[0].Attempts = transport.Deferred, a
					if err := st.Update(ctx, m); err != nil {
						t.Error(err)
						return
					}
					hmu.Lock()
					h.attempts, h.updates[a] = a, acked()
					hmu.Unlock()
				}
				if rnd.IntN(3) == 0 {
					if err := st.Delete(ctx, id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	segs := segFiles(t, dir)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Fatalf("segments %v: the test needs one", segs)
	}
	final, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) < 20 {
		t.Fatalf("only %d flushes", len(snaps))
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	states := 0
	for trial := range 60 {
		k := rnd.IntN(len(snaps))
		if trial == 0 {
			k = len(snaps) - 1
		}
		img := make([]byte, len(final)) // the segment was zeros before
		copy(img, snaps[k])
		keep := rnd.Float64() // share of the later sectors that reached the disk
		for off := len(snaps[k]) / 512 * 512; off < len(final); off += 512 {
			end := min(off+512, len(final))
			if rnd.Float64() < keep {
				copy(img[max(off, len(snaps[k])):end], final[max(off, len(snaps[k])):end])
			}
		}
		cdir := filepath.Join(t.TempDir(), "cut")
		if err := os.MkdirAll(cdir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cdir, filepath.Base(segs[0])), img, 0o600); err != nil {
			t.Fatal(err)
		}
		cut, err := OpenLogStore(cdir, LogStoreOptions{SegmentSize: 1 << 20})
		if err != nil {
			t.Fatalf("flush %d: open after the cut: %v", k, err)
		}
		list, err := cut.List(ctx)
		if err != nil {
			t.Fatalf("flush %d: %v", k, err)
		}
		present := map[string]*Message{}
		for _, m := range list {
			present[m.ID] = m
			h := hist[m.ID]
			if h == nil {
				t.Errorf("flush %d: %s was never created", k, m.ID)
				continue
			}
			if b := readBody(t, cut, m.ID); b != h.body {
				t.Errorf("flush %d: body of %s differs", k, m.ID)
			}
		}
		for id, h := range hist {
			m := present[id]
			if h.created > k {
				continue // not acknowledged before this cut
			}
			if m == nil {
				// Only a Delete may remove it; Deletes are not waited for,
				// so a missing message must have been deleted.
				if _, err := st.Get(ctx, id); err == nil {
					t.Errorf("flush %d: %s lost (created by flush %d)", k, id, h.created)
				}
				continue
			}
			for a, at := range h.updates {
				if at <= k && m.Recipients[0].Attempts < a {
					t.Errorf("flush %d: %s has attempts %d, but the update to %d returned after flush %d", k, id, m.Recipients[0].Attempts, a, at)
				}
			}
		}
		cut.Close()
		states++
	}
	t.Logf("%d flushes, %d messages; %d power-cut images checked", len(snaps), len(hist), states)
}

// segmentOf lays out a segment holding the given entries, as a LogStore
// writes them.
func segmentOf(entries ...logEntry) []byte {
	seg := []byte(segHeader)
	for _, e := range entries {
		buf := make([]byte, entryHdrLen, entryHdrLen+len(e.id)+int(e.bodySize)+len(e.rec))
		buf = append(append(buf, e.id...), bytes.Repeat([]byte{'b'}, int(e.bodySize))...)
		seg = append(seg, encodeEntry(buf, e.kind, e.id, e.bodySize, e.rec)...)
	}
	return seg
}

// FuzzScanSegment feeds arbitrary segment contents to the recovery scan:
// it must not panic, report only entries that lie inside the data, in
// order, each verified (so re-encoding it gives the same bytes), and
// stop at the first it cannot verify. A well-formed segment, with or
// without a zeroed tail, scans back entry for entry.
func FuzzScanSegment(f *testing.F) {
	good := segmentOf(
		logEntry{kind: entrySeal, id: sealID, rec: sealEntry(7, 4096)[entryHdrLen+len(sealID):]},
		logEntry{kind: entryPut, id: "a1", bodySize: 10, rec: []byte(`{"id":"a1"}`)},
		logEntry{kind: entryUpdate, id: "a1", rec: []byte(`{"id":"a1","x":1}`)},
		logEntry{kind: entryRemove, id: "a1"},
	)
	f.Add(good)
	f.Add(append(good, make([]byte, 100)...))
	f.Add(good[:len(good)-5])
	f.Add([]byte(segHeader))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got []logEntry
		end, clean := scanSegment(bytes.NewReader(data), int64(len(data)), func(e logEntry) { got = append(got, e) })
		if end < 0 || end > int64(len(data)) {
			t.Fatalf("stopped at %d of %d bytes", end, len(data))
		}
		if end == 0 && len(got) > 0 {
			t.Fatal("entries from a segment without header")
		}
		if clean && end < int64(len(data)) && !allZero(data[end:min(end+entryHdrLen, int64(len(data)))]) {
			t.Fatalf("clean stop at %d before non-zero bytes", end)
		}
		// Every entry re-encodes to the bytes it was read from, in order,
		// from the header to where the scan stopped.
		if end > 0 {
			re := []byte(segHeader)
			for _, g := range got {
				if g.bodyOff < 0 || g.bodyOff+g.bodySize > end {
					t.Fatalf("entry %s body at %d+%d, past the stop %d", g.id, g.bodyOff, g.bodySize, end)
				}
				buf := make([]byte, entryHdrLen, entryHdrLen+len(g.id)+int(g.bodySize)+len(g.rec))
				buf = append(append(buf, g.id...), data[g.bodyOff:g.bodyOff+g.bodySize]...)
				re = append(re, encodeEntry(buf, g.kind, g.id, g.bodySize, g.rec)...)
			}
			if !bytes.Equal(re, data[:end]) {
				t.Fatalf("the %d entries read do not re-encode to the %d bytes scanned", len(got), end)
			}
		}
	})
}

// TestScanSegment: a well-formed segment scans back whole; cut anywhere
// inside its last entry, it gives the entries before it, not clean.
func TestScanSegment(t *testing.T) {
	want := []logEntry{
		{kind: entryPut, id: "a1", bodySize: 10, rec: []byte(`{"id":"a1"}`)},
		{kind: entryRemove, id: "a1"},
		{kind: entryPut, id: "b2", bodySize: 3, rec: []byte(`{"id":"b2"}`)},
	}
	seg := segmentOf(want...)
	var got []logEntry
	end, clean := scanSegment(bytes.NewReader(seg), int64(len(seg)), func(e logEntry) { got = append(got, e) })
	if end != int64(len(seg)) || !clean || len(got) != 3 || got[2].id != "b2" || string(got[0].rec) != `{"id":"a1"}` {
		t.Fatalf("scan = %d, %v, %+v", end, clean, got)
	}
	last := len(segmentOf(want[:2]...))
	for cut := last + 1; cut < len(seg); cut++ {
		got = got[:0]
		end, clean := scanSegment(bytes.NewReader(seg[:cut]), int64(cut), func(e logEntry) { got = append(got, e) })
		if end != int64(last) || clean || len(got) != 2 {
			t.Fatalf("cut at %d: stopped at %d (want %d), clean %v, %d entries", cut, end, last, clean, len(got))
		}
	}
}

// TestLogStoreForgedEntryInBody: a client controls message bodies. A body
// that holds a well-formed entry (any id, any record) is never read as
// one, not even when a crash tore the header of the entry it belongs to:
// recovery stops there instead of looking further for entries.
func TestLogStoreForgedEntryInBody(t *testing.T) {
	ctx := context.Background()
	forged := segmentOf(logEntry{kind: entryPut, id: "forged", bodySize: 5,
		rec: []byte(`{"id":"forged","from":"x@example.org","recipients":[{"address":"victim@example.net","state":"pending"}]}`)})[len(segHeader):]
	for _, torn := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "log")
		st, err := OpenLogStore(dir, LogStoreOptions{SegmentSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		before := logMsgFor("before")
		if err := st.Create(ctx, before, strings.NewReader("x\r\n")); err != nil {
			t.Fatal(err)
		}
		// The attacker's entry starts on a 512-byte boundary of the file
		// (a sector), where a scan that skipped ahead would look.
		rec, err := encodeMessage(before)
		if err != nil {
			t.Fatal(err)
		}
		end := len(segHeader) + entryHdrLen + len("before") + len("x\r\n") + len(rec)
		bodyAt := end + entryHdrLen + len("evil")
		pad := 4096 + (512-bodyAt%512)%512
		if err := st.Create(ctx, logMsgFor("evil"), bytes.NewReader(append(make([]byte, pad), forged...))); err != nil {
			t.Fatal(err)
		}
		segs := segFiles(t, dir)
		st.Close()
		if torn {
			data, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(data, []byte("evil")) - entryHdrLen // the real entry's header
			copy(data[at:], make([]byte, entryHdrLen))
			if err := os.WriteFile(segs[0], data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		st, err = OpenLogStore(dir, LogStoreOptions{SegmentSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, "forged"); !errors.Is(err, ErrNotFound) {
			t.Errorf("torn=%v: the entry inside a body was read as a message (%v)", torn, err)
		}
		if _, err := st.Get(ctx, "before"); err != nil {
			t.Errorf("torn=%v: the message before was lost: %v", torn, err)
		}
		_, err = st.Get(ctx, "evil")
		if torn != errors.Is(err, ErrNotFound) {
			t.Errorf("torn=%v: Get(evil) = %v", torn, err)
		}
		st.Close()
	}
}

// TestLogStoreSealedSegmentDamage: a segment that was flushed whole
// before the next one began (its successor's seal entry says where it
// ended) and now stops short, by a flipped bit or a cut, lost
// acknowledged messages: List reports it (ErrCorrupt) on every open, and
// the messages that can be read are still there. The segment that was
// being written when the store stopped has no seal, so a torn entry at
// its end is a crash's unflushed tail and is not reported.
func TestLogStoreSealedSegmentDamage(t *testing.T) {
	ctx := context.Background()
	body := func(i int) string { return fmt.Sprintf("body %d %s\r\n", i, strings.Repeat("x", 500)) }
	for _, tc := range []struct {
		name     string
		seg      func(segs []string) string // the file to damage
		damage   func(data []byte) []byte
		reported bool
	}{
		{"bit flipped in a sealed segment", func(s []string) string { return s[0] },
			func(d []byte) []byte { i := bytes.Index(d, []byte("body 1 ")); d[i+10] ^= 1; return d }, true},
		{"sealed segment cut short", func(s []string) string { return s[0] },
			func(d []byte) []byte { return d[:bytes.Index(d, []byte("body 1 "))+10] }, true},
		{"torn tail of the last segment", func(s []string) string { return s[len(s)-1] },
			func(d []byte) []byte { i := bytes.LastIndex(d, []byte("body ")); d[i+10] ^= 1; return d }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "log")
			opt := LogStoreOptions{SegmentSize: 2048, MaxSealedSegments: 100}
			st, err := OpenLogStore(dir, opt)
			if err != nil {
				t.Fatal(err)
			}
			const n = 10
			for i := range n {
				if err := st.Create(ctx, logMsgFor(fmt.Sprint("m", i)), strings.NewReader(body(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segFiles(t, dir)
			if len(segs) < 3 {
				t.Fatalf("segments: %v", segs)
			}
			name := tc.seg(segs)
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, tc.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				st, err := OpenLogStore(dir, opt)
				if err != nil {
					t.Fatal(err)
				}
				list, err := st.List(ctx)
				st.Close()
				if tc.reported {
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(name)) || !strings.Contains(err.Error(), "damaged on disk") {
						t.Fatalf("open %d: List error %v, want ErrCorrupt naming %s", round, err, filepath.Base(name))
					}
				} else if err != nil {
					t.Fatalf("open %d: %v", round, err)
				}
				// m1 lies where the damage is (and m2 after it, in the
				// same segment): the rest are all there.
				ids := map[string]bool{}
				for _, m := range list {
					ids[m.ID] = true
				}
				if !ids["m0"] || len(ids) < n-2 {
					t.Errorf("open %d: listed %v", round, ids)
				}
			}
		})
	}
}

// TestSealEntry: a seal scans back as the segment and end it was written
// with, and only an entry of its exact shape is taken as one.
func TestSealEntry(t *testing.T) {
	seg := append([]byte(segHeader), sealEntry(0x1234, 16<<20)...)
	var got []logEntry
	if end, clean := scanSegment(bytes.NewReader(seg), int64(len(seg)), func(e logEntry) { got = append(got, e) }); end != int64(len(seg)) || !clean || len(got) != 1 {
		t.Fatalf("scan = %d, %v, %d entries", end, clean, len(got))
	}
	if num, end, ok := parseSeal(got[0]); !ok || num != 0x1234 || end != 16<<20 {
		t.Errorf("parseSeal = %x, %d, %v", num, end, ok)
	}
	for _, bad := range []logEntry{
		{kind: entrySeal, id: "other", rec: got[0].rec},
		{kind: entrySeal, id: sealID, rec: got[0].rec[:15]},
		{kind: entrySeal, id: sealID, rec: got[0].rec, bodySize: 1},
	} {
		if _, _, ok := parseSeal(bad); ok {
			t.Errorf("parseSeal accepted %+v", bad)
		}
	}
}

// TestSealDamage: the decision behind TestLogStoreSealedSegmentDamage. A
// segment is judged only against a seal, and damaged only when it reads
// short of it.
func TestSealDamage(t *testing.T) {
	for _, tc := range []struct {
		name            string
		scanned, sealed map[uint64]int64
		want            []string // segment names reported, in order
	}{
		{"no seals (a store from before seals, or one segment)", map[uint64]int64{1: 100, 2: 50}, nil, nil},
		{"every segment whole", map[uint64]int64{1: 100, 2: 200, 3: 10}, map[uint64]int64{1: 100, 2: 200}, nil},
		{"the last segment, unsealed, cut short", map[uint64]int64{1: 100, 2: 16}, map[uint64]int64{1: 100}, nil},
		{"a sealed segment short by one byte", map[uint64]int64{1: 99, 2: 50}, map[uint64]int64{1: 100}, []string{segName(1)}},
		{"a sealed segment with no readable entry", map[uint64]int64{1: 100, 2: 0, 3: 40}, map[uint64]int64{1: 100, 2: 300}, []string{segName(2)}},
		{"two, reported in segment order", map[uint64]int64{7: 1, 3: 1, 9: 5}, map[uint64]int64{3: 2, 7: 2}, []string{segName(3), segName(7)}},
		{"a seal whose segment is gone", map[uint64]int64{5: 30}, map[uint64]int64{4: 1000}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sealDamage(tc.scanned, tc.sealed)
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want segments %q", got, tc.want)
			}
			for i, d := range got {
				if !strings.HasPrefix(d, "segment "+tc.want[i]+": ") {
					t.Errorf("report %d = %q, want segment %s", i, d, tc.want[i])
				}
			}
		})
	}
	if d := sealDamage(map[uint64]int64{1: 60}, map[uint64]int64{1: 100}); len(d) != 1 || !strings.Contains(d[0], "40 bytes of flushed log from offset 60") {
		t.Errorf("report = %q", d)
	}
}
