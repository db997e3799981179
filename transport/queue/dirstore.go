package queue

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// File names in a spool directory.
const (
	msgSuffix  = ".msg"  // header line, initial record, body
	metaSuffix = ".json" // record written by Update, overrides the .msg one
	bodySuffix = ".eml"  // legacy (before .msg): body of a .json record
	tmpPrefix  = "tmp-"
	lockName   = "lock"

	// msgMagic starts the first line of a .msg file: magic, a space, the
	// length in bytes of the JSON record that follows the line. Files
	// written since the single-flush commit start with msgMagic2 instead:
	// the same, then a space and the CRC-32C (Castagnoli) of everything
	// after the line, as 8 lowercase hex digits; recovery uses it to tell
	// a complete file from one a power cut tore.
	msgMagic  = "mailtls-spool-1 "
	msgMagic2 = "mailtls-spool-2 "
	// maxHeaderLine bounds the first line of a .msg file.
	maxHeaderLine = 64
)

// DefaultDeleteSyncDelay is how long after a Delete a DirStore fsyncs the
// spool directory if no other change has done it meanwhile.
const DefaultDeleteSyncDelay = 50 * time.Millisecond

// DefaultCommitLinger bounds how long the Create that runs a shared sync
// waits for the concurrent Creates still writing their files to join it.
// A Create alone does not wait at all.
const DefaultCommitLinger = 500 * time.Microsecond

// ErrLocked is returned by OpenDirStore when another DirStore (in this or
// another process) has the spool directory open. Close the other one, or
// stop the process using it; operators query a running queue through it.
var ErrLocked = errors.New("queue: spool directory in use")

// DirStore is the default Store: one spool directory holding, per message,
// ID.msg — one line "mailtls-spool-2 N CRC", the N-byte JSON Message
// record as it was when the message was accepted, then the body as
// received, CRC being the CRC-32C of record and body — and, once the queue
// has recorded a delivery attempt, ID.json, the current record, which
// takes precedence over the one in ID.msg.
//
// Create writes the whole file under a temporary name, tmp-RANDOM.ID, links
// it to ID.msg (atomic, and refusing to replace an existing message), and
// then makes data and name durable together before it returns: alone, an
// fsync of the file and one of the directory; with other Creates in
// flight, one syncfs(2) of the spool's file system shared by all of them
// (group commit: one flush for the batch; the Create that runs it waits
// at most DefaultCommitLinger for the Creates still writing). Only then is
// the temporary name removed. A machine crash before that can leave ID.msg
// with part of its data; the temporary name still linked to it tells
// OpenDirStore to check its CRC, and a torn message, never acknowledged,
// is removed. Update writes ID.json the old way: temporary file, fsync,
// rename, directory fsync (shared).
//
// Delete removes ID.msg, then ID.json, and does not wait for a directory
// fsync: the removal becomes durable with the next directory fsync of any
// other change (under load, within milliseconds), after at most
// DefaultDeleteSyncDelay otherwise, and at Close. A machine crash (not a
// process crash: the kernel keeps what it was given) inside that window
// can bring a deleted message back with the record of its last durable
// state — the accepted one if it was never updated — so it is delivered
// again: a duplicate, never a loss (see the package documentation).
//
// OpenDirStore removes the leftovers of interrupted operations: temporary
// files, and ID.json records without ID.msg (a Delete cut half-way).
// Spools written before the .msg format (ID.eml plus ID.json) and .msg
// files without CRC ("mailtls-spool-1 N") are still read and delivered.
//
// A spool directory is used by one DirStore at a time: OpenDirStore takes
// an exclusive lock (flock(2) on the file "lock", where the system has it)
// and Close releases it; the kernel releases it if the process dies.
type DirStore struct {
	dir  string
	lock *os.File

	// Group commit of directory fsyncs (see syncDir); lazy and lazyTimer
	// are guarded by dirSync.mu.
	dirSync   groupSync
	lazy      uint64      // highest ticket of a Delete not yet synced
	lazyTimer *time.Timer // pending sync for lazy, nil if none

	// Group commit of the data of new files (see syncData).
	dataSync groupSync
	writing  atomic.Int32 // ordered Creates between their first write and their data sync

	// legacy is set when OpenDirStore found .eml files (the layout before
	// .msg); only then do lookups of a missing ID.msg try ID.eml.
	legacy bool

	// Single-flush commit of Create (see commit): inflight counts the
	// Creates between their first write and the end of their commit,
	// arriving those that have not reached commit yet.
	inflight, arriving atomic.Int32

	// ordered makes Create sync the data before linking the name and the
	// directory after (two flushes, no CRC needed), the order used before
	// the single-flush commit; noGroupData makes every Create fsync its
	// own file (no shared syncfs). Benchmarks measure the combinations.
	ordered, noGroupData bool

	// linger overrides DefaultCommitLinger (tests, benchmarks); negative:
	// no lingering.
	linger time.Duration

	// deleteSyncDelay overrides DefaultDeleteSyncDelay (tests).
	deleteSyncDelay time.Duration

	// trace, if set, is called before each step that matters for
	// durability ("write", "fsync", "rename", "fsyncdir", "remove") with
	// the file concerned. Tests use it to check the order.
	trace func(op, name string)
}

