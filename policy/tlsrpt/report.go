package tlsrpt

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// ErrReportSyntax: a report is not valid per RFC 8460 §4.4 (bad JSON, a
// required member missing or of the wrong type, too large).
var ErrReportSyntax = errors.New("tlsrpt: invalid report")

// Report is an aggregate report, in the JSON schema of RFC 8460 §4.4. The
// struct tags are the RFC's member names.
type Report struct {
	OrganizationName string    `json:"organization-name"`
	DateRange        DateRange `json:"date-range"`
	// ContactInfo is how to reach the report's sender, usually an email
	// address.
	ContactInfo string `json:"contact-info"`
	// ReportID is unique per report; the mail Subject shows it in angle
	// brackets (§5.3).
	ReportID string         `json:"report-id"`
	Policies []PolicyResult `json:"policies"`
}

// DateRange is the report period (§4.4 "date-range"), RFC 3339 date-times
// in UTC. A report covers one UTC day: Start 00:00:00Z, End 23:59:59Z.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// MarshalJSON writes both times in UTC as RFC 3339 with second precision
// ("2016-04-01T00:00:00Z"), as in RFC 8460 §4.4.
func (d DateRange) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	}{d.Start.UTC().Format(time.RFC3339), d.End.UTC().Format(time.RFC3339)})
}

