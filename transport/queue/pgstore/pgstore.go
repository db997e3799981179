// Package pgstore is a queue.Store kept in PostgreSQL: the spool records
// and bodies live in the database, so a relay needs no spool disk of its
// own. It passes the same Store contract as queue.DirStore.
//
// Open connects, creates or migrates the schema (a version table,
// mailtls_schema, records which migrations ran) and returns a Store:
//
//	st, err := pgstore.Open(ctx, "postgres://relay@db.example.net/mail", pgstore.Options{Node: "relay-1"})
//	q := &queue.Queue{Store: st, Deliverer: connector}
//
// # Durability
//
// Create, Update and Delete are each one statement in their own
// transaction and return when PostgreSQL has committed it. With
// synchronous_commit = on (PostgreSQL's default) a COMMIT returns once its
// WAL record is flushed on the primary's disk: the message survives a crash
// of the database host, which is what the SMTP 250 promises (RFC 5321
// §6.1). A standby adds nothing to that promise unless synchronous_standby_names
// names it: then, with synchronous_commit = on (or remote_write,
// remote_apply), COMMIT also waits for the standby to have received (and
// flushed, or applied) the record, so the message survives the loss of the
// primary's disk as well. With asynchronous replication a failover can lose
// the last commits: mail the relays answered 250 for. synchronous_commit =
// off makes COMMIT return before the flush and must not be used for the
// queue.
//
// # Bodies
//
// Bodies are kept as bytea chunks of ChunkSize bytes in queue_body, keyed
// by message id and chunk number, rather than as large objects: chunks are
// written in the same statement as the record (one round trip, one
// commit), are removed with it by ON DELETE CASCADE (large objects must be
// unlinked separately and leak when a node dies in between), and Body's
// ReadAt fetches only the chunks a range covers.
//
// # Several nodes
//
// Store is a queue.Claimer: several relays, each with its own Store (and
// Options.Node) on one database, share the queue. A message is leased to
// one node at a time, with a fencing epoch raised at every claim: the node
// that creates it holds it first; a node claims due messages nobody holds
// with UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED), so
// that concurrent claims never take the same row; leases are renewed while
// the node runs and expire when it dies (Options.Lease), and then another
// node claims the messages. Update and Delete are conditional on the
// node's epoch: a node that was paused past its lease gets
// queue.ErrLeaseLost and its write changes nothing. Lease times are the
// database's clock (now()), so the nodes' clocks need not agree.
//
// New work reaches an idle node in two ways: every node scans the due
// index (Claim) at its polling interval (Queue.PollInterval), and a
// message nobody holds that is due now (released by a node that holds as
// many as it may, or made due by an operator) is announced with NOTIFY
// queue_due, which every node LISTENs for on a connection of its own
// (Wakeups, queue.Waker). Create sends no NOTIFY: its node holds the new
// message, and PostgreSQL serializes the commits of transactions that
// notify, which would serialize every Create. The retry schedule is the
// recipients' NextAttempt, kept in the due column.
//
// Per-destination concurrency holds across the nodes: before each
// attempt a node takes one of Queue.PerDomainConcurrency slots of the
// domain in queue_slot (AcquireSlot, queue.DomainSlots), renewed with its
// leases and freed when the attempt ends or the node's lease passes. The
// maximum age holds as on one node: it counts from the ReceivedAt in the
// record, whichever node attempts. Reports are created at most once per
// recipient and event: their ids are planned in the record's write, which
// the lease epoch fences, and Create refuses an id that exists or existed:
// every id created is kept in queue_id for Options.IDRetention after its
// message is gone, because a node that dies between creating a report
// and recording it leaves the report and its message to be claimed apart,
// and the report may be delivered and deleted before another node
// claims the message and would create it again. A message whose planned
// report is not created yet is due at once, held or not.
//
// The MTA-STS policy cache can live in the same database (PolicyCache, an
// mtasts.Cache), so that the nodes share the policies any of them fetched.
//
// So can the TLS-RPT results (TLSRPTStore, a tlsrpt.Store), so that a
// report covers the sessions of every node, and the marker of reported
// days (ReportDays, set as tlsrpt.Reporter.Days), so that the nodes send
// one report per policy domain per day between them.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailtls/mailtls/transport/queue"
)

// ChunkSize is the size of the body chunks stored in queue_body.
const ChunkSize = 256 << 10

