package queue

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	// length in bytes of the JSON record that follows the line.
	msgMagic = "mailtls-spool-1 "
	// maxHeaderLine bounds the first line of a .msg file.
	maxHeaderLine = 64
)

// DefaultDeleteSyncDelay is how long after a Delete a DirStore fsyncs the
// spool directory if no other change has done it meanwhile.
const DefaultDeleteSyncDelay = 50 * time.Millisecond

// ErrLocked is returned by OpenDirStore when another DirStore (in this or
// another process) has the spool directory open. Close the other one, or
// stop the process using it; operators query a running queue through it.
var ErrLocked = errors.New("queue: spool directory in use")

// DirStore is the default Store: one spool directory holding, per message,
// ID.msg — one line "mailtls-spool-1 N", the N-byte JSON Message record as
// it was when the message was accepted, then the body as received — and,
// once the queue has recorded a delivery attempt, ID.json, the current
// record, which takes precedence over the one in ID.msg.
//
// Create writes the whole file under a temporary name and makes its data
// durable, links it to ID.msg (atomic, and refusing to replace an existing
// message), and fsyncs the directory. Both syncs are shared by concurrent
// callers (group commit): one directory fsync covers every Create, Update
// and Delete that linked, renamed or removed a file before it started;
// one syncfs(2) covers the data of every file written before it started
// (a lone Create fsyncs its own file instead). Update writes ID.json the
// same way. So a message "exists" exactly when its ID.msg file does,
// complete: its name is made durable only after its data is.
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
// Spools written before the .msg format (ID.eml plus ID.json) are still
// read and delivered.
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
	writing  atomic.Int32 // Creates between their first write and their data sync

	// legacy is set when OpenDirStore found .eml files (the layout before
	// .msg); only then do lookups of a missing ID.msg try ID.eml.
	legacy bool

	// noGroupData makes every Create fsync its own file (benchmarks
	// measure the group commit against it).
	noGroupData bool

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

// ticket hands out a ticket. g.mu is held.
func (g *groupSync) ticket() uint64 {
	g.requested++
	return g.requested
}

// wait returns once a sync (do) that began after ticket was handed out
// has completed, with the result of the latest sync (a later success makes
// an earlier failure moot). g.mu is held.
func (g *groupSync) wait(ticket uint64, do func() error) error {
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	for g.synced < ticket {
		if g.syncing {
			g.cond.Wait()
			continue
		}
		g.syncing = true
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
	return s.dirSync.wait(s.dirSync.ticket(), s.fsyncDir)
}

// syncData makes the data of f, a new file just written, durable. Alone
// (no other Create is writing) it fsyncs f; with others in flight, one
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
	return s.dataSync.wait(s.dataSync.ticket(), func() error {
		s.step("syncfs-run", s.dir)
		return syncFS(s.lock)
	})
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
	return s.dirSync.wait(s.lazy, s.fsyncDir)
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
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", 0, fmt.Errorf("queue: %w", err)
	}
	name := filepath.Join(s.dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("queue: creating spool file: %w", err)
	}
	fail := func(err error) (string, int64, error) {
		f.Close()
		os.Remove(name)
		return "", 0, err
	}
	s.step("write", name)
	var n int64
	if r == nil {
		_, err = f.Write(head)
	} else {
		w := bufio.NewWriterSize(f, 32<<10)
		w.Write(head)
		n, err = io.Copy(w, ctxReader{ctx, r})
		if err == nil {
			err = w.Flush()
		}
	}
	if err != nil {
		return fail(fmt.Errorf("queue: writing spool file: %w", err))
	}
	if err := s.syncData(f); err != nil {
		return fail(fmt.Errorf("queue: syncing spool file: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", 0, fmt.Errorf("queue: closing spool file: %w", err)
	}
	return name, n, nil
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

// Create implements Store: header line, record and body to one temporary
// file, fsync, link to ID.msg, then fsync the directory (shared with
// concurrent callers).
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
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("queue: renaming spool file: %w", err)
		}
	} else {
		// Left behind by a crash, it is removed by OpenDirStore.
		os.Remove(tmp)
	}
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
	lenText, ok := strings.CutPrefix(string(line[:len(line)-1]), msgMagic)
	if !ok {
		return nil, 0, errors.New("queue: not a spool file (bad magic)")
	}
	n, err := strconv.ParseInt(lenText, 10, 64)
	if err != nil || n <= 0 || n > maxMetadata || strconv.FormatInt(n, 10) != lenText {
		return nil, 0, fmt.Errorf("queue: bad record length %q in spool header", lenText)
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
		lenText, ok := "", false
		if i > 0 {
			lenText, ok = strings.CutPrefix(string(hb[:i]), msgMagic)
		}
		n, perr := strconv.ParseInt(lenText, 10, 64)
		if !ok || perr != nil || n <= 0 || int64(i+1)+n > st.Size() {
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
