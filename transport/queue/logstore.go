package queue

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LogStore is a Store that appends every change to a log of segment files
// in one directory: a new message (its record and body), a new record for
// it, and its removal are each one entry at the end of the current segment.
// Where DirStore makes a file per message durable (create, link, two
// flushes, an unlink), a LogStore makes a batch of entries durable with one
// fdatasync(2) of one segment file, prepared ahead with zeros so that the
// flush changes neither its size nor its blocks: Creates and Updates in
// flight share it (group commit). Create returns only once the message
// would survive a crash of the machine, which is what the 250 after DATA
// promises (RFC 5321 §6.1). The durability argument is in DURABILITY.md.
//
// Create, Update and Delete write their entry before they return; Create
// and Update return once it is flushed, Delete does not wait (its removal
// is flushed with the next batch, or DefaultDeleteSyncDelay later: a
// machine crash before that brings the message back, a duplicate, never a
// loss). Open reads every segment, verifying each entry's CRC-32C, and
// stops reading a segment at its first incomplete entry (what a crash cut
// off before it was flushed, and so before its caller returned); writing
// then continues in a new segment. When a segment is full (SegmentSize)
// it is flushed and the next one starts with an entry recording where it
// ended: a full segment that reads short of that was damaged on disk,
// which is logged and reported by List (ErrCorrupt). The oldest segment
// whose messages are all removed is deleted, and when more than
// MaxSealedSegments are kept the messages still in the oldest are copied
// to the current segment, so that the log stays within about
// MaxSealedSegments+1 segments plus what is queued.
//
// Each body is held in memory while Create writes it: the Server's
// MaxMessageBytes times its connection limit bounds that memory. The
// latest record of every message stays in memory (as the Queue keeps its
// messages), with where its body is; bodies are read from the segments.
//
// A directory is used by one LogStore at a time (flock(2) on "lock", as
// DirStore), and must not hold a DirStore spool: OpenLogStore refuses one.
type LogStore struct {
	dir     string
	lock    *os.File
	segSize int64
	keep    int

	mu     sync.Mutex
	index  map[string]*logMsg
	segs   []*segment // oldest first; the last is the one written
	end    int64      // write offset in the current segment
	err    error      // a failed flush: the store refuses every change
	moving bool       // a relocation runs
	closed bool
	// spare is the next segment, prepared ahead under spareName, or nil;
	// preparing is set while it is being written.
	spare     *os.File
	preparing bool
	lazy      *time.Timer // flush of removals nobody waits for
	wg        sync.WaitGroup

	flushes groupSync // tickets: entries written; one flush covers all before it

	// damage describes the segments found, at open, to end short of
	// their seal (sealDamage); List reports it.
	damage []string

	// flushHook, if set (tests), is called before (done false) and after
	// each flush of the current segment with the offset up to which it
	// was written when the flush began.
	flushHook func(f *os.File, end int64, done bool)
}

// logMsg is where a message is: the segment holding its body, and its
// latest record.
type logMsg struct {
	seg  *segment
	off  int64 // of the body in seg
	size int64
	rec  []byte
}

type segment struct {
	num  uint64
	f    *os.File
	live int // messages whose body is here
	refs int // open Bodies
	dead bool
}

var _ Store = (*LogStore)(nil)

// Defaults of LogStoreOptions.
const (
	DefaultSegmentSize       = 16 << 20
	DefaultMaxSealedSegments = 4
)

// LogStoreOptions tune a LogStore; the zero value means the defaults.
type LogStoreOptions struct {
	// SegmentSize is the size after which writing moves to a new segment.
	SegmentSize int64
	// MaxSealedSegments is how many full segments are kept before the
	// messages left in the oldest are copied forward.
	MaxSealedSegments int
}

const (
	segHeader    = "mailtls-seglog1\n" // 16 bytes at the start of a segment
	entryHdrLen  = 32
	entryMagic   = 0x4d544c47 // "MTLG"
	maxRecordLen = 16 << 20

	entryPut    = 1 // id, body, record: a new message (or one copied forward)
	entryUpdate = 2 // id, record
	entryRemove = 3 // id
	// entrySeal, the first entry of a segment started by a roll, says
	// where the previous segment ended when it was flushed for the last
	// time: id sealID, record the previous segment's number and end
	// offset (8 bytes each, little-endian).
	entrySeal = 4

	sealID = "seal"
)

