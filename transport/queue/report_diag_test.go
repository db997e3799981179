package queue

// Reports distinguish the remote server's reply from failures this MTA
// found itself (RFC 3464 §2.3.6): Diagnostic-Code "smtp; ..." only for
// the former, LocalDiagnosticType for the latter, and the human part says
// "Server reply" only when there was one.

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
)

// dsnField returns the value of the first per-recipient field name in the
// message/delivery-status part of raw (unfolded), "" if absent.
func dsnField(t *testing.T, raw, name string) string {
	t.Helper()
	dec, err := decodeParts(raw)
	if err != nil {
		t.Fatalf("report does not decode: %v", err)
	}
	dec = regexp.MustCompile(`\r?\n[ \t]+`).ReplaceAllString(dec, " ")
	m := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(name) + `:[ \t]*(.*?)\r?$`).FindStringSubmatch(dec)
	if m == nil {
		return ""
	}
	return m[1]
}

// oneReport runs the queue with script for bob@legacy.example, the
// first retries attempts deferred, until one report is out and returns it
// raw and parsed.
func oneReport(t *testing.T, retries int, s script) (string, ndr.Recipient) {
	t.Helper()
	h := newHarness(t, s)
	h.q.DelayWarning = -1
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@legacy.example"))
	for i := 1; i <= retries; i++ {
		h.waitFor("attempt", func() bool { a, _ := h.fake.counts("bob@legacy.example"); return a == i })
		h.settle()
		h.clock.Advance(10 * time.Minute)
	}
	h.waitFor("failed report", func() bool { return len(h.fake.rawReports()) == 1 })
	raw := string(h.fake.rawReports()[0])
	reps := h.fake.parsedReports(t)
	if len(reps) != 1 || len(reps[0].Recipients) != 1 {
		t.Fatalf("reports: %+v", reps)
	}
	return raw, reps[0].Recipients[0]
}

func humanPart(t *testing.T, raw string) string {
	t.Helper()
	dec, err := decodeParts(raw)
	if err != nil {
		t.Fatal(err)
	}
	human, _, _ := strings.Cut(dec, "Reporting-MTA:")
	return human
}

// A STARTTLS-not-offered failure (the Connector's own finding on a
// connection it made) is reported with the X- diagnostic type, the text
// of our finding, Remote-MTA of the host we connected to, and no "Server
// reply" wording.
func TestReportLocalFailureNotServerReply(t *testing.T) {
	raw, rr := oneReport(t, 0, func(string, int) transport.RecipientResult { return tlsFailure(transport.Failed) })
	if rr.DiagnosticType != LocalDiagnosticType || !strings.Contains(rr.DiagnosticCode, "not offered by mx.legacy.example") {
		t.Errorf("parsed Diagnostic-Code = %q; %q, want %s; our finding", rr.DiagnosticType, rr.DiagnosticCode, LocalDiagnosticType)
	}
	if d := dsnField(t, raw, "Diagnostic-Code"); !strings.HasPrefix(d, "X-mailtls; ") || strings.Contains(strings.ToLower(d), "smtp;") ||
		strings.Contains(d, "554") {
		t.Errorf("Diagnostic-Code: %q, want X-mailtls; with our text and no reply code", d)
	}
	if rr.Status != "5.7.4" || rr.Action != ndr.ActionFailed || rr.RemoteMTA != "mx.legacy.example" {
		t.Errorf("recipient group %+v", rr)
	}
	human := humanPart(t, raw)
	if strings.Contains(human, "Server reply") || strings.Contains(human, "server said") {
		t.Errorf("human part presents our finding as the server's reply:\n%s", human)
	}
	if !strings.Contains(human, "Found by this mail system: STARTTLS required by policy") {
		t.Errorf("human part does not give our finding:\n%s", human)
	}
}

// A real 550 from the remote server keeps "smtp; 550 ..." and is called
// the server's reply.
func TestReportRemoteReplyKeepsSMTP(t *testing.T) {
	raw, rr := oneReport(t, 0, func(string, int) transport.RecipientResult {
		r := permFail()
		r.RemoteMTA.IP = net.IPv4(192, 0, 2, 26)
		return r
	})
	if rr.DiagnosticType != "smtp" || rr.DiagnosticCode != "550 5.1.1 no such user" {
		t.Errorf("parsed Diagnostic-Code = %q; %q, want smtp; 550 5.1.1 no such user", rr.DiagnosticType, rr.DiagnosticCode)
	}
	if d := dsnField(t, raw, "Diagnostic-Code"); d != "smtp; 550 5.1.1 no such user" {
		t.Errorf("Diagnostic-Code: %q", d)
	}
	if rr.RemoteMTA != "mx.example.net" || rr.Status != "5.1.1" {
		t.Errorf("recipient group %+v", rr)
	}
	if human := humanPart(t, raw); !strings.Contains(human, "Server reply: 550 5.1.1 no such user") || strings.Contains(human, "Found by this mail system") {
		t.Errorf("human part:\n%s", human)
	}
}

// Failures found before any connection (null MX, REQUIRETLS refused
// before dialling, a failed policy lookup) have no Remote-MTA, even when
// an earlier attempt reached a server; their diagnostic is ours.
func TestReportLocalFailureWithoutConnection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reply    *transport.Error
		status   string
		sentinel error
	}{
		{"null MX", &transport.Error{Code: 556, EnhancedCode: transport.EnhancedCode{5, 1, 10},
			Message: "legacy.example does not accept mail (null MX)", Err: transport.ErrNullMX}, "5.1.10", transport.ErrNullMX},
		{"REQUIRETLS", &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 7, 30},
			Message: "REQUIRETLS support required", Err: fmt.Errorf("%w: MX not authenticated", transport.ErrRequireTLS)}, "5.7.30", transport.ErrRequireTLS},
		{"policy lookup", &transport.Error{Code: 554, EnhancedCode: transport.EnhancedCode{5, 4, 3},
			Message: "TLS policy lookup failed; deferring rather than downgrading",
			Err:     fmt.Errorf("%w: %w", transport.ErrPolicyLookup, &net.DNSError{Err: "server misbehaving", Name: "legacy.example"})},
			"5.4.3", transport.ErrPolicyLookup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.reply.Local = true // as the Connector sets it where it made the error
			raw, rr := oneReport(t, 1, func(_ string, n int) transport.RecipientResult {
				if n == 1 { // a server was reached once, and answered 451
					r := tempFail()
					r.RemoteMTA.IP = net.IPv4(192, 0, 2, 27)
					return r
				}
				return transport.RecipientResult{Status: transport.Failed, Reply: tc.reply,
					Requirement: policy.Requirement{Domain: "legacy.example", Level: policy.Verify, Source: policy.SourceMTASTS}}
			})
			if rr.RemoteMTA != "" || dsnField(t, raw, "Remote-MTA") != "" {
				t.Errorf("Remote-MTA %q for a failure found before connecting", rr.RemoteMTA)
			}
			if rr.DiagnosticType != LocalDiagnosticType || rr.DiagnosticCode != tc.reply.Message || rr.Status != tc.status {
				t.Errorf("recipient group %+v", rr)
			}
			if human := humanPart(t, raw); strings.Contains(human, "Server reply") || strings.Contains(human, "Remote server") {
				t.Errorf("human part:\n%s", human)
			}
		})
	}
}
