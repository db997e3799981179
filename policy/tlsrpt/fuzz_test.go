package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func FuzzParseReport(f *testing.F) {
	f.Add([]byte(rfcExample))                                                                                                                                                                                                                                                                                            // the RFC 8460 §4.4 example
	f.Add([]byte(strings.Replace(rfcExample, `"2016-04-01T00:00:00Z"`, `"2016-04-01T00:00:00"`, 1)))                                                                                                                                                                                                                     // zone-less date-time
	f.Add([]byte(`{"organization-name":"o","date-range":{"start-datetime":"2016-04-01T00:00:00Z","end-datetime":"2016-04-01T23:59:59Z"},"report-id":"r","policies":[{"policy":{"policy-type":"no-policy-found","policy-domain":"d"},"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}]}`)) // minimal
	f.Add([]byte(`{"organization-name":"o"}`))                                                                                                                                                                                                                                                                           // required members missing
	f.Add([]byte(`{}{}`))                                                                                                                                                                                                                                                                                                // trailing data
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(rfcExample))
	zw.Close()
	f.Add(gz.Bytes())                                                                                                                                                                                                                                                          // gzip-compressed report
	f.Add(gz.Bytes()[:20])                                                                                                                                                                                                                                                     // truncated gzip
	f.Add([]byte{0x1f, 0x8b})                                                                                                                                                                                                                                                  // gzip magic only
	f.Add([]byte(`{"organization-name":"0","date-range":{"start-datetime":"0000-01-01T0:00:00","end-datetime":"0000-01-01T0:00:00"},"report-id":"0","policies":[{"policy":{"policy-type":"sts","policy-domain":"0","policy-string":[],"mx-host":[]},"failure-details":[]}]}`)) // empty lists: read as absent ones
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReport(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrReportSyntax) {
				t.Fatalf("error %v does not wrap ErrReportSyntax", err)
			}
			return
		}
		if err := r.Validate(false); err != nil {
			t.Fatalf("accepted an invalid report: %v", err)
		}
		// What was accepted survives a round trip (times compared as
		// instants: a zone-less input is re-read as UTC).
		j, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseReport(bytes.NewReader(j))
		if err != nil {
			t.Fatalf("re-parse of %s: %v", j, err)
		}
		if !r2.DateRange.Start.Equal(r.DateRange.Start) || !r2.DateRange.End.Equal(r.DateRange.End) {
			t.Fatalf("date-range changed: %+v vs %+v", r.DateRange, r2.DateRange)
		}
		r.DateRange, r2.DateRange = DateRange{}, DateRange{}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the report:\n%+v\n%+v", r, r2)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:reports@example.com")                         // the RFC's example
	f.Add("v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt")             // https, no space
	f.Add("v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example/ ; ext=1") // list, WSP, extension
	f.Add("v=TLSRPTv1; rua=mailto:a%2Cb@example.com")                           // encoded comma
	f.Add("v=TLSRPTv1; rua=a@example.com")                                      // no scheme
	f.Add("v=TLSRPTv1; ext=1")                                                  // no rua
	f.Add("v=TLSRPTv1")                                                         // version only
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			if !errors.Is(err, ErrRecordSyntax) {
				t.Fatalf("error %v does not wrap ErrRecordSyntax", err)
			}
			return
		}
		if len(r.RUA) == 0 {
			t.Fatal("record without rua accepted")
		}
		r2, err := ParseRecord(r.String())
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip of %q: %+v, %v", r.String(), r2, err)
		}
		r.MailtoAddresses()
		r.HTTPSURLs()
	})
}

func FuzzParseReportMail(f *testing.F) {
	jsonPart := "Content-Type: " + MediaTypeJSON + "\r\n\r\n" + rfcExample
	f.Add([]byte(nestedMail(1, jsonPart, "")))                                         // report in a multipart
	f.Add([]byte(nestedMail(maxMailDepth+1, jsonPart, "")))                            // too deep
	f.Add([]byte(flatMail(3, "Content-Type: text/plain\r\n\r\nx")))                    // no report
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n")) // unterminated
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseReportMail(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrReportSyntax) && !errors.Is(err, ErrNoReportInMail) {
			t.Fatalf("error %v wraps neither ErrReportSyntax nor ErrNoReportInMail", err)
		}
	})
}