// OpenLogStore opens (creating it if needed, mode 0700) the log directory
// dir, locks it (ErrLocked if in use), reads every segment and starts a
// new one.
func OpenLogStore(dir string, opt LogStoreOptions) (*LogStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: creating spool directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &LogStore{dir: dir, lock: lock, segSize: opt.SegmentSize, keep: opt.MaxSealedSegments, index: map[string]*logMsg{}}
	if s.segSize <= 0 {
		s.segSize = DefaultSegmentSize
	}
	if s.keep <= 0 {
		s.keep = DefaultMaxSealedSegments
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		lock.Close()
		return nil, err
	}
	return s, nil
}

func segName(num uint64) string { return fmt.Sprintf("log-%016x.seg", num) }

// load reads the segments in order and opens a new one for writing.
func (s *LogStore) load() error {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("queue: reading spool directory: %w", err)
	}
	var nums []uint64
	for _, e := range names {
		n := e.Name()
		if strings.HasSuffix(n, ".msg") || strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".eml") {
			return fmt.Errorf("queue: %s holds a DirStore spool (%s); open it with OpenDirStore", s.dir, n)
		}
		var num uint64
		if _, err := fmt.Sscanf(n, "log-%016x.seg", &num); err == nil && n == segName(num) {
			nums = append(nums, num)
		}
	}
	os.Remove(filepath.Join(s.dir, spareName)) // prepared, never written
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	next := uint64(1)
	// Where each segment's scan stopped, and where the seals found say
	// segments ended.
	scanned, sealed := map[uint64]int64{}, map[uint64]int64{}
	for _, num := range nums {
		f, err := os.OpenFile(filepath.Join(s.dir, segName(num)), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("queue: opening segment: %w", err)
		}
		seg := &segment{num: num, f: f}
		s.segs = append(s.segs, seg)
		end, err := s.replay(seg, sealed)
		if err != nil {
			return err
		}
		scanned[num] = end
		next = num + 1
	}
	for _, d := range sealDamage(scanned, sealed) {
		slog.Error("queue: " + d)
		s.damage = append(s.damage, d)
	}
	// The first segment is prepared now, the next ones in the background.
	spare, err := s.prepare()
	if err != nil {
		return fmt.Errorf("queue: preparing a log segment: %w", storageErr(err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spare = spare
	if err := s.startSegment(next); err != nil {
		return err
	}
	return s.collectLocked()
}

// replay applies the entries of seg to the index, up to its end or its
// first incomplete entry, records the seals it holds in sealed, and
// returns where it stopped.
func (s *LogStore) replay(seg *segment, sealed map[uint64]int64) (int64, error) {
	st, err := seg.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("queue: segment %s: %w", seg.f.Name(), err)
	}
	end, clean := scanSegment(seg.f, st.Size(), func(e logEntry) {
		if e.kind == entrySeal {
			if num, at, ok := parseSeal(e); ok {
				sealed[num] = at
			}
			return
		}
		s.apply(seg, e.kind, e.id, e.bodyOff, e.bodySize, e.rec)
	})
	switch {
	case end == 0:
		// Created but not flushed before a crash: nothing in it was
		// acknowledged.
		slog.Warn("queue: log segment without header ignored", "segment", seg.f.Name(), "size", st.Size())
	case !clean:
		slog.Warn("queue: log segment ends in an incomplete entry (cut by a crash before it was flushed); ignored",
			"segment", seg.f.Name(), "offset", end, "bytes", st.Size()-end)
	}
	return end, nil
}

// sealDamage compares where each segment's scan stopped (scanned) with
// where the next segment's seal says it ended when it was last flushed
// (sealed), and describes every segment that reads short of its seal. That
// segment was whole on disk before its successor began, so no crash cut
// it: flushed entries, acknowledged messages among them, were damaged on
// disk. A segment without a seal (the one being written when the process
// or the machine stopped) may end in an entry cut short, and is not
// judged; nor is a seal whose segment is gone (deleted once empty).
func sealDamage(scanned, sealed map[uint64]int64) []string {
	var out []string
	for _, num := range slices.Sorted(maps.Keys(scanned)) {
		// No seal reads as 0: never short.
		if end, at := scanned[num], sealed[num]; end < at {
			out = append(out, fmt.Sprintf("segment %s: %d bytes of flushed log from offset %d cannot be read (damaged on disk); the messages in them are lost",
				segName(num), at-end, end))
		}
	}
	return out
}

// sealEntry is the entry that starts segment num+1 after segment num was
// flushed up to end.
func sealEntry(num uint64, end int64) []byte {
	var rec [16]byte
	binary.LittleEndian.PutUint64(rec[0:], num)
	binary.LittleEndian.PutUint64(rec[8:], uint64(end))
	buf := append(make([]byte, entryHdrLen, entryHdrLen+len(sealID)+len(rec)), sealID...)
	return encodeEntry(buf, entrySeal, sealID, 0, rec[:])
}

// parseSeal reads a seal entry: the segment it seals and where it ends.
func parseSeal(e logEntry) (num uint64, end int64, ok bool) {
	if e.id != sealID || len(e.rec) != 16 || e.bodySize != 0 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(e.rec[0:]), int64(binary.LittleEndian.Uint64(e.rec[8:])), true
}

// logEntry is one entry read back from a segment: its kind, id, where
// its body is in the segment, and its record.
type logEntry struct {
	kind              byte
	id                string
	bodyOff, bodySize int64
	rec               []byte
}

// scanSegment reads the entries of a segment of size bytes in order and
// calls fn for each whole one (header, lengths and CRC-32C right). It
// stops at the first that is not whole, or at a header of zeros (the
// unwritten end of a prepared segment), and returns the offset where it
// stopped (0 if the segment header is wrong) and whether that was the end
// of what was written (the end of the file, or zeros) rather than a
// damaged or cut entry. It never looks past the first entry it cannot
// verify (see DURABILITY.md).
func scanSegment(ra io.ReaderAt, size int64, fn func(logEntry)) (end int64, clean bool) {
	r := bufio.NewReaderSize(io.NewSectionReader(ra, 0, size), 256<<10)
	head := make([]byte, len(segHeader))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != segHeader {
		return 0, false
	}
	off := int64(len(segHeader))
	hdr := make([]byte, entryHdrLen)
	for off < size {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return off, false
		}
		if allZero(hdr) {
			return off, true
		}
		kind, idLen, recLen, bodyLen, sum, ok := parseEntryHeader(hdr)
		total := int64(entryHdrLen) + int64(idLen) + int64(recLen) + bodyLen
		if !ok || off+total > size {
			return off, false
		}
		crc := crc32.Update(0, castagnoli, hdr[:24])
		idb := make([]byte, idLen)
		if _, err := io.ReadFull(r, idb); err != nil {
			return off, false
		}
		crc = crc32.Update(crc, castagnoli, idb)
		h := hashWriter{sum: crc}
		if _, err := io.CopyN(&h, r, bodyLen); err != nil {
			return off, false
		}
		rec := make([]byte, recLen)
		if _, err := io.ReadFull(r, rec); err != nil {
			return off, false
		}
		if crc32.Update(h.sum, castagnoli, rec) != sum {
			return off, false
		}
		fn(logEntry{kind: kind, id: string(idb), bodyOff: off + entryHdrLen + int64(idLen), bodySize: bodyLen, rec: rec})
		off += total
	}
	return off, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func parseEntryHeader(h []byte) (kind byte, idLen, recLen uint32, bodyLen int64, sum uint32, ok bool) {
	le := binary.LittleEndian
	if le.Uint32(h[0:]) != entryMagic {
		return
	}
	kind = h[4]
	idLen, recLen = le.Uint32(h[8:]), le.Uint32(h[12:])
	b := le.Uint64(h[16:])
	sum = le.Uint32(h[24:])
	// The padding (bytes 5-7, and 28-31 after the CRC, which it does not
	// cover) must be zero.
	ok = kind >= entryPut && kind <= entrySeal && idLen > 0 && idLen <= 200 && recLen <= maxRecordLen && b < 1<<48 &&
		allZero(h[5:8]) && allZero(h[28:32])
	return kind, idLen, recLen, int64(b), sum, ok
}

// apply replays one entry. A record or removal for an id that has no
// body (copied forward from a segment since deleted, or removed there) is
// skipped: the copy carries the latest record.
func (s *LogStore) apply(seg *segment, kind byte, id string, off, size int64, rec []byte) {
	cur := s.index[id]
	switch kind {
	case entryPut:
		if cur != nil {
			cur.seg.live--
		}
		s.index[id] = &logMsg{seg: seg, off: off, size: size, rec: rec}
		seg.live++
	case entryUpdate:
		if cur != nil {
			cur.rec = rec
		}
	case entryRemove:
		if cur != nil {
			cur.seg.live--
			delete(s.index, id)
		}
	}
}

// encodeEntry lays out one entry: header, id, body, record; the CRC-32C
// covers all but itself.
func encodeEntry(buf []byte, kind byte, id string, bodyLen int64, rec []byte) []byte {
	le := binary.LittleEndian
	le.PutUint32(buf[0:], entryMagic)
	buf[4] = kind
	le.PutUint32(buf[8:], uint32(len(id)))
	le.PutUint32(buf[12:], uint32(len(rec)))
	le.PutUint64(buf[16:], uint64(bodyLen))
	buf = append(buf, rec...)
	crc := crc32.Update(0, castagnoli, buf[:24])
	crc = crc32.Update(crc, castagnoli, buf[entryHdrLen:])
	le.PutUint32(buf[24:], crc)
	return buf
}

// startSegment makes segment num the one written from now on: the spare
// prepared ahead (zeros to SegmentSize, so that a flush writes data
// blocks only and no file size or extent changes), renamed into place, or
// else a new file that grows as it is written. Its header and name are
// durable before anything is written to it. s.mu is held.
func (s *LogStore) startSegment(num uint64) error {
	name := filepath.Join(s.dir, segName(num))
	f := s.spare
	s.spare = nil
	var err error
	if f != nil {
		if err = os.Rename(f.Name(), name); err != nil {
			f.Close()
			f = nil
		}
	}
	if f == nil {
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("queue: creating segment: %w", storageErr(err))
		}
		if _, err = f.WriteAt([]byte(segHeader), 0); err == nil {
			err = datasync(f)
		}
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("queue: creating segment: %w", storageErr(err))
	}
	s.segs = append(s.segs, &segment{num: num, f: f})
	s.end = int64(len(segHeader))
	s.prepareLocked()
	return nil
}

