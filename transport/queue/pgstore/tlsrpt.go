package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mailtls/mailtls/policy/tlsrpt"
)

// TLSRPTStore returns a store of TLS-RPT results (RFC 8460 §4) kept in this
// Store's database, so that one daily report per policy domain can cover
// the sessions of every node sharing the queue.
func (s *Store) TLSRPTStore() tlsrpt.Store { return resultStore{s} }

type resultStore struct{ s *Store }

var _ tlsrpt.Store = resultStore{}

// Record stores one result; a zero r.Time is the database's now.
func (rs resultStore) Record(ctx context.Context, r tlsrpt.Result) error {
	if r.PolicyDomain == "" {
		return errors.New("pgstore: TLS-RPT result without policy domain")
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("pgstore: encoding a TLS-RPT result: %w", err)
	}
	if _, err := rs.s.pool.Exec(ctx, `INSERT INTO tlsrpt_result (at, result) VALUES ($1, $2)`, r.Time, b); err != nil {
		return fmt.Errorf("pgstore: recording a TLS-RPT result: %w", err)
	}
	return nil
}

// Results calls fn for each result with start <= Time < end, whichever
// node recorded it.
func (rs resultStore) Results(ctx context.Context, start, end time.Time, fn func(tlsrpt.Result) error) error {
	rows, err := rs.s.pool.Query(ctx, `SELECT result FROM tlsrpt_result WHERE at >= $1 AND at < $2`, start, end)
	if err != nil {
		return fmt.Errorf("pgstore: reading TLS-RPT results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return fmt.Errorf("pgstore: reading TLS-RPT results: %w", err)
		}
		var r tlsrpt.Result
		if err := json.Unmarshal(b, &r); err != nil {
			continue // as FileStore skips a line it cannot read
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Prune deletes the results older than before.
func (rs resultStore) Prune(ctx context.Context, before time.Time) error {
	if _, err := rs.s.pool.Exec(ctx, `DELETE FROM tlsrpt_result WHERE at < $1`, before); err != nil {
		return fmt.Errorf("pgstore: pruning TLS-RPT results: %w", err)
	}
	return nil
}
