package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Entry is a cached policy (RFC 8461 §5.1): the policy, the TXT record id it
// was fetched under, and its lifetime.
type Entry struct {
	// Domain is the policy domain, lower-case ASCII without a trailing dot.
	Domain string `json:"domain"`
	// RecordID is the "id" of the TXT record seen when the policy was fetched.
	RecordID string `json:"record_id"`
	// Text is the policy body exactly as served; TLS-RPT reports it as
	// "policy-string" (RFC 8460 §4.3), one element per line.
	Text string `json:"policy_text"`
	// Policy is Text parsed. A Cache need not persist it: DirCache re-parses
	// Text when loading.
	Policy Policy `json:"-"`
	// Fetched is when the policy was last fetched successfully.
	Fetched time.Time `json:"fetched"`
	// Expires is Fetched plus max_age: after it the entry must not be used.
	Expires time.Time `json:"expires"`
	// DiscoveryErr is set by Client.Get when it returns this cached entry
	// because discovery of a newer policy failed (TXT lookup or HTTPS
	// fetch). RFC 8461 §6 counts such failures as reportable: pass it to
	// TLSRPTResultType. It is not stored.
	DiscoveryErr error `json:"-"`
}

// Valid reports whether e may still be used at now (RFC 8461 §5.1: a cached
// policy applies until max_age has passed).
func (e *Entry) Valid(now time.Time) bool { return now.Before(e.Expires) }

// Lines returns the policy text split into lines without terminators, the
// form RFC 8460 §4.3 uses for "policy-string".
func (e *Entry) Lines() []string {
	t := strings.TrimRight(e.Text, "\r\n")
	if t == "" {
		return nil
	}
	lines := strings.Split(t, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// Cache stores policies between lookups and across restarts (RFC 8461 §5.1).
//
// Implementations MUST be safe for concurrent use and should honour ctx. Get
// returns ok == false, not an error, for a domain it has no entry for. Get
// must return entries whose Policy field is populated.
type Cache interface {
	Get(ctx context.Context, domain string) (e Entry, ok bool, err error)
	Put(ctx context.Context, e Entry) error
	Delete(ctx context.Context, domain string) error
	// Domains lists the domains that have an entry, in any order.
	Domains(ctx context.Context) ([]string, error)
}

// MemoryCache is a Cache in memory, lost on restart. The zero value is ready
// to use.
type MemoryCache struct {
	mu sync.Mutex
	m  map[string]Entry
}

var _ Cache = (*MemoryCache)(nil)

// Get returns the entry for domain.
func (c *MemoryCache) Get(_ context.Context, domain string) (Entry, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[domain]
	if ok {
		e.Policy = clonePolicy(e.Policy)
	}
	return e, ok, nil
}

// Put stores e, replacing any entry for e.Domain.
func (c *MemoryCache) Put(_ context.Context, e Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]Entry{}
	}
	e.Policy = clonePolicy(e.Policy)
	c.m[e.Domain] = e
	return nil
}

// Delete removes the entry for domain, if any.
func (c *MemoryCache) Delete(_ context.Context, domain string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, domain)
	return nil
}

// Domains lists the cached domains, sorted.
func (c *MemoryCache) Domains(_ context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l []string
	for d := range c.m {
		l = append(l, d)
	}
	sort.Strings(l)
	return l, nil
}

func clonePolicy(p Policy) Policy {
	p.MX = append([]string(nil), p.MX...)
	p.Extensions = append([]Extension(nil), p.Extensions...)
	return p
}

// DirCache is the default persistent Cache: one JSON file per domain,
// "<domain>.json", in directory Dir, written atomically (temporary file,
// fsync, rename) so that a crash leaves either the old or the new entry.
// Files that cannot be read or whose policy no longer parses are ignored
// (treated as absent) rather than failing lookups.
//
// Dir is created with mode 0700 on the first Put. Dir must be set; an empty
// Dir is an error, not the current directory.
type DirCache struct {
	Dir string

	mu sync.Mutex // serialises writers within this process
}

var _ Cache = (*DirCache)(nil)

const cacheSuffix = ".json"

func (c *DirCache) path(domain string) (string, error) {
	if c.Dir == "" {
		return "", errors.New("mtasts: DirCache.Dir is empty")
	}
	// Domains reach here validated by the Client, but a Cache is public:
	// check again so no name can escape Dir.
	if !isDomain(domain) || strings.ToLower(domain) != domain {
		return "", fmt.Errorf("mtasts: invalid cache domain %q", domain)
	}
	return filepath.Join(c.Dir, domain+cacheSuffix), nil
}

// Get loads the entry for domain.
func (c *DirCache) Get(_ context.Context, domain string) (Entry, bool, error) {
	p, err := c.path(domain)
	if err != nil {
		return Entry{}, false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("mtasts: reading cache: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil || e.Domain != domain {
		return Entry{}, false, nil // corrupt or foreign file: ignore
	}
	pol, err := ParsePolicy(e.Text)
	if err != nil {
		return Entry{}, false, nil
	}
	e.Policy = *pol
	return e, true, nil
}

// Put writes e atomically.
func (c *DirCache) Put(_ context.Context, e Entry) error {
	p, err := c.path(e.Domain)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("mtasts: cache directory: %w", err)
	}
	f, err := os.CreateTemp(c.Dir, ".tmp-"+e.Domain+"-*")
	if err != nil {
		return fmt.Errorf("mtasts: writing cache: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("mtasts: writing cache: %w", werr)
	}
	return nil
}

// Delete removes the entry for domain, if any.
func (c *DirCache) Delete(_ context.Context, domain string) error {
	p, err := c.path(domain)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mtasts: deleting cache entry: %w", err)
	}
	return nil
}

// Domains lists the domains with a cache file, sorted. A missing Dir is an
// empty cache.
func (c *DirCache) Domains(_ context.Context) ([]string, error) {
	if c.Dir == "" {
		return nil, errors.New("mtasts: DirCache.Dir is empty")
	}
	ents, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mtasts: listing cache: %w", err)
	}
	var l []string
	for _, de := range ents {
		name, ok := strings.CutSuffix(de.Name(), cacheSuffix)
		if !ok || !de.Type().IsRegular() || !isDomain(name) {
			continue
		}
		l = append(l, name)
	}
	return l, nil
}