// spareName is the file a spare segment is prepared in.
const spareName = "spare.seg"

// prepareLocked starts preparing the next segment in the background, if
// none is ready or being prepared. s.mu is held.
func (s *LogStore) prepareLocked() {
	if s.spare != nil || s.preparing || s.closed {
		return
	}
	s.preparing = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f, err := s.prepare()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.preparing = false
		if err != nil {
			slog.Warn("queue: preparing the next log segment", "err", err)
			return
		}
		if s.closed {
			f.Close()
			os.Remove(f.Name())
			return
		}
		s.spare = f
	}()
}

// prepare writes a spare segment: header, then zeros to SegmentSize,
// flushed.
func (s *LogStore) prepare() (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, spareName), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	copy(zeros, segHeader)
	for off := int64(0); off < s.segSize && err == nil; off += int64(len(zeros)) {
		_, err = f.WriteAt(zeros[:min(int64(len(zeros)), s.segSize-off)], off)
		if off == 0 {
			clear(zeros[:len(segHeader)])
		}
	}
	if err == nil {
		err = datasync(f)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

func (s *LogStore) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func storageErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrInsufficientStorage, err)
	}
	return err
}

func (s *LogStore) current() *segment { return s.segs[len(s.segs)-1] }

// appendLocked writes one encoded entry at the end of the log and returns
// the ticket to wait for and the segment and offset it went to. s.mu is
// held.
func (s *LogStore) appendLocked(entry []byte) (ticket uint64, seg *segment, off int64, err error) {
	if s.err != nil {
		return 0, nil, 0, s.err
	}
	if s.closed {
		return 0, nil, 0, errors.New("queue: LogStore is closed")
	}
	if s.end+int64(len(entry)) > s.segSize && s.end > int64(len(segHeader)) {
		if err := s.rollLocked(); err != nil {
			return 0, nil, 0, err
		}
	}
	seg = s.current()
	if _, err := seg.f.WriteAt(entry, s.end); err != nil {
		// Cut back what was written, so the next entry follows the last
		// whole one; if that fails, nothing more may be appended.
		if terr := seg.f.Truncate(s.end); terr != nil {
			s.err = fmt.Errorf("queue: log write failed and could not be undone: %w", terr)
		}
		return 0, nil, 0, fmt.Errorf("queue: writing the log: %w", storageErr(err))
	}
	off = s.end
	s.end += int64(len(entry))
	return s.ticketLocked(), seg, off, nil
}

