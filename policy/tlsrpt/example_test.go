package tlsrpt_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/tlsrpt"
)

func ExampleParseRecord() {
	r, err := tlsrpt.ParseRecord("v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.MailtoAddresses(), r.HTTPSURLs())
	// Output: [tlsrpt@example.com] [https://reports.example.com/v1]
}

// The transport records every delivery attempt; once a day the aggregator
// turns the previous UTC day into one report per policy domain, and
// BuildMail wraps each for the domain's mailto: addresses.
func ExampleAggregator() {
	dir, _ := os.MkdirTemp("", "tlsrpt")
	defer os.RemoveAll(dir)
	store := &tlsrpt.FileStore{Dir: dir}
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()

	store.Record(ctx, tlsrpt.Result{Time: day.Add(time.Hour), PolicyDomain: "example.com",
		PolicyType: tlsrpt.PolicySTS, ResultType: tlsrpt.ResultSuccess})
	store.Record(ctx, tlsrpt.Result{Time: day.Add(2 * time.Hour), PolicyDomain: "example.com",
		PolicyType: tlsrpt.PolicySTS, ResultType: policy.FailureCertificateExpired,
		SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx.example.com", ReceivingIP: "198.51.100.25"})

	agg := &tlsrpt.Aggregator{Store: store, OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example",
		NewReportID: func() string { return "r1@sender.example" }}
	reports, err := agg.Reports(ctx, day)
	if err != nil {
		fmt.Println(err)
		return
	}
	r := reports[0]
	fmt.Println(r.PolicyDomain(), r.Policies[0].Summary.TotalSuccessfulSessionCount, r.Policies[0].Summary.TotalFailureSessionCount)
	fmt.Println(r.Filename("mail.sender.example", ""))

	msg, err := tlsrpt.BuildMail(r, tlsrpt.MailOptions{From: "noreply@sender.example",
		To: []string{"tlsrpt@example.com"}, Submitter: "mail.sender.example"})
	fmt.Println(err, strings.Contains(string(msg), "report-type=tlsrpt"))
	// Output:
	// example.com 1 1
	// mail.sender.example!example.com!1795737600!1795823999.json.gz
	// <nil> true
}

func ExampleParseReport() {
	r, err := tlsrpt.ParseReport(strings.NewReader(`{
	  "organization-name": "Company-X",
	  "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
	  "contact-info": "sts-reporting@company-x.example",
	  "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
	  "policies": [{
	    "policy": {"policy-type": "no-policy-found", "policy-domain": "company-y.example"},
	    "summary": {"total-successful-session-count": 10, "total-failure-session-count": 0}
	  }]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.OrganizationName, r.PolicyDomain(), r.Policies[0].Summary.TotalSuccessfulSessionCount)
	// Output: Company-X company-y.example 10
}

// RFC 8460 §5.3 asks the reporting organization to DKIM-sign report mail:
// set MailOptions.DKIM and BuildMail signs the message, covering
// TLS-Report-Domain and TLS-Report-Submitter. A receiver checks it with
// dkim.Verify against the key published at selector._domainkey.domain.
func ExampleBuildMail_dkim() {
	// In production the key comes from a PEM file; a fixed seed keeps the
	// example reproducible.
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))

	r, err := tlsrpt.ParseReport(strings.NewReader(`{
	  "organization-name": "Sender Org",
	  "date-range": {"start-datetime": "2026-11-27T00:00:00Z", "end-datetime": "2026-11-27T23:59:59Z"},
	  "contact-info": "tlsrpt@sender.example",
	  "report-id": "r1@sender.example",
	  "policies": [{
	    "policy": {"policy-type": "sts", "policy-domain": "example.com"},
	    "summary": {"total-successful-session-count": 3, "total-failure-session-count": 0}
	  }]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := tlsrpt.BuildMail(r, tlsrpt.MailOptions{
		From: "noreply-tlsrpt@sender.example", To: []string{"tlsrpt@example.com"},
		Submitter: "mail.sender.example",
		DKIM:      &dkim.SignOptions{Domain: "sender.example", Selector: "tlsrpt", Signer: priv},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name != "tlsrpt._domainkey.sender.example" {
				return nil, fmt.Errorf("no record at %s", name)
			}
			return []string{record}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	v := verifs[0]
	fmt.Println(v.Domain, v.Err)
	fmt.Println(strings.Join(v.HeaderKeys, ":"))
	// Output:
	// sender.example <nil>
	// From:To:Subject:Date:Message-ID:TLS-Report-Domain:TLS-Report-Submitter:TLS-Required:Auto-Submitted:MIME-Version:Content-Type
}
