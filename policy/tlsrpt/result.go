package tlsrpt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// PolicyType is the "policy-type" of a report (RFC 8460 §4.3).
type PolicyType string

// Policy types (RFC 8460 §4.3).
const (
	PolicySTS           PolicyType = "sts"             // MTA-STS, RFC 8461
	PolicyTLSA          PolicyType = "tlsa"            // DANE, RFC 7672
	PolicyNoPolicyFound PolicyType = "no-policy-found" // neither published
)

// Valid reports whether t is one of the three policy types.
func (t PolicyType) Valid() bool {
	return t == PolicySTS || t == PolicyTLSA || t == PolicyNoPolicyFound
}

// ResultSuccess marks a successful session in a Result's ResultType: it is
// not an RFC 8460 result type, and is counted in
// "total-successful-session-count" (RFC 8460 §4.4).
const ResultSuccess policy.FailureType = "success"

// Result is the outcome of one delivery attempt (one SMTP session) towards a
// policy domain, as the transport records it (RFC 8460 §4.3). It is plain
// data; Store persists it as JSON.
type Result struct {
	// Time is when the session happened. Zero means "now" to FileStore.
	Time time.Time `json:"time"`
	// PolicyDomain is the domain the policy was looked up for.
	PolicyDomain string `json:"policy_domain"`
	// PolicyType is sts, tlsa or no-policy-found.
	PolicyType PolicyType `json:"policy_type"`
	// PolicyString is the applied policy: the MTA-STS policy text one line
	// per element, or the TLSA records in presentation form (§4.3).
	PolicyString []string `json:"policy_string,omitempty"`
	// MXHost lists the MX patterns of an MTA-STS policy (§4.3 "mx-host").
	MXHost []string `json:"mx_host,omitempty"`
	// ResultType is ResultSuccess or a failure type.
	ResultType policy.FailureType `json:"result_type"`
	// The failure details of §4.3 (ignored for successes).
	SendingMTAIP          string `json:"sending_mta_ip,omitempty"`
	ReceivingMXHostname   string `json:"receiving_mx_hostname,omitempty"`
	ReceivingMXHelo       string `json:"receiving_mx_helo,omitempty"`
	ReceivingIP           string `json:"receiving_ip,omitempty"`
	AdditionalInformation string `json:"additional_information,omitempty"`
	FailureReasonCode     string `json:"failure_reason_code,omitempty"`
}

// Success reports whether r records a successful session.
func (r Result) Success() bool { return r.ResultType == ResultSuccess }

// validate checks what the aggregator relies on.
func (r Result) validate() error {
	if r.PolicyDomain == "" {
		return errors.New("tlsrpt: result without policy domain")
	}
	if !r.PolicyType.Valid() {
		return fmt.Errorf("tlsrpt: result with policy type %q", r.PolicyType)
	}
	if r.ResultType == "" {
		return errors.New("tlsrpt: result without result type")
	}
	return nil
}

// Store records results and gives them back for aggregation (RFC 8460 §4).
//
// Implementations MUST be safe for concurrent use and should honour ctx.
type Store interface {
	// Record stores one result. r.Time zero means now.
	Record(ctx context.Context, r Result) error
	// Results calls fn for each result with start <= Time < end, in no
	// particular order, stopping at fn's first error, which it returns.
	Results(ctx context.Context, start, end time.Time, fn func(Result) error) error
	// Prune deletes results older than before (at day granularity for
	// FileStore: whole UTC days ending on or before before).
	Prune(ctx context.Context, before time.Time) error
}

// FileStore is the default Store: append-only files, one per UTC day,
// "results-YYYY-MM-DD.jsonl" in Dir, one JSON object per line. A line cut
// short by a crash is skipped (and logged) when reading. Dir is created with
// mode 0700 on the first Record; Dir must be set.
type FileStore struct {
	Dir string
	// Now returns the current time, for results with a zero Time. Nil
	// means time.Now.
	Now func() time.Time
	// Logger receives a warning for every unreadable line. Nil discards.
	Logger *slog.Logger

	mu sync.Mutex // serialises appends within this process
}

var _ Store = (*FileStore)(nil)

const filePrefix, fileSuffix, dayLayout = "results-", ".jsonl", "2006-01-02"

func (s *FileStore) file(day time.Time) string {
	return filepath.Join(s.Dir, filePrefix+day.UTC().Format(dayLayout)+fileSuffix)
}

// Record appends r to the file of its UTC day.
func (s *FileStore) Record(_ context.Context, r Result) error {
	if s.Dir == "" {
		return errors.New("tlsrpt: FileStore.Dir is empty")
	}
	if r.Time.IsZero() {
		if s.Now != nil {
			r.Time = s.Now()
		} else {
			r.Time = time.Now()
		}
	}
	r.Time = r.Time.UTC()
	if err := r.validate(); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("tlsrpt: store directory: %w", err)
	}
	f, err := os.OpenFile(s.file(r.Time), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("tlsrpt: recording result: %w", err)
	}
	// One write per line: with O_APPEND, lines from concurrent processes do
	// not interleave on local file systems.
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("tlsrpt: recording result: %w", werr)
	}
	return nil
}

// maxLine bounds one stored line.
const maxLine = 1 << 20

// Results reads the day files overlapping [start, end).
func (s *FileStore) Results(ctx context.Context, start, end time.Time, fn func(Result) error) error {
	if s.Dir == "" {
		return errors.New("tlsrpt: FileStore.Dir is empty")
	}
	start, end = start.UTC(), end.UTC()
	for day := truncateDay(start); day.Before(end); day = day.AddDate(0, 0, 1) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.readDay(day, start, end, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *FileStore) readDay(day, start, end time.Time, fn func(Result) error) error {
	name := s.file(day)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tlsrpt: reading results: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil || r.validate() != nil {
			s.logger().Warn("tlsrpt: skipping unreadable result", "file", name, "line", line)
			continue
		}
		if r.Time.Before(start) || !r.Time.Before(end) {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("tlsrpt: reading %s: %w", name, err)
	}
	return nil
}

// Prune deletes the day files of UTC days that end on or before before.
func (s *FileStore) Prune(_ context.Context, before time.Time) error {
	if s.Dir == "" {
		return errors.New("tlsrpt: FileStore.Dir is empty")
	}
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tlsrpt: pruning: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, de := range ents {
		name := de.Name()
		d, ok := strings.CutPrefix(name, filePrefix)
		if !ok {
			continue
		}
		d, ok = strings.CutSuffix(d, fileSuffix)
		if !ok {
			continue
		}
		day, err := time.Parse(dayLayout, d)
		if err != nil {
			continue
		}
		if !day.AddDate(0, 0, 1).After(before) {
			if err := os.Remove(filepath.Join(s.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("tlsrpt: pruning: %w", err)
			}
		}
	}
	return nil
}

func (s *FileStore) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func truncateDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