// Options configure a Store. The zero value is usable.
type Options struct {
	// Node names this process in leases (lease_owner); empty means
	// "hostname.pid".
	Node string
	// MaxConns bounds the connection pool; 0 means DefaultMaxConns.
	MaxConns int32
	// Lease is how long a node holds a message without renewing its
	// lease (queue.Claimer); 0 means DefaultLease.
	Lease time.Duration
	// IDRetention is how long after its creation the id of a message
	// stays used once the message is deleted, so that Create refuses it
	// (queue.ErrExists); 0 means
	// DefaultIDRetention. It must exceed the Queue's MaxAge: a report's id
	// is planned in its message's record, and a node that takes over a
	// message whose report another node created, delivered and deleted
	// must not create it again.
	IDRetention time.Duration
}

// DefaultIDRetention is the id retention when Options.IDRetention is
// zero: twice the Queue's default maximum age.
const DefaultIDRetention = 2 * queue.DefaultMaxAge

// pruneEvery is how often a node deletes the ids older than the retention
// whose messages are gone (Renew).
const pruneEvery = 10 * time.Minute

// DefaultMaxConns is the pool size when Options.MaxConns is zero: every
// Enqueue and every delivery's record holds a connection for one commit,
// so a pool as small as pgxpool's default (4 on two cores) makes them wait
// for each other (BenchmarkSharedQueue: 290 against 1,500 msgs/s with 16
// on one node). Three nodes use 48 of PostgreSQL's default 100.
const DefaultMaxConns = 16

// DefaultLease is the lease period when Options.Lease is zero: a node
// that dies leaves its messages to others after at most this long.
const DefaultLease = 30 * time.Second

// Store is a queue.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	node     string
	leaseFor time.Duration

	idRetention time.Duration
	pruned      atomic.Pointer[time.Time] // the last pruning of queue_id; nil none

	mu     sync.Mutex
	leases map[string]int64 // id → epoch of the lease this node holds
	// fenced are the leases Renew found taken over: writes stay
	// conditional on the old epoch, so they are refused (ErrLeaseLost)
	// instead of overwriting the new holder's record.
	fenced map[string]int64
	slots  map[string]bool // holders of the delivery slots this node has (AcquireSlot)
	// idleSlots are slots given back by an attempt and kept for the next
	// one to the same domain (parkSlot); expired are those to give back
	// at the next sweep; slotTimer runs the sweep; closed stops it.
	idleSlots map[string][]heldSlot
	expired   []heldSlot
	slotTimer *time.Timer
	closed    bool

	listen listener
}

var _ queue.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// libpq key=value string), checks that it answers, and creates or
// migrates the schema. The database must exist.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: bad connection string: %w", err)
	}
	cfg.MaxConns = DefaultMaxConns
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: cannot reach the database: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	node := opt.Node
	if node == "" {
		node = defaultNode()
	}
	lease := opt.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	keep := opt.IDRetention
	if keep <= 0 {
		keep = DefaultIDRetention
	}
	return &Store{pool: pool, node: node, leaseFor: lease, idRetention: keep,
		leases: map[string]int64{}, fenced: map[string]int64{}, slots: map[string]bool{}, idleSlots: map[string][]heldSlot{}}, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.dropIdleSlots()
	s.stopListening()
	s.pool.Close()
	return nil
}

// Node returns the name this store uses as lease owner.
func (s *Store) Node() string { return s.node }

// Pool returns the connection pool, for the other shared state kept in the
// same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func checkID(id string) error {
	if !queue.ValidID(id) {
		return fmt.Errorf("%w: %q", queue.ErrBadID, id)
	}
	return nil
}

// due is the time a message wants its next attempt: now (the zero time)
// when a report it planned is not created yet or only its removal is
// left, else the earliest NextAttempt of its waiting recipients, and nil
// when nothing is to be done or it is held. A planned report is due at
// once even when the message is held or its other recipients wait: the
// node that planned it may have died before creating it, and whoever
// claims the message creates it (or finds it created).
func due(m *queue.Message) *time.Time {
	if needsReports(m) {
		return &time.Time{}
	}
	if m.Held {
		return nil
	}
	var t time.Time
	waiting := false
	for _, r := range m.Recipients {
		if r.State.Final() {
			continue
		}
		if !waiting || r.NextAttempt.Before(t) {
			t = r.NextAttempt
		}
		waiting = true
	}
	if waiting {
		return &t
	}
	if m.Done() {
		return &time.Time{}
	}
	return nil
}

func needsReports(m *queue.Message) bool {
	for _, r := range m.Recipients {
		if (r.FinalReport != "" && !r.FinalReportDone) || (r.DelayReport != "" && !r.DelayReportDone) {
			return true
		}
	}
	return false
}

// encode renders m as the spool record (queue.EncodeMessage checks it).
func encode(m *queue.Message) ([]byte, error) {
	return queue.EncodeMessage(m)
}

