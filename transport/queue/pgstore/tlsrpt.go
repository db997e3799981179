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

// ReportDays returns the marker of reported days (tlsrpt.DayMarker) kept in
// this Store's database: set it as tlsrpt.Reporter.Days on every node, and
// the nodes send one report per policy domain per day between them. A
// node takes a day with a conditional INSERT ... ON CONFLICT; if it dies
// while reporting, another node may take the day an hour later.
func (s *Store) ReportDays() tlsrpt.DayMarker { return dayMarker{s} }

type dayMarker struct{ s *Store }

var _ tlsrpt.DayMarker = dayMarker{}

// reportingTime is how long a node has a day to itself.
const reportingTime = time.Hour

// Begin takes day for this node unless it is done or another node has it.
func (d dayMarker) Begin(ctx context.Context, day time.Time) (bool, error) {
	tag, err := d.s.pool.Exec(ctx, `
INSERT INTO tlsrpt_day (day, holder, until) VALUES ($1::date, $2, now() + make_interval(secs => $3))
ON CONFLICT (day) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
 WHERE NOT tlsrpt_day.done AND tlsrpt_day.until < now()`, day.UTC().Format("2006-01-02"), d.s.node, reportingTime.Seconds())
	if err != nil {
		return false, fmt.Errorf("pgstore: taking TLS-RPT day %s: %w", day.UTC().Format("2006-01-02"), err)
	}
	return tag.RowsAffected() == 1, nil
}

// Done marks day reported.
func (d dayMarker) Done(ctx context.Context, day time.Time, reports int) error {
	if _, err := d.s.pool.Exec(ctx, `UPDATE tlsrpt_day SET done = true, reports = $3 WHERE day = $1::date AND holder = $2`,
		day.UTC().Format("2006-01-02"), d.s.node, reports); err != nil {
		return fmt.Errorf("pgstore: marking TLS-RPT day %s reported: %w", day.UTC().Format("2006-01-02"), err)
	}
	return nil
}

// Abort gives day back, to be tried again by any node.
func (d dayMarker) Abort(ctx context.Context, day time.Time) error {
	if _, err := d.s.pool.Exec(ctx, `DELETE FROM tlsrpt_day WHERE day = $1::date AND holder = $2 AND NOT done`,
		day.UTC().Format("2006-01-02"), d.s.node); err != nil {
		return fmt.Errorf("pgstore: giving TLS-RPT day %s back: %w", day.UTC().Format("2006-01-02"), err)
	}
	return nil
}
