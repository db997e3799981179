package pgstore

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order; mailtls_schema holds the number of the
// last one applied. Never edit one that has shipped: append.
var migrations = []string{
	// 1: messages, bodies, the due-time index used by Claim.
	`CREATE TABLE queue_message (
	   id          text PRIMARY KEY,
	   record      jsonb       NOT NULL,   -- queue.Message, the spool record
	   size        bigint      NOT NULL,
	   due         timestamptz,            -- next attempt; NULL: nothing to do (held, or waiting for nobody)
	   received_at timestamptz NOT NULL,
	   lease_owner text,
	   lease_until timestamptz,
	   lease_epoch bigint      NOT NULL DEFAULT 0
	 );
	 CREATE INDEX queue_message_due ON queue_message (due) WHERE due IS NOT NULL;
	 CREATE TABLE queue_body (
	   id   text   NOT NULL REFERENCES queue_message (id) ON DELETE CASCADE,
	   seq  bigint NOT NULL,
	   data bytea  NOT NULL,
	   PRIMARY KEY (id, seq)
	 );`,
	// 2: per-destination delivery slots shared by all nodes (AcquireSlot).
	`CREATE TABLE queue_slot (
	   domain text        NOT NULL,
	   slot   int         NOT NULL,
	   holder text        NOT NULL,   -- node and acquisition, released by it
	   until  timestamptz NOT NULL,   -- free after this unless renewed
	   PRIMARY KEY (domain, slot)
	 );`,
	// 3: the MTA-STS policy cache shared by the nodes (PolicyCache).
	`CREATE TABLE mtasts_policy (
	   domain text  PRIMARY KEY,
	   entry  jsonb NOT NULL   -- mtasts.Entry as DirCache writes it
	 );`,
	// 4: TLS-RPT results recorded by every node (TLSRPTStore).
	`CREATE TABLE tlsrpt_result (
	   id     bigserial   PRIMARY KEY,
	   at     timestamptz NOT NULL,
	   result jsonb       NOT NULL   -- tlsrpt.Result as FileStore writes it
	 );
	 CREATE INDEX tlsrpt_result_at ON tlsrpt_result (at);`,
	// 5: which TLS-RPT days were reported, by any node (ReportDays).
	`CREATE TABLE tlsrpt_day (
	   day     date        PRIMARY KEY,
	   holder  text        NOT NULL,
	   until   timestamptz NOT NULL,   -- another node may take the day after this unless done
	   done    boolean     NOT NULL DEFAULT false,
	   reports int
	 );`,
	// 6: every id ever created, kept after its message is deleted (for
	// Options.IDRetention), so that Create never creates one twice.
	`CREATE TABLE queue_id (
	   id      text        PRIMARY KEY,
	   created timestamptz NOT NULL DEFAULT now()
	 );
	 CREATE INDEX queue_id_created ON queue_id (created);
	 INSERT INTO queue_id (id) SELECT id FROM queue_message;`,
}

// schemaLock is the advisory lock key serializing migrations between
// nodes starting at once.
const schemaLock = 0x6d61696c746c73 // "mailtls"

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(schemaLock)); err != nil {
		return fmt.Errorf("pgstore: locking the schema: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(schemaLock))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS mailtls_schema (version int NOT NULL)`); err != nil {
		return fmt.Errorf("pgstore: creating the version table: %w", err)
	}
	var version int
	err = conn.QueryRow(ctx, `SELECT version FROM mailtls_schema`).Scan(&version)
	if err == pgx.ErrNoRows {
		if _, err := conn.Exec(ctx, `INSERT INTO mailtls_schema VALUES (0)`); err != nil {
			return fmt.Errorf("pgstore: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("pgstore: reading the schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("pgstore: the database has schema version %d, newer than this program's %d", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("pgstore: %w", err)
		}
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			tx.Rollback(ctx)
			return fmt.Errorf("pgstore: migrating to schema version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE mailtls_schema SET version = $1`, v+1); err != nil {
			tx.Rollback(ctx)
			return fmt.Errorf("pgstore: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("pgstore: migrating to schema version %d: %w", v+1, err)
		}
	}
	return nil
}

func defaultNode() string {
	h, _ := os.Hostname()
	return h + "." + strconv.Itoa(os.Getpid())
}