// UnmarshalJSON reads RFC 3339 date-times. Some senders omit the time zone
// ("2024-01-01T00:00:00"); such times are read as UTC.
func (d *DateRange) UnmarshalJSON(b []byte) error {
	var v struct {
		Start *string `json:"start-datetime"`
		End   *string `json:"end-datetime"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Start == nil || v.End == nil {
		return errors.New("date-range needs start-datetime and end-datetime")
	}
	var err error
	if d.Start, err = parseDateTime(*v.Start); err != nil {
		return err
	}
	d.End, err = parseDateTime(*v.End)
	return err
}

func parseDateTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("date-time %q is not RFC 3339", s)
	}
	return t, nil
}

// PolicyResult is one element of "policies" (§4.4): a policy and the
// sessions that applied it.
type PolicyResult struct {
	Policy         PolicyDetails    `json:"policy"`
	Summary        Summary          `json:"summary"`
	FailureDetails []FailureDetails `json:"failure-details,omitempty"`
}

// PolicyDetails is the "policy" member (§4.3, §4.4). PolicyString and
// MXHost are omitted when empty (for "no-policy-found" they always are).
type PolicyDetails struct {
	Type   PolicyType `json:"policy-type"`
	String []string   `json:"policy-string,omitempty"`
	Domain string     `json:"policy-domain"`
	MXHost MXHosts    `json:"mx-host,omitempty"`
}

// MXHosts is "mx-host": written as a JSON array of patterns (RFC 8460
// erratum 6241); a single string, as in the RFC's original example, is
// accepted when reading.
type MXHosts []string

// UnmarshalJSON accepts an array of strings or one string.
func (m *MXHosts) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*m = MXHosts{one}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("mx-host is neither a string nor an array of strings")
	}
	*m = l
	return nil
}

// Summary is the "summary" member (§4.4).
type Summary struct {
	TotalSuccessfulSessionCount int64 `json:"total-successful-session-count"`
	TotalFailureSessionCount    int64 `json:"total-failure-session-count"`
}

// FailureDetails is one element of "failure-details" (§4.3, §4.4): sessions
// that failed the same way. Members other than result-type and
// failed-session-count are omitted when unknown (a policy fetch failure has
// no receiving MX, say).
type FailureDetails struct {
	ResultType            policy.FailureType `json:"result-type"`
	SendingMTAIP          string             `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname   string             `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo       string             `json:"receiving-mx-helo,omitempty"`
	ReceivingIP           string             `json:"receiving-ip,omitempty"`
	FailedSessionCount    int64              `json:"failed-session-count"`
	AdditionalInformation string             `json:"additional-information,omitempty"`
	FailureReasonCode     string             `json:"failure-reason-code,omitempty"`
}

// Validate checks the members RFC 8460 §4.4 requires: organization-name,
// date-range (start not after end), report-id, at least one policy, each
// with a known policy-type and a policy-domain, non-negative counts, and a
// result-type on every failure detail. contact-info is required too when
// strict is true (reports this package produces); reports read from others
// are accepted without it.
func (r *Report) Validate(strict bool) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrReportSyntax, fmt.Sprintf(format, args...))
	}
	if r.OrganizationName == "" {
		return fail("organization-name missing")
	}
	if r.ReportID == "" {
		return fail("report-id missing")
	}
	if strict && r.ContactInfo == "" {
		return fail("contact-info missing")
	}
	if r.DateRange.Start.IsZero() || r.DateRange.End.IsZero() || r.DateRange.End.Before(r.DateRange.Start) {
		return fail("date-range invalid")
	}
	if len(r.Policies) == 0 {
		return fail("no policies")
	}
	for i, p := range r.Policies {
		if !p.Policy.Type.Valid() {
			return fail("policies[%d]: policy-type %q", i, p.Policy.Type)
		}
		if p.Policy.Domain == "" {
			return fail("policies[%d]: policy-domain missing", i)
		}
		if p.Summary.TotalSuccessfulSessionCount < 0 || p.Summary.TotalFailureSessionCount < 0 {
			return fail("policies[%d]: negative count", i)
		}
		for j, fd := range p.FailureDetails {
			if fd.ResultType == "" || fd.FailedSessionCount < 0 {
				return fail("policies[%d].failure-details[%d]: result-type missing or negative count", i, j)
			}
		}
	}
	return nil
}

// PolicyDomain returns the policy domain of the report's first policy: the
// domain the report is about (one report per policy domain, §4).
func (r *Report) PolicyDomain() string {
	if len(r.Policies) == 0 {
		return ""
	}
	return r.Policies[0].Policy.Domain
}

// JSON returns the report as JSON (§4.4).
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Gzip returns the report as gzip-compressed JSON, the form §5.2 requires
// for mail and HTTPS delivery.
func (r *Report) Gzip() ([]byte, error) {
	j, err := r.JSON()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(j); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Filename returns the §5.1 file name of the compressed report:
// "<submitter>!<policy-domain>!<begin>!<end>[!<uniqueID>].json.gz", begin and
// end in seconds since the epoch. uniqueID must be letters and digits (or
// empty, to leave it out).
func (r *Report) Filename(submitter, uniqueID string) string {
	name := submitter + "!" + r.PolicyDomain() + "!" +
		strconv.FormatInt(r.DateRange.Start.Unix(), 10) + "!" + strconv.FormatInt(r.DateRange.End.Unix(), 10)
	if uniqueID != "" {
		name += "!" + uniqueID
	}
	return name + ".json.gz"
}

// Aggregator builds the daily reports (RFC 8460 §4) from a Store.
type Aggregator struct {
	// Store holds the recorded results. Required.
	Store Store
	// OrganizationName is "organization-name": the reporting organisation.
	// Required.
	OrganizationName string
	// ContactInfo is "contact-info", e.g. "tlsrpt@sender.example". Required.
	ContactInfo string
	// NewReportID returns a unique report-id. Nil means the report's day
	// and 16 random bytes in hex ("2026-11-27.9f86d081884c7d65...").
	NewReportID func() string
	// Logger receives one line per report built. Nil discards.
	Logger *slog.Logger
}

// Reports builds one Report per policy domain from the results recorded in
// the UTC day containing day (00:00:00 to 23:59:59, §4.1), ordered by policy
// domain. Within a report, results are grouped by policy (type, strings and
// mx-host); successes are counted, failures grouped into failure-details by
// every detail member. Policy domains with no results get no report.
func (a *Aggregator) Reports(ctx context.Context, day time.Time) ([]*Report, error) {
	if a.Store == nil || a.OrganizationName == "" || a.ContactInfo == "" {
		return nil, errors.New("tlsrpt: Aggregator needs Store, OrganizationName and ContactInfo")
	}
	start := truncateDay(day)
	end := start.AddDate(0, 0, 1)

	type policyKey struct {
		domain, typ, strs, mx string
	}
	type agg struct {
		pr       PolicyResult
		failures map[FailureDetails]int64 // count zeroed in the key
	}
	byPolicy := map[policyKey]*agg{}
	err := a.Store.Results(ctx, start, end, func(r Result) error {
		k := policyKey{strings.TrimSuffix(strings.ToLower(r.PolicyDomain), "."), string(r.PolicyType), strings.Join(r.PolicyString, "\n"), strings.Join(r.MXHost, "\n")}
		g := byPolicy[k]
		if g == nil {
			g = &agg{
				pr: PolicyResult{Policy: PolicyDetails{
					Type:   r.PolicyType,
					String: append([]string(nil), r.PolicyString...),
					Domain: k.domain,
					MXHost: append(MXHosts(nil), r.MXHost...),
				}},
				failures: map[FailureDetails]int64{},
			}
			byPolicy[k] = g
		}
		if r.Success() {
			g.pr.Summary.TotalSuccessfulSessionCount++
			return nil
		}
		g.pr.Summary.TotalFailureSessionCount++
		g.failures[FailureDetails{
			ResultType:            r.ResultType,
			SendingMTAIP:          r.SendingMTAIP,
			ReceivingMXHostname:   r.ReceivingMXHostname,
			ReceivingMXHelo:       r.ReceivingMXHelo,
			ReceivingIP:           r.ReceivingIP,
			AdditionalInformation: r.AdditionalInformation,
			FailureReasonCode:     r.FailureReasonCode,
		}]++
		return nil
	})
	if err != nil {
		return nil, err
	}

	byDomain := map[string][]*agg{}
	for k, g := range byPolicy {
		byDomain[k.domain] = append(byDomain[k.domain], g)
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	sort.Strings(domains)

	var reports []*Report
	for _, d := range domains {
		gs := byDomain[d]
		sort.Slice(gs, func(i, j int) bool { return policyLess(gs[i].pr.Policy, gs[j].pr.Policy) })
		rep := &Report{
			OrganizationName: a.OrganizationName,
			DateRange:        DateRange{Start: start, End: end.Add(-time.Second)},
			ContactInfo:      a.ContactInfo,
			ReportID:         a.reportID(start),
		}
		for _, g := range gs {
			for fd, n := range g.failures {
				fd.FailedSessionCount = n
				g.pr.FailureDetails = append(g.pr.FailureDetails, fd)
			}
			sort.Slice(g.pr.FailureDetails, func(i, j int) bool {
				return failureLess(g.pr.FailureDetails[i], g.pr.FailureDetails[j])
			})
			rep.Policies = append(rep.Policies, g.pr)
		}
		if err := rep.Validate(true); err != nil {
			return nil, err
		}
		a.logger().Info("tlsrpt report built", "domain", d, "report_id", rep.ReportID,
			"policies", len(rep.Policies), "day", start.Format(dayLayout))
		reports = append(reports, rep)
	}
	return reports, nil
}

func policyLess(a, b PolicyDetails) bool {
	if a.Type != b.Type {
		return a.Type < b.Type
	}
	if sa, sb := strings.Join(a.String, "\n"), strings.Join(b.String, "\n"); sa != sb {
		return sa < sb
	}
	return strings.Join(a.MXHost, "\n") < strings.Join(b.MXHost, "\n")
}

func failureLess(a, b FailureDetails) bool {
	ka := []string{string(a.ResultType), a.ReceivingMXHostname, a.ReceivingIP, a.SendingMTAIP, a.ReceivingMXHelo, a.AdditionalInformation, a.FailureReasonCode}
	kb := []string{string(b.ResultType), b.ReceivingMXHostname, b.ReceivingIP, b.SendingMTAIP, b.ReceivingMXHelo, b.AdditionalInformation, b.FailureReasonCode}
	for i := range ka {
		if ka[i] != kb[i] {
			return ka[i] < kb[i]
		}
	}
	return false
}

func (a *Aggregator) reportID(day time.Time) string {
	if a.NewReportID != nil {
		return a.NewReportID()
	}
	var b [16]byte
	rand.Read(b[:])
	return day.Format(dayLayout) + "." + hex.EncodeToString(b[:])
}

func (a *Aggregator) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// MaxReportSize bounds a report's JSON when reading (after decompression),
// 20 MiB.
const MaxReportSize = 20 << 20

// ParseReport reads a report (RFC 8460 §4.4), plain JSON or gzip-compressed
// JSON (detected by the gzip magic number, §5.2), of at most MaxReportSize
// bytes of JSON, and checks it with Validate(false). Unknown members are
// ignored. Errors wrap ErrReportSyntax.
func ParseReport(r io.Reader) (*Report, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrReportSyntax, err)
		}
		defer zr.Close()
		src = zr
	}
	b, err := io.ReadAll(io.LimitReader(src, MaxReportSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading: %v", ErrReportSyntax, err)
	}
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrReportSyntax, MaxReportSize)
	}
	var rep Report
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReportSyntax, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the report", ErrReportSyntax)
	}
	if err := rep.Validate(false); err != nil {
		return nil, err
	}
	// An empty list says what an absent one does (§4.4): one form for
	// both, so a report reads the same after JSON writes it again.
	for i := range rep.Policies {
		p := &rep.Policies[i]
		if len(p.FailureDetails) == 0 {
			p.FailureDetails = nil
		}
		if len(p.Policy.String) == 0 {
			p.Policy.String = nil
		}
		if len(p.Policy.MXHost) == 0 {
			p.Policy.MXHost = nil
		}
	}
	return &rep, nil
}
