package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/policy/mtasts"
)

// PolicyCache returns an MTA-STS policy cache (RFC 8461 §5.1) kept in
// this Store's database, so that every node sharing the queue also shares
// the policies any of them fetched: a policy fetched once is known to all,
// and a policy a node has cached protects the others against a downgrade
// of the domain's TXT record or HTTPS policy host. Entries are stored as
// mtasts.DirCache writes them (JSON, the policy text re-parsed on Get).
func (s *Store) PolicyCache() mtasts.Cache { return policyCache{s} }

type policyCache struct{ s *Store }

var _ mtasts.Cache = policyCache{}

// Get returns the cached entry for domain; a row that does not decode or
// whose policy text does not parse is ignored, as DirCache ignores a
// corrupt file.
func (c policyCache) Get(ctx context.Context, domain string) (mtasts.Entry, bool, error) {
	var b []byte
	err := c.s.pool.QueryRow(ctx, `SELECT entry FROM mtasts_policy WHERE domain = $1`, domain).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return mtasts.Entry{}, false, nil
	}
	if err != nil {
		return mtasts.Entry{}, false, fmt.Errorf("pgstore: reading the MTA-STS policy of %s: %w", domain, err)
	}
	var e mtasts.Entry
	if err := json.Unmarshal(b, &e); err != nil || e.Domain != domain {
		return mtasts.Entry{}, false, nil
	}
	pol, err := mtasts.ParsePolicy(e.Text)
	if err != nil {
		return mtasts.Entry{}, false, nil
	}
	e.Policy = *pol
	return e, true, nil
}

// Put stores e, replacing the domain's entry.
func (c policyCache) Put(ctx context.Context, e mtasts.Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("pgstore: encoding the MTA-STS policy of %s: %w", e.Domain, err)
	}
	if _, err := c.s.pool.Exec(ctx, `
INSERT INTO mtasts_policy (domain, entry) VALUES ($1, $2)
ON CONFLICT (domain) DO UPDATE SET entry = EXCLUDED.entry`, e.Domain, b); err != nil {
		return fmt.Errorf("pgstore: storing the MTA-STS policy of %s: %w", e.Domain, err)
	}
	return nil
}

// Delete removes the domain's entry, if any.
func (c policyCache) Delete(ctx context.Context, domain string) error {
	if _, err := c.s.pool.Exec(ctx, `DELETE FROM mtasts_policy WHERE domain = $1`, domain); err != nil {
		return fmt.Errorf("pgstore: deleting the MTA-STS policy of %s: %w", domain, err)
	}
	return nil
}

// Domains lists the domains with an entry.
func (c policyCache) Domains(ctx context.Context) ([]string, error) {
	rows, err := c.s.pool.Query(ctx, `SELECT domain FROM mtasts_policy`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing MTA-STS policies: %w", err)
	}
	domains, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing MTA-STS policies: %w", err)
	}
	return domains, nil
}