var _ Store = (*DirStore)(nil)

// OpenDirStore opens (creating it if needed, mode 0700) the spool directory
// dir, locks it (ErrLocked if it is in use) and removes what interrupted
// operations left behind. It starts no goroutines; a Delete arms a timer
// that Close stops.
func OpenDirStore(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: creating spool directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &DirStore{dir: dir, lock: lock}
	if err := s.clean(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close makes pending deletions durable (one directory fsync, if any is
// pending) and releases the spool directory's lock. The DirStore must not
// be used afterwards.
func (s *DirStore) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.flushDeletes()
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	s.lock = nil
	return err
}

// Dir returns the spool directory.
func (s *DirStore) Dir() string { return s.dir }

func (s *DirStore) step(op, name string) {
	if s.trace != nil {
		s.trace(op, filepath.Base(name))
	}
}

// clean removes temporary files and the remains of interrupted deletions.
func (s *DirStore) clean() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("queue: reading spool directory: %w", err)
	}
	have := make(map[string]bool)
	for _, e := range entries {
		have[e.Name()] = true
	}
	removed := false
	for _, e := range entries {
		name := e.Name()
		var orphan bool
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			orphan = true
			if err := s.recoverTemp(name); err != nil {
				return err
			}
		case strings.HasSuffix(name, metaSuffix):
			id := strings.TrimSuffix(name, metaSuffix)
			orphan = !have[id+msgSuffix] && !have[id+bodySuffix]
		case strings.HasSuffix(name, bodySuffix):
			// Legacy: a body whose record never appeared (an interrupted
			// Create) or was removed first (an interrupted Delete).
			id := strings.TrimSuffix(name, bodySuffix)
			orphan = !have[id+metaSuffix] && !have[id+msgSuffix]
			s.legacy = s.legacy || !orphan
		}
		if orphan {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("queue: cleaning spool: %w", err)
			}
			removed = true
		}
	}
	if removed {
		return s.syncDir()
	}
	return nil
}

// recoverTemp checks, before the temporary file name is removed, the
// message a Create had linked it to: a Create cut before its commit
// returned leaves its temporary name (tmp-RANDOM.ID) linked to ID.msg.
// Such a message was not acknowledged, or was durable when it was: it is
// kept if it is whole (its CRC matches), removed otherwise, as a power
// cut before the commit can leave the name with part of the data.
func (s *DirStore) recoverTemp(name string) error {
	_, id, ok := strings.Cut(strings.TrimPrefix(name, tmpPrefix), ".")
	if !ok || !validID(id) {
		return nil
	}
	final := s.path(id, msgSuffix)
	tst, err := os.Lstat(filepath.Join(s.dir, name))
	if err != nil {
		return nil
	}
	fst, err := os.Lstat(final)
	if err != nil || !os.SameFile(tst, fst) {
		return nil
	}
	whole, err := checkWhole(final)
	if err != nil || whole {
		return err
	}
	for _, p := range []string{final, s.path(id, metaSuffix)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: cleaning spool: %w", err)
		}
	}
	return nil
}

