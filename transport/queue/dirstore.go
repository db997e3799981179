package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// File names in a spool directory.
const (
	bodySuffix = ".eml"
	metaSuffix = ".json"
	tmpPrefix  = "tmp-"
	lockName   = "lock"
)

// ErrLocked is returned by OpenDirStore when another DirStore (in this or
// another process) has the spool directory open. Close the other one, or
// stop the process using it; operators query a running queue through it.
var ErrLocked = errors.New("queue: spool directory in use")

// DirStore is the default Store: one spool directory holding, per message,
// ID.eml (the body as received) and ID.json (the Message record).
//
// Every change is made crash-safe the classic way: the new content is
// written to a temporary file in the same directory and fsynced, renamed
// over its final name (rename is atomic on POSIX file systems), and the
// directory is fsynced so that the rename itself is durable. Create writes
// the body before the metadata and syncs the directory once after both
// renames, so a message "exists" exactly when its .json file does; Delete
// removes the .json file first. OpenDirStore removes the leftovers of
// interrupted operations: temporary files, and bodies without metadata
// (never acknowledged to a client) or metadata without a body (only
// possible when a Create was cut before its directory sync).
//
// A spool directory is used by one DirStore at a time: OpenDirStore takes
// an exclusive lock (flock(2) on the file "lock", where the system has it)
// and Close releases it; the kernel releases it if the process dies.
type DirStore struct {
	dir  string
	lock *os.File

	// Group commit of directory fsyncs (see syncDir).
	smu       sync.Mutex
	scond     *sync.Cond
	requested uint64 // tickets handed out
	synced    uint64 // tickets covered by the last completed sync
	syncing   bool
	syncErr   error

	// trace, if set, is called before each step that matters for
	// durability ("write", "fsync", "rename", "fsyncdir", "remove") with
	// the file concerned. Tests use it to check the order.
	trace func(op, name string)
}

var _ Store = (*DirStore)(nil)

// OpenDirStore opens (creating it if needed, mode 0700) the spool directory
// dir, locks it (ErrLocked if it is in use) and removes what interrupted
// operations left behind. It starts no goroutines.
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

// Close releases the spool directory's lock. The DirStore must not be used
// afterwards.
func (s *DirStore) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
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

// clean removes temporary files and incomplete messages.
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
		case strings.HasSuffix(name, bodySuffix):
			orphan = !have[strings.TrimSuffix(name, bodySuffix)+metaSuffix]
		case strings.HasSuffix(name, metaSuffix):
			orphan = !have[strings.TrimSuffix(name, metaSuffix)+bodySuffix]
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

// syncDir makes every rename and remove done so far in the directory
// durable. Concurrent callers share one fsync (group commit): a caller
// waits for a sync that started after it asked, since an fsync of the
// directory covers every entry changed before it began.
func (s *DirStore) syncDir() error {
	s.step("fsyncdir", s.dir)
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.scond == nil {
		s.scond = sync.NewCond(&s.smu)
	}
	s.requested++
	ticket := s.requested
	for s.synced < ticket {
		if s.syncing {
			s.scond.Wait()
			continue
		}
		s.syncing = true
		target := s.requested
		s.smu.Unlock()
		err := s.fsyncDir()
		s.smu.Lock()
		s.syncing = false
		s.synced, s.syncErr = target, err
		s.scond.Broadcast()
	}
	// The latest sync covers this caller; its result is the one that
	// counts (a later success makes an earlier failure moot).
	return s.syncErr
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

// writeTemp copies r into a new temporary file, fsyncs and closes it, and
// returns its path and size.
func (s *DirStore) writeTemp(ctx context.Context, r io.Reader) (string, int64, error) {
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
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return fail(fmt.Errorf("queue: writing spool file: %w", err))
	}
	s.step("fsync", name)
	if err := f.Sync(); err != nil {
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

// Create implements Store: body to a temporary file, fsync, rename to
// ID.eml; metadata the same way to ID.json; then fsync the directory.
func (s *DirStore) Create(ctx context.Context, m *Message, body io.Reader) error {
	if !validID(m.ID) {
		return fmt.Errorf("%w: %q", ErrBadID, m.ID)
	}
	if _, err := os.Lstat(s.path(m.ID, metaSuffix)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, m.ID)
	}
	if err := m.validate(); err != nil {
		return err
	}
	tmpBody, n, err := s.writeTemp(ctx, body)
	if err != nil {
		return err
	}
	m.Size = n
	meta, err := encodeMessage(m)
	if err != nil {
		os.Remove(tmpBody)
		return err
	}
	tmpMeta, _, err := s.writeTemp(ctx, strings.NewReader(string(meta)))
	if err != nil {
		os.Remove(tmpBody)
		return err
	}
	if err := s.rename(tmpBody, s.path(m.ID, bodySuffix)); err != nil {
		os.Remove(tmpMeta)
		return err
	}
	// Link, not rename, so that a concurrent Create of the same id cannot
	// replace a message that already exists.
	s.step("rename", s.path(m.ID, metaSuffix))
	if err := os.Link(tmpMeta, s.path(m.ID, metaSuffix)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			os.Remove(tmpMeta)
			return fmt.Errorf("%w: %s", ErrExists, m.ID)
		}
		// A file system without hard links: rename, after the check above
		// (ids are unique or, for reports, created by one goroutine).
		if err := os.Rename(tmpMeta, s.path(m.ID, metaSuffix)); err != nil {
			os.Remove(tmpMeta)
			os.Remove(s.path(m.ID, bodySuffix))
			return fmt.Errorf("queue: renaming spool file: %w", err)
		}
	} else {
		os.Remove(tmpMeta)
	}
	return s.syncDir()
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
	if _, err := os.Lstat(s.path(m.ID, metaSuffix)); err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, m.ID)
	}
	tmp, _, err := s.writeTemp(ctx, strings.NewReader(string(meta)))
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
	return s.load(id + metaSuffix)
}

func (s *DirStore) load(name string) (*Message, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, strings.TrimSuffix(name, metaSuffix))
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
	if m.ID+metaSuffix != name {
		return nil, fmt.Errorf("queue: %s holds message %q", name, m.ID)
	}
	return m, nil
}

// Body implements Store; the result is the open *os.File of ID.eml.
func (s *DirStore) Body(ctx context.Context, id string) (Body, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrBadID, id)
	}
	f, err := os.Open(s.path(id, bodySuffix))
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
	return fileBody{f, st.Size()}, nil
}

type fileBody struct {
	*os.File
	size int64
}

func (b fileBody) Size() int64 { return b.size }

// List implements Store. A record that cannot be read or parsed is left in
// place and named in an error wrapping ErrCorrupt; the others are returned.
func (s *DirStore) List(ctx context.Context) ([]*Message, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("queue: reading spool directory: %w", err)
	}
	var out []*Message
	var bad []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, metaSuffix) || strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := s.load(name)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err))
			continue
		}
		out = append(out, m)
	}
	return out, errors.Join(bad...)
}

// Delete implements Store: ID.json first, then ID.eml, then a directory
// fsync.
func (s *DirStore) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	s.step("remove", s.path(id, metaSuffix))
	if err := os.Remove(s.path(id, metaSuffix)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return fmt.Errorf("queue: %w", err)
	}
	s.step("remove", s.path(id, bodySuffix))
	if err := os.Remove(s.path(id, bodySuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return s.syncDir()
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
