package queue

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

func TestReportFromResult(t *testing.T) {
	env := &transport.Envelope{From: "alice@example.org", EnvelopeID: "env-7", Helo: "client.example.org", Return: ndr.ReturnHeaders,
		Recipients: []transport.Recipient{
			rcpt("tls@legacy.example"),
			rcpt("later@example.net"),
			rcpt("relayed@example.net", "SUCCESS", "FAILURE"),
			rcpt("delivered@example.net", "SUCCESS"),
			rcpt("quiet@legacy.example", "NEVER"),
		}}
	results := map[string]transport.RecipientResult{
		"tls@legacy.example": tlsFailure(transport.Failed), "later@example.net": tempFail(),
		"relayed@example.net": relayed(), "delivered@example.net": ok(), "quiet@legacy.example": tlsFailure(transport.Failed),
	}
	res := &transport.Result{}
	for _, r := range env.Recipients {
		rr := results[r.Address]
		rr.Recipient = r
		res.Recipients = append(res.Recipients, rr)
	}
	rep := Report(env, res, nil, "relay.example.org")
	if rep == nil {
		t.Fatal("no report")
	}
	if rep.ReportingMTA != "relay.example.org" || rep.OriginalEnvelopeID != "env-7" || rep.Sender != "alice@example.org" ||
		rep.ReceivedFromMTA != "client.example.org" || rep.Return != ndr.ReturnHeaders {
		t.Errorf("report header %+v", rep)
	}
	var got []string
	for _, r := range rep.Recipients {
		got = append(got, r.FinalRecipient+" "+string(r.Action)+" "+r.Status)
	}
	if want := "tls@legacy.example failed 5.7.4, relayed@example.net relayed 2.0.0"; strings.Join(got, ", ") != want {
		t.Fatalf("groups %q, want %q", strings.Join(got, ", "), want)
	}
	f := rep.Recipients[0]
	if f.DiagnosticType != LocalDiagnosticType || f.Reason == nil || f.Reason.Failure != "starttls-not-supported" || f.RemoteMTA != "" {
		t.Errorf("failed group %+v, reason %+v", f, f.Reason)
	}
	rep.Original = strings.NewReader(testMessage)
	b, err := rep.Build()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ndr.Parse(strings.NewReader(string(b)))
	if err != nil || len(back.Recipients) != 2 {
		t.Fatalf("Parse of the built report: %v, %+v", err, back)
	}

	// Nothing final to report: no report.
	if r := Report(env, nil, errors.New("connection refused"), "relay.example.org"); r != nil {
		t.Errorf("a failed call gave a report: %+v", r.Recipients)
	}
	// The null reverse-path never gets one.
	null := *env
	null.From = ""
	if r := Report(&null, res, nil, "relay.example.org"); r != nil {
		t.Errorf("null sender got a report: %+v", r.Recipients)
	}
}

// A bounce to a sender in a local domain is delivered by Queue.Local, never
// routed through the remote Deliverer (and so never through an MX lookup
// of one's own domain).
func TestBounceToLocalSender(t *testing.T) {
	h, lf := localHarness(t,
		func(string, int) transport.RecipientResult { return ok() },
		func(string, int) transport.RecipientResult { return permFail() })
	h.run()
	h.enqueueFrom("alice@example.org", "alice", testMessage, rcpt("bob@example.net"))
	h.waitFor("the bounce delivered locally", func() bool {
		_, d := lf.counts("alice@example.org")
		return d == 1
	})
	if n, _ := h.fake.counts("alice@example.org"); n != 0 {
		t.Errorf("the remote Deliverer was given the bounce to the local sender %d times", n)
	}
	lf.mu.Lock()
	reports := len(lf.reports)
	lf.mu.Unlock()
	if reports != 1 {
		t.Fatalf("Local received %d reports, want 1", reports)
	}
	reps := lf.parsedReports(t)
	if len(reps) != 1 || len(reps[0].Recipients) != 1 || reps[0].Recipients[0].Action != ndr.ActionFailed ||
		reps[0].Recipients[0].FinalRecipient != "bob@example.net" {
		t.Errorf("report %+v", reps)
	}
}