// checkWhole reports whether the .msg file name is whole: its header line
// parses and, if it announces a CRC, the rest of the file matches it.
func checkWhole(name string) (bool, error) {
	f, err := os.Open(name)
	if err != nil {
		return false, fmt.Errorf("queue: cleaning spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 32<<10)
	line, err := r.ReadSlice('\n')
	if err != nil || len(line) > maxHeaderLine {
		return false, nil
	}
	_, crc, hasCRC, err := parseHeaderLine(string(line[:len(line)-1]))
	if err != nil {
		return false, nil
	}
	if !hasCRC {
		return true, nil
	}
	var h hashWriter
	if _, err := io.Copy(&h, r); err != nil {
		return false, fmt.Errorf("queue: cleaning spool: %w", err)
	}
	return h.sum == crc, nil
}

func (s *DirStore) path(id, suffix string) string { return filepath.Join(s.dir, id+suffix) }

// groupSync runs one sync for many callers (group commit): a caller takes
// a ticket and waits for a sync that began after its ticket was handed
// out, running one itself if none is running; one sync covers every
// change made before it began.
type groupSync struct {
	mu        sync.Mutex
	cond      *sync.Cond
	requested uint64 // tickets handed out
	synced    uint64 // tickets covered by the last completed sync
	syncing   bool
	err       error
}

// ticket hands out a ticket and wakes a caller gathering a batch (see
// wait). g.mu is held.
func (g *groupSync) ticket() uint64 {
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	g.requested++
	g.cond.Broadcast()
	return g.requested
}

// wait returns once a sync (do) that began after ticket was handed out
// has completed, with the result of the latest sync (a later success makes
// an earlier failure moot). g.mu is held.
//
// If expect is not nil, the caller that runs a sync first asks it how
// many more callers are on their way and waits, at most linger, until
// that many tickets have been handed out, so that callers a few
// microseconds behind share the sync instead of waiting for the next
// one. Callers arriving meanwhile do not extend the wait.
func (g *groupSync) wait(ticket uint64, do func() error, expect func() uint64, linger time.Duration) error {
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	for g.synced < ticket {
		if g.syncing {
			g.cond.Wait()
			continue
		}
		g.syncing = true
		if n := uint64(0); expect != nil {
			n = expect()
			base := g.requested
			expired := false
			t := time.AfterFunc(linger, func() {
				g.mu.Lock()
				expired = true
				g.cond.Broadcast()
				g.mu.Unlock()
			})
			for !expired && g.requested-base < n {
				g.cond.Wait()
			}
			t.Stop()
		}
		target := g.requested
		g.mu.Unlock()
		err := do()
		g.mu.Lock()
		g.syncing = false
		g.synced, g.err = target, err
		g.cond.Broadcast()
	}
	return g.err
}

// syncDir makes every rename and remove done so far in the directory
// durable, sharing the directory fsync with concurrent callers.
func (s *DirStore) syncDir() error {
	s.step("fsyncdir", s.dir)
	s.dirSync.mu.Lock()
	defer s.dirSync.mu.Unlock()
	return s.dirSync.wait(s.dirSync.ticket(), s.fsyncDir, nil, 0)
}

// syncData makes the data of f, a new file just written (by Update, or by
// Create in the ordered way), durable before it gets its name. Alone (no
// other ordered Create is writing) it fsyncs f; with others in flight, one
// syncfs(2) of the spool's file system covers every file written before it
// began, shared by all of them (group commit): under load N messages cost
// one flush instead of N. Where there is no syncfs, each file is fsynced.
func (s *DirStore) syncData(f *os.File) error {
	if s.writing.Load() <= 1 || !haveSyncFS || s.lock == nil || s.noGroupData {
		s.step("fsync", f.Name())
		return f.Sync()
	}
	s.step("syncfs", f.Name())
	s.dataSync.mu.Lock()
	defer s.dataSync.mu.Unlock()
	return s.dataSync.wait(s.dataSync.ticket(), s.runSyncFS, nil, 0)
}

func (s *DirStore) runSyncFS() error {
	s.step("syncfs-run", s.dir)
	return syncFS(s.lock)
}

// commit makes f, a new file already linked to its final name, durable
// together with that name, in one flush where it can. Alone (no other
// Create in flight) it fsyncs f, then the directory (shared). With others
// in flight, one syncfs(2) of the spool's file system covers the data,
// the inodes and the directory entries of every file written and linked
// before it began, shared by all of them (group commit); the caller that
// runs it first waits, at most the commit linger, for the Creates still
// writing to reach this point.
func (s *DirStore) commit(f *os.File) error {
	s.arriving.Add(-1)
	if s.inflight.Load() <= 1 || !haveSyncFS || s.lock == nil || s.noGroupData {
		s.step("fsync", f.Name())
		if err := f.Sync(); err != nil {
			return fmt.Errorf("queue: syncing spool file: %w", err)
		}
		return s.syncDir()
	}
	s.step("syncfs", f.Name())
	s.dataSync.mu.Lock()
	defer s.dataSync.mu.Unlock()
	linger := s.linger
	if linger == 0 {
		linger = DefaultCommitLinger
	}
	expect := func() uint64 { return uint64(max(s.arriving.Load(), 0)) }
	if linger < 0 {
		expect = nil
	}
	if err := s.dataSync.wait(s.dataSync.ticket(), s.runSyncFS, expect, linger); err != nil {
		return fmt.Errorf("queue: syncing spool: %w", err)
	}
	return nil
}

// deferSync records a change (a removal) that needs a directory fsync
// without waiting for it: the next sync covers it, and a timer makes
// sure one happens.
func (s *DirStore) deferSync() {
	s.dirSync.mu.Lock()
	defer s.dirSync.mu.Unlock()
	s.lazy = s.dirSync.ticket()
	if s.lazyTimer == nil {
		d := s.deleteSyncDelay
		if d <= 0 {
			d = DefaultDeleteSyncDelay
		}
		s.lazyTimer = time.AfterFunc(d, func() { s.flushDeletes() })
	}
}

// flushDeletes waits until the removals done so far are durable.
func (s *DirStore) flushDeletes() error {
	s.dirSync.mu.Lock()
	defer s.dirSync.mu.Unlock()
	if s.lazyTimer != nil {
		s.lazyTimer.Stop()
		s.lazyTimer = nil
	}
	if s.dirSync.synced >= s.lazy {
		return nil // a later Create, Update or flush covered them
	}
	s.step("fsyncdir", s.dir)
	return s.dirSync.wait(s.lazy, s.fsyncDir, nil, 0)
}

func (s *DirStore) fsyncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("queue: syncing spool directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("queue: syncing spool directory: %w", err)
	}
	return nil
}

// writeTemp writes head and then r into a new temporary file, fsyncs and
// closes it, and returns its path and the number of bytes copied from r.
func (s *DirStore) writeTemp(ctx context.Context, head []byte, r io.Reader) (string, int64, error) {
	f, n, err := s.createTemp(ctx, head, r, -1, "")
	if err != nil {
		return "", 0, err
	}
	name := f.Name()
	if err := s.syncData(f); err != nil {
		f.Close()
		os.Remove(name)
		return "", 0, fmt.Errorf("queue: syncing spool file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", 0, fmt.Errorf("queue: closing spool file: %w", err)
	}
	return name, n, nil
}

// createTemp writes head and then r into a new temporary file (named
// after id if it is not empty) and returns it, open and not synced, with
// the number of bytes copied from r. If
// crcAt >= 0, head[crcAt:crcAt+8] is a placeholder for the CRC-32C of
// everything written after head's first line, filled in at the end.
func (s *DirStore) createTemp(ctx context.Context, head []byte, r io.Reader, crcAt int, id string) (*os.File, int64, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, 0, fmt.Errorf("queue: %w", err)
	}
	name := tmpPrefix + hex.EncodeToString(rnd[:])
	if id != "" {
		name += "." + id // see recoverTemp
	}
	name = filepath.Join(s.dir, name)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("queue: creating spool file: %w", err)
	}
	s.step("write", name)
	var n int64
	if r == nil {
		_, err = f.Write(head)
	} else {
		w := bufio.NewWriterSize(f, 32<<10)
		w.Write(head)
		var dst io.Writer = w
		var h hashWriter
		if crcAt >= 0 {
			h.sum = crc32.Update(0, castagnoli, head[crcAt+9:])
			dst = io.MultiWriter(w, &h)
		}
		n, err = io.Copy(dst, ctxReader{ctx, r})
		if err == nil {
			err = w.Flush()
		}
		if err == nil && crcAt >= 0 {
			_, err = f.WriteAt(fmt.Appendf(nil, "%08x", h.sum), int64(crcAt))
		}
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		return nil, 0, fmt.Errorf("queue: writing spool file: %w", err)
	}
	return f, n, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// hashWriter accumulates the CRC-32C of what is written to it.
type hashWriter struct{ sum uint32 }

func (h *hashWriter) Write(p []byte) (int, error) {
	h.sum = crc32.Update(h.sum, castagnoli, p)
	return len(p), nil
}

func (s *DirStore) rename(from, to string) error {
	s.step("rename", to)
	if err := os.Rename(from, to); err != nil {
		os.Remove(from)
		return fmt.Errorf("queue: renaming spool file: %w", err)
	}
	return nil
}

// exists reports whether message id is in the store (ID.msg, or a legacy
// ID.json with ID.eml, looked for only if the spool had legacy files when
// it was opened).
func (s *DirStore) exists(id string) bool {
	if _, err := os.Lstat(s.path(id, msgSuffix)); err == nil {
		return true
	}
	if !s.legacy {
		return false
	}
	if _, err := os.Lstat(s.path(id, bodySuffix)); err == nil {
		_, err := os.Lstat(s.path(id, metaSuffix))
		return err == nil
	}
	return false
}

// Create implements Store: header line (with the CRC), record and body to
// one temporary file, link to ID.msg, then one commit that makes data and
// name durable (see commit), shared with concurrent callers. Where links
// are not supported, or with ordered set, the older order: data synced,
// then renamed (or linked) into place, then the directory synced.
func (s *DirStore) Create(ctx context.Context, m *Message, body io.Reader) error {
	if !validID(m.ID) {
		return fmt.Errorf("%w: %q", ErrBadID, m.ID)
	}
	// Link below refuses an existing ID.msg; a legacy message has none.
	if s.legacy && s.exists(m.ID) {
		return fmt.Errorf("%w: %s", ErrExists, m.ID)
	}
	// The record in ID.msg has no size: it is the rest of the file.
	c := *m
	c.Size = 0
	meta, err := encodeMessage(&c)
	if err != nil {
		return err
	}
	if s.ordered {
		return s.createOrdered(ctx, m, meta, body)
	}
	head := make([]byte, 0, len(msgMagic2)+22+len(meta))
	head = append(head, msgMagic2...)
	head = strconv.AppendInt(head, int64(len(meta)), 10)
	head = append(head, ' ')
	crcAt := len(head)
	head = append(head, "00000000\n"...)
	head = append(head, meta...)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	s.arriving.Add(1)
	f, n, err := s.createTemp(ctx, head, body, crcAt, m.ID)
	if err != nil {
		s.arriving.Add(-1)
		return err
	}
	tmp := f.Name()
	final := s.path(m.ID, msgSuffix)
	s.step("rename", final)
	if err := os.Link(tmp, final); err != nil {
		s.arriving.Add(-1)
		serr := f.Sync()
		f.Close()
		if errors.Is(err, fs.ErrExist) || serr != nil {
			os.Remove(tmp)
		}
		if serr != nil {
			return fmt.Errorf("queue: syncing spool file: %w", serr)
		}
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, m.ID)
		}
		// A file system without hard links: rename, after a check (ids
		// are unique or, for reports, created by one goroutine), once
		// the data is durable.
		if s.exists(m.ID) {
			return fmt.Errorf("%w: %s", ErrExists, m.ID)
		}
		return s.renameSynced(tmp, final, n, m)
	}
	err = s.commit(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Not accepted: the name must not stay to be delivered.
		os.Remove(final)
		os.Remove(tmp)
		return err
	}
	// Only now may the temporary name go: while it exists, a recovery
	// checks ID.msg's CRC (see clean). Its removal needs no sync of its
	// own.
	os.Remove(tmp)
	m.Size = n
	return nil
}