// Create stores body and m in one statement: zero rows inserted means the
// id exists or existed within Options.IDRetention (queue.ErrExists) and
// nothing changed. Ids are never reused: a report planned in a record
// that a dead node left behind is created at most once, even after
// another node delivered and deleted it.
func (s *Store) Create(ctx context.Context, m *queue.Message, body io.Reader) error {
	if err := checkID(m.ID); err != nil {
		return err
	}
	var chunks [][]byte
	var size int64
	for {
		buf := make([]byte, ChunkSize)
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			chunks = append(chunks, buf[:n])
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("pgstore: reading body of %s: %w", m.ID, err)
		}
	}
	m.Size = size
	rec, err := encode(m)
	if err != nil {
		return err
	}
	if chunks == nil {
		chunks = [][]byte{}
	}
	var n int
	err = s.pool.QueryRow(ctx, `
WITH i AS (
  INSERT INTO queue_id (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id),
m AS (
  INSERT INTO queue_message (id, record, size, due, received_at, lease_owner, lease_until, lease_epoch)
  SELECT $1, $2, $3, $4, $5, $7, now() + make_interval(secs => $8), 1 FROM i
  ON CONFLICT (id) DO NOTHING RETURNING id),
b AS (
  INSERT INTO queue_body (id, seq, data)
  SELECT m.id, c.seq - 1, c.data FROM m, unnest($6::bytea[]) WITH ORDINALITY AS c(data, seq))
SELECT count(*) FROM m`, m.ID, rec, size, due(m), m.ReceivedAt, chunks, s.node, s.leaseFor.Seconds()).Scan(&n)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "53100" { // disk_full
			return fmt.Errorf("pgstore: creating %s: %w: %w", m.ID, queue.ErrInsufficientStorage, err)
		}
		return fmt.Errorf("pgstore: creating %s: %w", m.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", queue.ErrExists, m.ID)
	}
	// The node that creates a message holds it first (queue.Claimer).
	// No NOTIFY: nobody else may claim it before this node releases it.
	s.mu.Lock()
	s.leases[m.ID] = 1
	s.mu.Unlock()
	return nil
}

// notifyChannel is the LISTEN/NOTIFY channel on which a node announces a
// message nobody holds that is due now (queue.Waker).
const notifyChannel = "queue_due"

// notify wakes idle nodes; a lost notification only delays the work to
// their next due-index scan.
func notify(ctx context.Context, pool *pgxpool.Pool) {
	pool.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
}

// lease returns the epoch of this node's lease on id, if it holds one.
func (s *Store) lease(id string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.leases[id]; ok {
		return e, true
	}
	e, ok := s.fenced[id]
	return e, ok
}

// Update replaces the record of m. When this node holds a lease on m, the
// write is conditional on its epoch and returns queue.ErrLeaseLost if
// another node has taken the message over since (matching
// queue.ErrNotFound too if the message was removed meanwhile); the lease is kept (a
// delivery may write several times) until Release. When it does not (an
// operator's change made on any node), the write is refused with
// queue.ErrLeased while another node holds the message.
func (s *Store) Update(ctx context.Context, m *queue.Message) error {
	rec, err := encode(m)
	if err != nil {
		return err
	}
	epoch, leased := s.lease(m.ID)
	// Without a lease (an operator's change), the write waits for no one
	// and overwrites no one: it is refused while another node holds the
	// message, which would overwrite it with its own result.
	tag, err := s.pool.Exec(ctx, `
UPDATE queue_message SET record = $2, due = $3
 WHERE id = $1 AND CASE WHEN $4::bigint IS NULL THEN lease_until IS NULL OR lease_until < now()
                        ELSE lease_epoch = $4 END`, m.ID, rec, due(m), nullable(epoch, leased))
	if err != nil {
		return fmt.Errorf("pgstore: updating %s: %w", m.ID, err)
	}
	if tag.RowsAffected() == 0 {
		if !leased {
			var owner string
			err := s.pool.QueryRow(ctx, `SELECT coalesce(lease_owner, '') FROM queue_message WHERE id = $1`, m.ID).Scan(&owner)
			if err == nil {
				return fmt.Errorf("%w: %s is held by node %s", queue.ErrLeased, m.ID, owner)
			}
		}
		return s.missing(ctx, m.ID, leased)
	}
	if d := due(m); !leased && d != nil && !d.After(time.Now()) {
		// An operator made a message due now (RetryNow) that this node
		// does not hold: if nobody does, an idle node claims it at once.
		notify(ctx, s.pool)
	}
	return nil
}

func nullable(epoch int64, ok bool) *int64 {
	if !ok {
		return nil
	}
	return &epoch
}

