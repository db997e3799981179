package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

var day = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

var stsPolicy = []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.mail.example.com", "max_age: 86400"}

// recordFixture records a day of delivery attempts of every kind.
func recordFixture(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	sts := func(h int, rt policy.FailureType, mx, ip string) Result {
		return Result{Time: at(h), PolicyDomain: "example.com", PolicyType: PolicySTS,
			PolicyString: stsPolicy, MXHost: []string{"mx1.example.com", "*.mail.example.com"},
			ResultType: rt, SendingMTAIP: "192.0.2.1", ReceivingMXHostname: mx, ReceivingIP: ip}
	}
	results := []Result{
		sts(1, ResultSuccess, "mx1.example.com", "198.51.100.1"),
		sts(2, ResultSuccess, "mx1.example.com", "198.51.100.1"),
		sts(3, ResultSuccess, "in.mail.example.com", "198.51.100.2"),
		sts(4, policy.FailureCertificateExpired, "mx1.example.com", "198.51.100.1"),
		sts(5, policy.FailureCertificateExpired, "mx1.example.com", "198.51.100.1"),
		sts(6, policy.FailureSTARTTLSNotSupported, "in.mail.example.com", "198.51.100.2"),
		{Time: at(7), PolicyDomain: "example.com", PolicyType: PolicySTS, ResultType: policy.FailureSTSPolicyFetch,
			SendingMTAIP: "192.0.2.1", FailureReasonCode: "HTTP status 500"},
		{Time: at(8), PolicyDomain: "example.com", PolicyType: PolicyTLSA,
			PolicyString: []string{"_25._tcp.mx1.example.com. IN TLSA 3 1 1 abcd"},
			ResultType:   policy.FailureTLSAInvalid, SendingMTAIP: "2001:db8::1", ReceivingMXHostname: "mx1.example.com",
			ReceivingMXHelo: "mx1", ReceivingIP: "2001:db8::25", AdditionalInformation: "https://sender.example/tlsrpt/info",
			FailureReasonCode: "no TLSA record matched"},
		{Time: at(9), PolicyDomain: "example.org", PolicyType: PolicyNoPolicyFound, ResultType: ResultSuccess,
			SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx.example.org", ReceivingIP: "203.0.113.5"},
		// Outside the day: must not be counted.
		{Time: day.Add(-time.Second), PolicyDomain: "example.com", PolicyType: PolicySTS, ResultType: ResultSuccess},
		{Time: day.Add(24 * time.Hour), PolicyDomain: "example.com", PolicyType: PolicySTS, ResultType: ResultSuccess},
	}
	for _, r := range results {
		if err := s.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

func newAggregator(s Store) *Aggregator {
	return &Aggregator{Store: s, OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example",
		NewReportID: func() string { return "20261127.example@sender.example" }}
}

func buildReports(t *testing.T) []*Report {
	t.Helper()
	s := &FileStore{Dir: t.TempDir()}
	recordFixture(t, s)
	reps, err := newAggregator(s).Reports(context.Background(), day.Add(13*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].PolicyDomain() != "example.com" || reps[1].PolicyDomain() != "example.org" {
		t.Fatalf("got %d reports", len(reps))
	}
	return reps
}

// The members RFC 8460 §4.4 defines, per object, and their JSON types.
var (
	topMembers = map[string]string{"organization-name": "string", "date-range": "object",
		"contact-info": "string", "report-id": "string", "policies": "array"}
	dateRangeMembers = map[string]string{"start-datetime": "string", "end-datetime": "string"}
	policiesMembers  = map[string]string{"policy": "object", "summary": "object", "failure-details": "array"}
	policyMembers    = map[string]string{"policy-type": "string", "policy-string": "array",
		"policy-domain": "string", "mx-host": "array"}
	summaryMembers = map[string]string{"total-successful-session-count": "number",
		"total-failure-session-count": "number"}
	failureMembers = map[string]string{"result-type": "string", "sending-mta-ip": "string",
		"receiving-mx-hostname": "string", "receiving-mx-helo": "string", "receiving-ip": "string",
		"failed-session-count": "number", "additional-information": "string", "failure-reason-code": "string"}
	rfcResultTypes = map[string]bool{"starttls-not-supported": true, "certificate-host-mismatch": true,
		"certificate-expired": true, "tlsa-invalid": true, "dnssec-invalid": true, "dane-required": true,
		"certificate-not-trusted": true, "sts-policy-invalid": true, "sts-webpki-invalid": true,
		"validation-failure": true, "sts-policy-fetch-error": true}
	dateTimeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`)
)

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "?"
}

// checkObject checks that obj has every required member, no member outside
// allowed, and each with the allowed JSON type.
func checkObject(t *testing.T, where string, v any, allowed map[string]string, required ...string) map[string]any {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %s, want object", where, jsonType(v))
	}
	for _, k := range required {
		if _, ok := obj[k]; !ok {
			t.Errorf("%s: required member %q missing", where, k)
		}
	}
	for k, val := range obj {
		want, ok := allowed[k]
		if !ok {
			t.Errorf("%s: member %q is not in RFC 8460 §4.4", where, k)
			continue
		}
		if got := jsonType(val); got != want {
			t.Errorf("%s.%s: JSON type %s, want %s", where, k, got, want)
		}
	}
	return obj
}

func count(t *testing.T, where string, v any) int64 {
	t.Helper()
	f, _ := v.(float64)
	if f < 0 || f != math.Trunc(f) {
		t.Errorf("%s = %v, want a non-negative integer", where, v)
	}
	return int64(f)
}

func stringArray(t *testing.T, where string, v any) []string {
	t.Helper()
	var l []string
	for i, e := range v.([]any) {
		s, ok := e.(string)
		if !ok {
			t.Errorf("%s[%d]: %s, want string", where, i, jsonType(e))
		}
		l = append(l, s)
	}
	return l
}

// TestReportSchemaRFC8460 produces a report from recorded results and checks
// it field by field against RFC 8460 §4.4: member names, JSON types,
// required members, date-time format, and the counts.
func TestReportSchemaRFC8460(t *testing.T) {
	reps := buildReports(t)
	gz, err := reps[0].Gzip()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("report is not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}

	top := checkObject(t, "report", doc, topMembers, "organization-name", "date-range", "contact-info", "report-id", "policies")
	if top["organization-name"] != "Sender Org" || top["contact-info"] != "tlsrpt@sender.example" ||
		top["report-id"] != "20261127.example@sender.example" {
		t.Errorf("top-level values: %v", top)
	}
	dr := checkObject(t, "date-range", top["date-range"], dateRangeMembers, "start-datetime", "end-datetime")
	for k, want := range map[string]string{"start-datetime": "2026-11-27T00:00:00Z", "end-datetime": "2026-11-27T23:59:59Z"} {
		s, _ := dr[k].(string)
		if !dateTimeRE.MatchString(s) {
			t.Errorf("%s %q is not an RFC 3339 date-time", k, s)
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil || s != want {
			t.Errorf("%s = %q, want %q (%v)", k, s, want, err)
		}
	}

	type policyTotals struct {
		ok, failed int64
		failures   map[string]int64 // result-type → failed-session-count
		strings    []string
		mx         []string
	}
	got := map[string]*policyTotals{}
	for i, p := range top["policies"].([]any) {
		where := "policies[" + string(rune('0'+i)) + "]"
		po := checkObject(t, where, p, policiesMembers, "policy", "summary")
		pol := checkObject(t, where+".policy", po["policy"], policyMembers, "policy-type", "policy-domain")
		if pol["policy-domain"] != "example.com" {
			t.Errorf("%s: policy-domain %v", where, pol["policy-domain"])
		}
		typ, _ := pol["policy-type"].(string)
		if !PolicyType(typ).Valid() {
			t.Errorf("%s: policy-type %q", where, typ)
		}
		pt := &policyTotals{failures: map[string]int64{}}
		if ps, ok := pol["policy-string"]; ok {
			pt.strings = stringArray(t, where+".policy-string", ps)
		}
		if mx, ok := pol["mx-host"]; ok {
			pt.mx = stringArray(t, where+".mx-host", mx)
		}
		sum := checkObject(t, where+".summary", po["summary"], summaryMembers,
			"total-successful-session-count", "total-failure-session-count")
		pt.ok = count(t, where+".total-successful-session-count", sum["total-successful-session-count"])
		pt.failed = count(t, where+".total-failure-session-count", sum["total-failure-session-count"])
		var detailSum int64
		if fds, ok := po["failure-details"]; ok {
			for j, fd := range fds.([]any) {
				fw := where + ".failure-details[" + string(rune('0'+j)) + "]"
				f := checkObject(t, fw, fd, failureMembers, "result-type", "failed-session-count")
				rt, _ := f["result-type"].(string)
				if !rfcResultTypes[rt] {
					t.Errorf("%s: result-type %q is not an RFC 8460 §4.3 type", fw, rt)
				}
				for _, ipk := range []string{"sending-mta-ip", "receiving-ip"} {
					if s, ok := f[ipk].(string); ok && net.ParseIP(s) == nil {
						t.Errorf("%s.%s %q is not an IP address", fw, ipk, s)
					}
				}
				if s, ok := f["additional-information"].(string); ok {
					if u, err := url.Parse(s); err != nil || u.Scheme == "" {
						t.Errorf("%s.additional-information %q is not a URI", fw, s)
					}
				}
				n := count(t, fw+".failed-session-count", f["failed-session-count"])
				if n < 1 {
					t.Errorf("%s: failed-session-count %d", fw, n)
				}
				pt.failures[rt] += n
				detailSum += n
			}
		}
		if detailSum != pt.failed {
			t.Errorf("%s: failure details add up to %d, summary says %d", where, detailSum, pt.failed)
		}
		key := typ
		if len(pt.strings) == 0 {
			key += "(no policy-string)"
		}
		got[key] = pt
	}

	// The counts match what was recorded for example.com on that day.
	sts := got["sts"]
	if sts == nil || sts.ok != 3 || sts.failed != 3 ||
		!reflect.DeepEqual(sts.failures, map[string]int64{"certificate-expired": 2, "starttls-not-supported": 1}) ||
		!reflect.DeepEqual(sts.strings, stsPolicy) || !reflect.DeepEqual(sts.mx, []string{"mx1.example.com", "*.mail.example.com"}) {
		t.Errorf("sts policy: %+v", sts)
	}
	fetch := got["sts(no policy-string)"]
	if fetch == nil || fetch.ok != 0 || fetch.failed != 1 || fetch.failures["sts-policy-fetch-error"] != 1 {
		t.Errorf("sts fetch failure: %+v", fetch)
	}
	tlsa := got["tlsa"]
	if tlsa == nil || tlsa.ok != 0 || tlsa.failed != 1 || tlsa.failures["tlsa-invalid"] != 1 {
		t.Errorf("tlsa policy: %+v", tlsa)
	}
	if len(got) != 3 {
		t.Errorf("policies: %d, want 3", len(got))
	}

	// The other domain: no-policy-found, one success, no failure-details.
	var org map[string]any
	j, _ := reps[1].JSON()
	if err := json.Unmarshal(j, &org); err != nil {
		t.Fatal(err)
	}
	p0 := org["policies"].([]any)[0].(map[string]any)
	pol := p0["policy"].(map[string]any)
	if pol["policy-type"] != "no-policy-found" || pol["policy-domain"] != "example.org" {
		t.Errorf("example.org policy %v", pol)
	}
	if _, ok := pol["policy-string"]; ok {
		t.Error("no-policy-found carries a policy-string")
	}
	if _, ok := p0["failure-details"]; ok {
		t.Error("failure-details present without failures")
	}
	if s := p0["summary"].(map[string]any); s["total-successful-session-count"] != 1.0 || s["total-failure-session-count"] != 0.0 {
		t.Errorf("example.org summary %v", s)
	}
}

func TestReportFilename(t *testing.T) {
	reps := buildReports(t)
	name := reps[0].Filename("mail.sender.example", "001")
	// RFC 8460 §5.1: sender "!" policy-domain "!" begin "!" end ["!" unique-id] "." extension
	re := regexp.MustCompile(`^([a-z0-9.-]+)!([a-z0-9.-]+)!(\d+)!(\d+)(![A-Za-z0-9]+)?\.json\.gz$`)
	m := re.FindStringSubmatch(name)
	if m == nil {
		t.Fatalf("file name %q does not follow §5.1", name)
	}
	if m[1] != "mail.sender.example" || m[2] != "example.com" || m[3] != "1795737600" || m[4] != "1795823999" {
		t.Errorf("file name parts %q", m[1:])
	}
	if got := reps[0].Filename("mail.sender.example", ""); got != "mail.sender.example!example.com!1795737600!1795823999.json.gz" {
		t.Errorf("without unique id: %q", got)
	}
}

func TestReportRoundTrip(t *testing.T) {
	for _, rep := range buildReports(t) {
		j, err := rep.JSON()
		if err != nil {
			t.Fatal(err)
		}
		gz, err := rep.Gzip()
		if err != nil {
			t.Fatal(err)
		}
		for name, in := range map[string][]byte{"json": j, "gzip": gz} {
			got, err := ParseReport(bytes.NewReader(in))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !reflect.DeepEqual(got, rep) {
				t.Errorf("%s round trip:\n got %+v\nwant %+v", name, got, rep)
			}
		}
	}
}

// rfcExample is the example report of RFC 8460 §4.4 (with "mx-host" as a
// single string, as originally published, to check that form is read).
const rfcExample = `{
  "organization-name": "Company-X",
  "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
  "contact-info": "sts-reporting@company-x.example",
  "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
  "policies": [{
    "policy": {
      "policy-type": "sts",
      "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
      "policy-domain": "company-y.example",
      "mx-host": "*.mail.company-y.example"
    },
    "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
    "failure-details": [{
      "result-type": "certificate-expired",
      "sending-mta-ip": "2001:db8:abcd:0012::1",
      "receiving-mx-hostname": "mx1.mail.company-y.example",
      "failed-session-count": 100
    }, {
      "result-type": "starttls-not-supported",
      "sending-mta-ip": "2001:db8:abcd:0013::1",
      "receiving-mx-hostname": "mx2.mail.company-y.example",
      "receiving-ip": "203.0.113.56",
      "failed-session-count": 200,
      "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"
    }, {
      "result-type": "validation-failure",
      "sending-mta-ip": "198.51.100.62",
      "receiving-ip": "203.0.113.58",
      "receiving-mx-hostname": "mx-backup.mail.company-y.example",
      "failed-session-count": 3,
      "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    }]
  }]
}`

func TestParseReportRFCExample(t *testing.T) {
	r, err := ParseReport(strings.NewReader(rfcExample))
	if err != nil {
		t.Fatal(err)
	}
	p := r.Policies[0]
	if r.OrganizationName != "Company-X" || !r.DateRange.End.Equal(time.Date(2016, 4, 1, 23, 59, 59, 0, time.UTC)) ||
		p.Policy.Domain != "company-y.example" || !reflect.DeepEqual([]string(p.Policy.MXHost), []string{"*.mail.company-y.example"}) ||
		p.Summary.TotalSuccessfulSessionCount != 5326 || len(p.FailureDetails) != 3 ||
		p.FailureDetails[2].FailureReasonCode != "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED" {
		t.Fatalf("parsed %+v", r)
	}
	// A date-time without zone (seen in the wild) is read as UTC.
	r, err = ParseReport(strings.NewReader(strings.Replace(rfcExample, `"2016-04-01T00:00:00Z"`, `"2016-04-01T00:00:00"`, 1)))
	if err != nil || !r.DateRange.Start.Equal(time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("zone-less date-time: %v", err)
	}
}

func TestParseReportRejects(t *testing.T) {
	bad := map[string]string{
		"not JSON":          "hello",
		"no org":            strings.Replace(rfcExample, `"organization-name": "Company-X",`, "", 1),
		"no report-id":      strings.Replace(rfcExample, `"report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",`, "", 1),
		"no date-range":     strings.Replace(rfcExample, `"date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},`, "", 1),
		"bad date":          strings.Replace(rfcExample, `2016-04-01T00:00:00Z`, `April 1st`, 1),
		"reversed range":    strings.Replace(rfcExample, `2016-04-01T00:00:00Z`, `2016-04-02T00:00:00Z`, 1),
		"number as string":  strings.Replace(rfcExample, `5326`, `"5326"`, 1),
		"negative count":    strings.Replace(rfcExample, `5326`, `-1`, 1),
		"unknown type":      strings.Replace(rfcExample, `"policy-type": "sts"`, `"policy-type": "dmarc"`, 1),
		"no policy-domain":  strings.Replace(rfcExample, `"policy-domain": "company-y.example",`, "", 1),
		"no policies":       `{"organization-name":"x","date-range":{"start-datetime":"2016-04-01T00:00:00Z","end-datetime":"2016-04-01T23:59:59Z"},"report-id":"r","policies":[]}`,
		"trailing data":     rfcExample + "{}",
		"mx-host as number": strings.Replace(rfcExample, `"mx-host": "*.mail.company-y.example"`, `"mx-host": 7`, 1),
	}
	for name, in := range bad {
		if _, err := ParseReport(strings.NewReader(in)); !errors.Is(err, ErrReportSyntax) {
			t.Errorf("%s: err = %v, want ErrReportSyntax", name, err)
		}
	}
	// A gzip bomb: small compressed, larger than MaxReportSize expanded.
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(`{"organization-name": "`))
	zw.Write(bytes.Repeat([]byte("a"), MaxReportSize))
	zw.Write([]byte(`"}`))
	zw.Close()
	if b.Len() > MaxReportSize/100 {
		t.Fatalf("bomb is %d bytes compressed", b.Len())
	}
	if _, err := ParseReport(&b); !errors.Is(err, ErrReportSyntax) || !strings.Contains(err.Error(), "larger") {
		t.Errorf("gzip bomb: err = %v", err)
	}
}

func TestAggregatorRequiresFields(t *testing.T) {
	for _, a := range []*Aggregator{
		{Store: &FileStore{Dir: t.TempDir()}, ContactInfo: "c"},
		{Store: &FileStore{Dir: t.TempDir()}, OrganizationName: "o"},
		{OrganizationName: "o", ContactInfo: "c"},
	} {
		if _, err := a.Reports(context.Background(), day); err == nil {
			t.Errorf("%+v: no error", a)
		}
	}
	// An empty day gives no reports, and random report ids differ.
	a := &Aggregator{Store: &FileStore{Dir: t.TempDir()}, OrganizationName: "o", ContactInfo: "c"}
	if reps, err := a.Reports(context.Background(), day); err != nil || len(reps) != 0 {
		t.Errorf("empty day: %d reports, %v", len(reps), err)
	}
	id1, id2 := a.reportID(day), a.reportID(day)
	if id1 == id2 || !strings.HasPrefix(id1, "2026-11-27.") || len(id1) != len("2026-11-27.")+32 {
		t.Errorf("report ids %q %q", id1, id2)
	}
}

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	now := day.Add(30 * time.Hour)
	s := &FileStore{Dir: dir, Now: func() time.Time { return now }}
	ctx := context.Background()
	recordFixture(t, s)
	// Zero Time means Now.
	if err := s.Record(ctx, Result{PolicyDomain: "example.net", PolicyType: PolicyNoPolicyFound, ResultType: ResultSuccess}); err != nil {
		t.Fatal(err)
	}
	// Invalid results are refused.
	for _, r := range []Result{
		{PolicyType: PolicySTS, ResultType: ResultSuccess},
		{PolicyDomain: "x.example", PolicyType: "dmarc", ResultType: ResultSuccess},
		{PolicyDomain: "x.example", PolicyType: PolicySTS},
	} {
		if err := s.Record(ctx, r); err == nil {
			t.Errorf("Record(%+v) accepted", r)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "results-*.jsonl"))
	sort.Strings(files)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"results-2026-11-26.jsonl", "results-2026-11-27.jsonl", "results-2026-11-28.jsonl"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("files %q, want %q", names, want)
	}
	countIn := func(start, end time.Time) int {
		n := 0
		if err := s.Results(ctx, start, end, func(Result) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := countIn(day, day.Add(24*time.Hour)); n != 9 {
		t.Errorf("results in the day: %d, want 9", n)
	}
	if n := countIn(day.Add(-time.Hour), day.Add(48*time.Hour)); n != 12 {
		t.Errorf("results over three days: %d, want 12", n)
	}
	// A line cut short by a crash is skipped; the rest still reads.
	f, _ := os.OpenFile(filepath.Join(dir, "results-2026-11-27.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-27T10:00:00Z","policy_domain":"exa`)
	f.Close()
	if n := countIn(day, day.Add(24*time.Hour)); n != 9 {
		t.Errorf("after a torn line: %d, want 9", n)
	}
	// fn's error stops the walk.
	stop := errors.New("stop")
	if err := s.Results(ctx, day, day.Add(24*time.Hour), func(Result) error { return stop }); err != stop {
		t.Errorf("Results returned %v", err)
	}
	// Prune drops whole days that ended.
	if err := s.Prune(ctx, day.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "results-*.jsonl"))
	if len(files) != 1 || filepath.Base(files[0]) != "results-2026-11-28.jsonl" {
		t.Errorf("after prune: %q", files)
	}
}

func TestFileStoreConcurrent(t *testing.T) {
	s := &FileStore{Dir: t.TempDir()}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				s.Record(context.Background(), Result{Time: day.Add(time.Hour), PolicyDomain: "example.com",
					PolicyType: PolicySTS, ResultType: ResultSuccess, ReceivingMXHostname: strings.Repeat("m", 500)})
			}
		}()
	}
	wg.Wait()
	reps, err := newAggregator(s).Reports(context.Background(), day)
	if err != nil {
		t.Fatal(err)
	}
	if n := reps[0].Policies[0].Summary.TotalSuccessfulSessionCount; n != 200 {
		t.Errorf("counted %d of 200 concurrent results", n)
	}
}