// renameSynced renames tmp, whose data is durable, to final and syncs the
// directory.
func (s *DirStore) renameSynced(tmp, final string, n int64, m *Message) error {
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("queue: renaming spool file: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return err
	}
	m.Size = n
	return nil
}

// createOrdered is Create in the order that needs no CRC: data fsynced,
// link (or rename) to ID.msg, directory fsynced.
func (s *DirStore) createOrdered(ctx context.Context, m *Message, meta []byte, body io.Reader) error {
	head := make([]byte, 0, len(msgMagic)+12+len(meta))
	head = append(head, msgMagic...)
	head = strconv.AppendInt(head, int64(len(meta)), 10)
	head = append(head, '\n')
	head = append(head, meta...)
	s.writing.Add(1)
	tmp, n, err := s.writeTemp(ctx, head, body)
	s.writing.Add(-1)
	if err != nil {
		return err
	}
	// Link, not rename, so that a concurrent Create of the same id cannot
	// replace a message that already exists.
	final := s.path(m.ID, msgSuffix)
	s.step("rename", final)
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			os.Remove(tmp)
			return fmt.Errorf("%w: %s", ErrExists, m.ID)
		}
		// A file system without hard links: rename, after a check (ids
		// are unique or, for reports, created by one goroutine).
		if s.exists(m.ID) {
			os.Remove(tmp)
			return fmt.Errorf("%w: %s", ErrExists, m.ID)
		}
		return s.renameSynced(tmp, final, n, m)
	}
	// Left behind by a crash, it is removed by OpenDirStore.
	os.Remove(tmp)
	if err := s.syncDir(); err != nil {
		return err
	}
	m.Size = n
	return nil
}