// missing tells a lost lease from a removed message after a conditional
// write changed nothing. A message this node held a lease on and did not
// remove was removed by another (the node that took it over and finished
// it, or an operator): the lease is lost all the same, and the error
// matches both.
func (s *Store) missing(ctx context.Context, id string, leased bool) error {
	if !leased {
		return fmt.Errorf("%w: %s", queue.ErrNotFound, id)
	}
	s.forget(id)
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM queue_message WHERE id = $1)`, id).Scan(&exists); err == nil && exists {
		return fmt.Errorf("%w: %s (node %s)", queue.ErrLeaseLost, id, s.node)
	}
	return fmt.Errorf("%w: %s, removed while node %s held it: %w", queue.ErrNotFound, id, s.node, queue.ErrLeaseLost)
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.leases, id)
	delete(s.fenced, id)
	s.mu.Unlock()
}

// Get returns the record of one message.
func (s *Store) Get(ctx context.Context, id string) (*queue.Message, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var rec []byte
	err := s.pool.QueryRow(ctx, `SELECT record FROM queue_message WHERE id = $1`, id).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", queue.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading %s: %w", id, err)
	}
	m, err := queue.DecodeMessage(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", queue.ErrCorrupt, id, err)
	}
	return m, nil
}

// List returns the records of every message in the database, whichever
// node holds them. Unreadable records are named in an error wrapping
// queue.ErrCorrupt, returned with the others.
func (s *Store) List(ctx context.Context) ([]*queue.Message, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, record FROM queue_message`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing: %w", err)
	}
	defer rows.Close()
	var msgs []*queue.Message
	var bad []error
	for rows.Next() {
		var id string
		var rec []byte
		if err := rows.Scan(&id, &rec); err != nil {
			return nil, fmt.Errorf("pgstore: listing: %w", err)
		}
		m, err := queue.DecodeMessage(rec)
		if err != nil || m.ID != id {
			bad = append(bad, fmt.Errorf("record %s: %v", id, err))
			continue
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: listing: %w", err)
	}
	if len(bad) > 0 {
		return msgs, fmt.Errorf("%w: %w", queue.ErrCorrupt, errors.Join(bad...))
	}
	return msgs, nil
}

// Delete removes a message; its body chunks go with it (ON DELETE
// CASCADE, same transaction). Like Update, it is conditional on this
// node's lease epoch when it holds one.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	epoch, leased := s.lease(id)
	tag, err := s.pool.Exec(ctx, `DELETE FROM queue_message WHERE id = $1 AND ($2::bigint IS NULL OR lease_epoch = $2)`,
		id, nullable(epoch, leased))
	if err != nil {
		return fmt.Errorf("pgstore: deleting %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return s.missing(ctx, id, leased)
	}
	s.forget(id)
	return nil
}

// Body opens the body of a message. Its ReadAt queries the chunks a range
// covers, using ctx; the last chunk read is kept for the next call.
func (s *Store) Body(ctx context.Context, id string) (queue.Body, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var size int64
	err := s.pool.QueryRow(ctx, `SELECT size FROM queue_message WHERE id = $1`, id).Scan(&size)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", queue.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: opening body of %s: %w", id, err)
	}
	return &body{ctx: ctx, pool: s.pool, id: id, size: size, seq: -1}, nil
}

type body struct {
	ctx  context.Context
	pool *pgxpool.Pool
	id   string
	size int64

	mu   sync.Mutex
	seq  int64 // chunk held in data, -1 for none
	data []byte
}

func (b *body) Size() int64  { return b.size }
func (b *body) Close() error { return nil }

// ReadAt implements io.ReaderAt over the stored chunks.
func (b *body) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("pgstore: negative offset")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= b.size {
			return n, io.EOF
		}
		seq := pos / ChunkSize
		if seq != b.seq {
			if err := b.load(seq); err != nil {
				return n, err
			}
		}
		start := pos - seq*ChunkSize
		if start >= int64(len(b.data)) {
			return n, fmt.Errorf("pgstore: body of %s is shorter than its size", b.id)
		}
		n += copy(p[n:], b.data[start:])
	}
	return n, nil
}

// load fetches chunk seq. Reads that span several chunks fetch them one
// at a time; the Connector reads sequentially, so each chunk is fetched
// once per pass.
func (b *body) load(seq int64) error {
	var data []byte
	err := b.pool.QueryRow(b.ctx, `SELECT data FROM queue_body WHERE id = $1 AND seq = $2`, b.id, seq).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s (body chunk %d)", queue.ErrNotFound, b.id, seq)
	}
	if err != nil {
		return fmt.Errorf("pgstore: reading body of %s: %w", b.id, err)
	}
	b.seq, b.data = seq, data
	return nil
}