// rollLocked flushes the current segment and starts the next one; the
// segments no message needs any more are deleted, and when too many are
// kept the oldest's messages are copied forward. s.mu is held.
func (s *LogStore) rollLocked() error {
	prev, end := s.current().num, s.end
	if err := datasync(s.current().f); err != nil {
		s.err = fmt.Errorf("queue: flushing the log: %w", err)
		return s.err
	}
	if err := s.startSegment(prev + 1); err != nil {
		return err
	}
	// Not waited for: it is flushed with the entry that follows it, and a
	// seal lost in a crash only leaves the segment it names unchecked.
	seal := sealEntry(prev, end)
	if _, err := s.current().f.WriteAt(seal, s.end); err != nil {
		return fmt.Errorf("queue: writing the log: %w", storageErr(err))
	}
	s.end += int64(len(seal))
	if err := s.collectLocked(); err != nil {
		return err
	}
	if len(s.segs)-1 > s.keep && !s.moving {
		s.moving = true
		s.wg.Add(1)
		go s.relocate(s.segs[0])
	}
	return nil
}

// collectLocked deletes the oldest segments while no message has its body
// in them. Only the oldest may go: a removal entry in a later segment is
// what keeps a message of an earlier one from coming back. s.mu is held.
func (s *LogStore) collectLocked() error {
	gone := false
	for len(s.segs) > 1 && s.segs[0].live == 0 {
		seg := s.segs[0]
		if err := os.Remove(filepath.Join(s.dir, segName(seg.num))); err != nil {
			return fmt.Errorf("queue: removing segment: %w", err)
		}
		seg.dead = true
		if seg.refs == 0 {
			seg.f.Close()
		}
		s.segs = s.segs[1:]
		gone = true
	}
	if gone {
		// Before a later segment can go, this removal must be durable.
		return s.syncDir()
	}
	return nil
}