// Update implements Store: the new record goes to a temporary file, is
// fsynced and renamed over ID.json, and the directory is fsynced.
func (s *DirStore) Update(ctx context.Context, m *Message) error {
	if !validID(m.ID) {
		return fmt.Errorf("%w: %q", ErrBadID, m.ID)
	}
	meta, err := encodeMessage(m)
	if err != nil {
		return err
	}
	if !s.exists(m.ID) {
		return fmt.Errorf("%w: %s", ErrNotFound, m.ID)
	}
	tmp, _, err := s.writeTemp(ctx, meta, nil)
	if err != nil {
		return err
	}
	if err := s.rename(tmp, s.path(m.ID, metaSuffix)); err != nil {
		return err
	}
	return s.syncDir()
}

// Get implements Store.
func (s *DirStore) Get(ctx context.Context, id string) (*Message, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	m, _, err := s.load(id)
	return m, err
}

// load reads the current record of message id and the offset of its body
// in ID.msg (0 for a legacy ID.eml).
func (s *DirStore) load(id string) (*Message, int64, error) {
	f, err := os.Open(s.path(id, msgSuffix))
	legacy := errors.Is(err, fs.ErrNotExist) && s.legacy
	if legacy {
		f, err = os.Open(s.path(id, bodySuffix))
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, 0, fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("queue: %w", err)
	}
	var off int64
	var initial *Message
	if !legacy {
		initial, off, err = readMsgHeader(bufio.NewReaderSize(f, 4096))
		if err != nil {
			return nil, 0, fmt.Errorf("%s%s: %w", id, msgSuffix, err)
		}
		if initial.ID != id {
			return nil, 0, fmt.Errorf("queue: %s%s holds message %q", id, msgSuffix, initial.ID)
		}
	}
	m, err := s.loadMeta(id)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !legacy:
		m = initial
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	case err != nil:
		return nil, 0, err
	}
	m.Size = st.Size() - off
	if m.Size < 0 {
		return nil, 0, fmt.Errorf("%w: %s%s is shorter than its header", ErrCorrupt, id, msgSuffix)
	}
	return m, off, nil
}

// loadMeta reads ID.json; a missing file is returned as fs.ErrNotExist.
func (s *DirStore) loadMeta(id string) (*Message, error) {
	name := id + metaSuffix
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadata+1))
	if err != nil {
		return nil, fmt.Errorf("queue: reading %s: %w", name, err)
	}
	m, err := DecodeMessage(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("queue: %s holds message %q", name, m.ID)
	}
	return m, nil
}

// readMsgHeader parses the start of a .msg file: the header line and the
// record it announces. It returns the record and the body's offset.
func readMsgHeader(r *bufio.Reader) (*Message, int64, error) {
	line, err := r.ReadSlice('\n')
	if err != nil || len(line) > maxHeaderLine {
		return nil, 0, errors.New("queue: no spool header line")
	}
	n, _, _, err := parseHeaderLine(string(line[:len(line)-1]))
	if err != nil {
		return nil, 0, err
	}
	off := int64(len(line))
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, 0, fmt.Errorf("queue: spool record cut short: %w", err)
	}
	m, err := DecodeMessage(b)
	if err != nil {
		return nil, 0, err
	}
	return m, off + n, nil
}

// parseHeaderLine parses the first line of a .msg file, without its
// newline: the length of the record and, after msgMagic2, the CRC-32C of
// the rest of the file.
func parseHeaderLine(line string) (n int64, crc uint32, hasCRC bool, err error) {
	lenText, ok := strings.CutPrefix(line, msgMagic)
	if !ok {
		lenText, hasCRC = strings.CutPrefix(line, msgMagic2)
		if !hasCRC {
			return 0, 0, false, errors.New("queue: not a spool file (bad magic)")
		}
		var crcText string
		lenText, crcText, ok = strings.Cut(lenText, " ")
		c, perr := strconv.ParseUint(crcText, 16, 32)
		if !ok || len(crcText) != 8 || perr != nil {
			return 0, 0, false, fmt.Errorf("queue: bad CRC %q in spool header", crcText)
		}
		crc = uint32(c)
	}
	n, err = strconv.ParseInt(lenText, 10, 64)
	if err != nil || n <= 0 || n > maxMetadata || strconv.FormatInt(n, 10) != lenText {
		return 0, 0, false, fmt.Errorf("queue: bad record length %q in spool header", lenText)
	}
	return n, crc, hasCRC, nil
}