// relocate copies the messages whose bodies are in seg to the current
// segment, then lets collect delete it.
func (s *LogStore) relocate(seg *segment) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.moving = false
		s.mu.Unlock()
	}()
	s.mu.Lock()
	var ids []string
	for id, m := range s.index {
		if m.seg == seg {
			ids = append(ids, id)
		}
	}
	seg.refs++
	s.mu.Unlock()
	defer s.release(seg)
	var last uint64
	for _, id := range ids {
		s.mu.Lock()
		m := s.index[id]
		s.mu.Unlock()
		if m == nil || m.seg != seg {
			continue
		}
		buf := make([]byte, entryHdrLen, entryHdrLen+len(id)+int(m.size)+len(m.rec)+64)
		buf = append(buf, id...)
		n := len(buf)
		buf = buf[:n+int(m.size)]
		if _, err := seg.f.ReadAt(buf[n:], m.off); err != nil {
			slog.Error("queue: copying a message forward in the log", "id", id, "err", err)
			return
		}
		s.mu.Lock()
		if cur := s.index[id]; cur != m || s.closed {
			s.mu.Unlock()
			continue
		}
		entry := encodeEntry(buf, entryPut, id, m.size, m.rec)
		t, to, off, err := s.appendLocked(entry)
		if err == nil {
			seg.live--
			to.live++
			s.index[id] = &logMsg{seg: to, off: off + entryHdrLen + int64(len(id)), size: m.size, rec: m.rec}
			last = t
		}
		s.mu.Unlock()
		if err != nil {
			slog.Error("queue: copying a message forward in the log", "id", id, "err", err)
			return
		}
	}
	if last > 0 {
		if err := s.wait(last); err != nil {
			return
		}
	}
	s.mu.Lock()
	if err := s.collectLocked(); err != nil {
		slog.Error("queue: removing a log segment", "err", err)
	}
	s.mu.Unlock()
}

// wait returns once a flush that began after ticket was handed out (so
// after the entry was written) has completed: callers in flight share one
// (groupSync, as DirStore's commits).
func (s *LogStore) wait(ticket uint64) error {
	s.flushes.mu.Lock()
	defer s.flushes.mu.Unlock()
	return s.flushes.wait(ticket, s.flush, nil, 0)
}

// ticketLocked hands out the ticket for an entry just written. s.mu is
// held.
func (s *LogStore) ticketLocked() uint64 {
	s.flushes.mu.Lock()
	defer s.flushes.mu.Unlock()
	return s.flushes.ticket()
}

// flush makes everything written so far durable: what is in the current
// segment, with one fdatasync; earlier segments were flushed before it
// was started (rollLocked).
func (s *LogStore) flush() error {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	seg, end := s.current(), s.end
	seg.refs++ // not closed by collect while flushed
	s.mu.Unlock()
	if s.flushHook != nil {
		s.flushHook(seg.f, end, false)
	}
	err := datasync(seg.f)
	if s.flushHook != nil && err == nil {
		s.flushHook(seg.f, end, true)
	}
	s.release(seg)
	if err != nil {
		// After a failed flush the kernel may have dropped the dirty
		// pages: nothing written since the last good one can be trusted.
		s.mu.Lock()
		if s.err == nil {
			s.err = fmt.Errorf("queue: flushing the log: %w", err)
		}
		err = s.err
		s.mu.Unlock()
	}
	return err
}

// Create stores m and body as one entry and returns once it is flushed.
func (s *LogStore) Create(ctx context.Context, m *Message, body io.Reader) error {
	if !validID(m.ID) {
		return fmt.Errorf("%w: %q", ErrBadID, m.ID)
	}

	s.mu.Lock()
	_, exists := s.index[m.ID]
	s.mu.Unlock()
	if exists {
		return fmt.Errorf("%w: %s", ErrExists, m.ID)
	}
	pb := entryPool.Get().(*[]byte)
	defer putEntry(pb)
	buf := append((*pb)[:0], make([]byte, entryHdrLen)...)
	buf = append(buf, m.ID...)
	n := len(buf)
	w := &appendWriter{buf: buf}
	_, err := w.ReadFrom(ctxReader{ctx, body})
	buf, *pb = w.buf, w.buf
	if err != nil {
		return fmt.Errorf("queue: reading message body: %w", err)
	}
	m.Size = int64(len(buf) - n)
	rec, err := encodeMessage(m)
	if err != nil {
		return err
	}
	entry := encodeEntry(buf, entryPut, m.ID, m.Size, rec)
	*pb = entry
	s.mu.Lock()
	if _, exists := s.index[m.ID]; exists {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrExists, m.ID)
	}
	ticket, seg, off, err := s.appendLocked(entry)
	if err == nil {
		seg.live++
		s.index[m.ID] = &logMsg{seg: seg, off: off + int64(n), size: m.Size, rec: rec}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.wait(ticket)
}

// appendWriter reads a body into the entry being built.
type appendWriter struct{ buf []byte }