// Body implements Store: a view of ID.msg from the end of its record.
func (s *DirStore) Body(ctx context.Context, id string) (Body, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	name := s.path(id, msgSuffix)
	f, err := os.Open(name)
	legacy := errors.Is(err, fs.ErrNotExist) && s.legacy
	if legacy {
		f, err = os.Open(s.path(id, bodySuffix))
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, fmt.Errorf("queue: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	var off int64
	if !legacy {
		// Only the header line is needed; the record's length is in it.
		var hb [maxHeaderLine]byte
		k, _ := f.ReadAt(hb[:], 0)
		i := strings.IndexByte(string(hb[:k]), '\n')
		var n int64
		perr := errors.New("no header line")
		if i > 0 {
			n, _, _, perr = parseHeaderLine(string(hb[:i]))
		}
		if perr != nil || int64(i+1)+n > st.Size() {
			f.Close()
			return nil, fmt.Errorf("%w: %s%s: bad spool header", ErrCorrupt, id, msgSuffix)
		}
		off = int64(i+1) + n
	}
	return &fileBody{f: f, off: off, size: st.Size() - off}, nil
}

// fileBody is the body part of a spool file.
type fileBody struct {
	f         *os.File
	off, size int64
}

func (b *fileBody) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("queue: negative offset")
	}
	if off >= b.size {
		return 0, io.EOF
	}
	short := false
	if rest := b.size - off; int64(len(p)) > rest {
		p, short = p[:rest], true
	}
	n, err := b.f.ReadAt(p, b.off+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (b *fileBody) Close() error { return b.f.Close() }
func (b *fileBody) Size() int64  { return b.size }

// List implements Store. A record that cannot be read or parsed is left in
// place and named in an error wrapping ErrCorrupt; the others are returned.
func (s *DirStore) List(ctx context.Context) ([]*Message, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("queue: reading spool directory: %w", err)
	}
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		have[e.Name()] = true
	}
	var out []*Message
	var bad []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		var id string
		switch {
		case strings.HasSuffix(name, msgSuffix):
			id = strings.TrimSuffix(name, msgSuffix)
		case strings.HasSuffix(name, metaSuffix):
			// Legacy layout only; with ID.msg the record is listed there.
			id = strings.TrimSuffix(name, metaSuffix)
			if have[id+msgSuffix] {
				continue
			}
		default:
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, _, err := s.load(id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile, or a legacy record without body
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err))
			continue
		}
		out = append(out, m)
	}
	return out, errors.Join(bad...)
}

// Delete implements Store: ID.msg (or the legacy ID.eml), then ID.json.
// It does not wait for the directory fsync that makes the removal
// durable; see DirStore.
func (s *DirStore) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	s.step("remove", s.path(id, msgSuffix))
	err := os.Remove(s.path(id, msgSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		if !s.legacy {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		// Legacy layout: record first, so that a crash never leaves a
		// record without its body.
		if _, serr := os.Lstat(s.path(id, bodySuffix)); serr != nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err := os.Remove(s.path(id, metaSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: %w", err)
		}
		if err := os.Remove(s.path(id, bodySuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: %w", err)
		}
		s.deferSync()
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	s.step("remove", s.path(id, metaSuffix))
	if err := os.Remove(s.path(id, metaSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.deferSync()
		return fmt.Errorf("queue: %w", err)
	}
	s.deferSync()
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