// ReadFrom reads r to its end into w.buf's free capacity, growing it.
func (w *appendWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if len(w.buf) == cap(w.buf) {
			w.buf = append(w.buf, 0)[:len(w.buf)]
		}
		n, err := r.Read(w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// entryPool keeps the buffers Create builds entries in; buffers above
// maxPooledEntry are left to the garbage collector.
var entryPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

const maxPooledEntry = 1 << 20

func putEntry(pb *[]byte) {
	if cap(*pb) <= maxPooledEntry {
		entryPool.Put(pb)
	}
}

// Update appends m's new record and returns once it is flushed.
func (s *LogStore) Update(ctx context.Context, m *Message) error {
	if !validID(m.ID) {
		return fmt.Errorf("%w: %q", ErrBadID, m.ID)
	}
	rec, err := encodeMessage(m)
	if err != nil {
		return err
	}
	buf := make([]byte, entryHdrLen, entryHdrLen+len(m.ID)+len(rec))
	entry := encodeEntry(append(buf, m.ID...), entryUpdate, m.ID, 0, rec)
	s.mu.Lock()
	cur := s.index[m.ID]
	if cur == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, m.ID)
	}
	ticket, _, _, err := s.appendLocked(entry)
	if err == nil {
		cur.rec = rec
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.wait(ticket)
}

// Delete appends the removal of id without waiting for a flush (see
// LogStore).
func (s *LogStore) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	buf := make([]byte, entryHdrLen, entryHdrLen+len(id))
	entry := encodeEntry(append(buf, id...), entryRemove, id, 0, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.index[id]
	if cur == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	ticket, _, _, err := s.appendLocked(entry)
	if err != nil {
		return err
	}
	cur.seg.live--
	delete(s.index, id)
	if s.lazy == nil {
		s.wg.Add(1)
		s.lazy = time.AfterFunc(DefaultDeleteSyncDelay, func() {
			defer s.wg.Done()
			s.mu.Lock()
			s.lazy = nil
			s.mu.Unlock()
			s.wait(ticket)
		})
	}
	return nil
}

// Get returns the latest record of id.
func (s *LogStore) Get(ctx context.Context, id string) (*Message, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	s.mu.Lock()
	cur := s.index[id]
	var rec []byte
	if cur != nil {
		rec = cur.rec
	}
	s.mu.Unlock()
	if cur == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	m, err := DecodeMessage(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, id, err)
	}
	return m, nil
}

// List returns the latest record of every message.
func (s *LogStore) List(ctx context.Context) ([]*Message, error) {
	s.mu.Lock()
	recs := make(map[string][]byte, len(s.index))
	for id, m := range s.index {
		recs[id] = m.rec
	}
	s.mu.Unlock()
	var msgs []*Message
	var bad []string
	for id, rec := range recs {
		m, err := DecodeMessage(rec)
		if err != nil || m.ID != id {
			bad = append(bad, id)
			continue
		}
		msgs = append(msgs, m)
	}
	var errs []error
	if len(bad) > 0 {
		sort.Strings(bad)
		errs = append(errs, fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(bad, ", ")))
	}
	for _, d := range s.damage {
		errs = append(errs, fmt.Errorf("%w: %s", ErrCorrupt, d))
	}
	return msgs, errors.Join(errs...)
}

// Body opens the body of id; its segment stays open until Close.
func (s *LogStore) Body(ctx context.Context, id string) (Body, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.index[id]
	if cur == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	cur.seg.refs++
	return &logBody{s: s, seg: cur.seg, r: io.NewSectionReader(cur.seg.f, cur.off, cur.size)}, nil
}

type logBody struct {
	s    *LogStore
	seg  *segment
	r    *io.SectionReader
	once sync.Once
}

func (b *logBody) ReadAt(p []byte, off int64) (int, error) { return b.r.ReadAt(p, off) }
func (b *logBody) Size() int64                             { return b.r.Size() }
func (b *logBody) Close() error {
	b.once.Do(func() { b.s.release(b.seg) })
	return nil
}

func (s *LogStore) release(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seg.refs--; seg.refs == 0 && seg.dead {
		seg.f.Close()
	}
}

// FreeSpace returns the bytes free on the log's file system
// (SpaceReporter).
func (s *LogStore) FreeSpace(ctx context.Context) (int64, error) { return DiskFree(s.dir) }

// Dir returns the log directory.
func (s *LogStore) Dir() string { return s.dir }

// Close waits for a relocation in progress, flushes what is written and
// releases the directory's lock. The LogStore must not be used afterwards.
func (s *LogStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.lazy != nil && s.lazy.Stop() {
		s.wg.Done() // its flush is Close's
	}
	s.lazy = nil
	s.mu.Unlock()
	s.wg.Wait()
	err := s.wait(s.ticketLocked())
	s.mu.Lock()
	s.closeFiles()
	s.mu.Unlock()
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *LogStore) closeFiles() {
	for _, seg := range s.segs {
		seg.f.Close()
	}
	if s.spare != nil {
		s.spare.Close()
		os.Remove(s.spare.Name())
		s.spare = nil
	}
}
