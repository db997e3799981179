package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

func TestBuildMailStructure(t *testing.T) {
	rep := buildReports(t)[0]
	date := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	raw, err := BuildMail(rep, MailOptions{
		From:      "noreply-tlsrpt@sender.example",
		To:        []string{"tlsrpt@example.com", "ops@example.com"},
		Submitter: "mail.sender.example",
		Date:      date,
		MessageID: "r1@mail.sender.example",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"\r\nTLS-Report-Domain: example.com\r\n", "\r\nTLS-Report-Submitter: mail.sender.example\r\n", "\r\nTLS-Required: No\r\n"} {
		if !bytes.Contains(raw, []byte(f)) {
			t.Errorf("field %q not written as spelled in the RFC", strings.TrimSpace(f))
		}
	}
	if bytes.Contains(raw, []byte("\n")) && !bytes.Contains(raw, []byte("\r\n")) {
		t.Error("message lines do not end in CRLF")
	}

	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := mr.Header
	mt, params, err := h.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Errorf("Content-Type %q %v %v", mt, params, err)
	}
	subj, _ := h.Subject()
	if want := "Report Domain: example.com Submitter: mail.sender.example Report-ID: <20261127.example@sender.example>"; subj != want {
		t.Errorf("Subject %q, want %q", subj, want)
	}
	for k, want := range map[string]string{
		"TLS-Report-Domain":    "example.com",
		"TLS-Report-Submitter": "mail.sender.example",
		"TLS-Required":         "No",
		"MIME-Version":         "1.0",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	from, _ := h.AddressList("From")
	to, _ := h.AddressList("To")
	if len(from) != 1 || from[0].Address != "noreply-tlsrpt@sender.example" || len(to) != 2 || to[1].Address != "ops@example.com" {
		t.Errorf("From %v To %v", from, to)
	}
	if d, err := h.Date(); err != nil || !d.Equal(date) {
		t.Errorf("Date %v %v", d, err)
	}
	if id, _ := h.MessageID(); id != "r1@mail.sender.example" {
		t.Errorf("Message-ID %q", id)
	}

	// Exactly two parts: the human part, then the gzip report.
	var parts []*mail.Part
	var bodies [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
		bodies = append(bodies, b)
	}
	if len(parts) != 2 {
		t.Fatalf("%d parts, want 2", len(parts))
	}
	if mt, params, _ := parts[0].Header.(*mail.InlineHeader).ContentType(); mt != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("first part %q %v", mt, params)
	}
	if !bytes.Contains(bodies[0], []byte("Report-ID: 20261127.example@sender.example")) || !bytes.Contains(bodies[0], []byte("example.com")) {
		t.Errorf("human part:\n%s", bodies[0])
	}
	ah, ok := parts[1].Header.(*mail.AttachmentHeader)
	if !ok {
		t.Fatalf("second part is not an attachment: %T", parts[1].Header)
	}
	if mt, _, _ := ah.ContentType(); mt != "application/tlsrpt+gzip" {
		t.Errorf("attachment type %q", mt)
	}
	if name, _ := ah.Filename(); name != rep.Filename("mail.sender.example", "") {
		t.Errorf("attachment file name %q", name)
	}
	if cte := ah.Get("Content-Transfer-Encoding"); cte != "base64" {
		t.Errorf("attachment encoding %q", cte)
	}
	zr, err := gzip.NewReader(bytes.NewReader(bodies[1]))
	if err != nil {
		t.Fatalf("attachment is not gzip: %v", err)
	}
	j, _ := io.ReadAll(zr)
	want, _ := rep.JSON()
	if !bytes.Equal(j, want) {
		t.Errorf("attachment JSON differs from the report")
	}

	// And the receiving side reads the report back out of the message.
	got, err := ParseReportMail(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("ParseReportMail:\n got %+v\nwant %+v", got, rep)
	}
}

func TestBuildMailRejects(t *testing.T) {
	rep := buildReports(t)[0]
	ok := MailOptions{From: "a@sender.example", To: []string{"b@example.com"}, Submitter: "sender.example"}
	for name, o := range map[string]MailOptions{
		"no from":      {To: ok.To, Submitter: ok.Submitter},
		"no to":        {From: ok.From, Submitter: ok.Submitter},
		"no submitter": {From: ok.From, To: ok.To},
		"bad to":       {From: ok.From, To: []string{"not an address"}, Submitter: ok.Submitter},
		"header break": {From: ok.From, To: ok.To, Submitter: "x\r\nBcc: victim@example.net"},
	} {
		if _, err := BuildMail(rep, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	invalid := *rep
	invalid.ContactInfo = ""
	if _, err := BuildMail(&invalid, ok); !errors.Is(err, ErrReportSyntax) {
		t.Errorf("report without contact-info: %v", err)
	}
}

func TestParseReportMailVariants(t *testing.T) {
	// A plain JSON part inside a multipart/mixed message is found too.
	var h message.Header
	h.SetContentType("multipart/mixed", nil)
	var b bytes.Buffer
	w, _ := message.CreateWriter(&b, h)
	var ph message.Header
	ph.SetContentType("text/plain", nil)
	pw, _ := w.CreatePart(ph)
	io.WriteString(pw, "hi")
	pw.Close()
	var jh message.Header
	jh.SetContentType(MediaTypeJSON, nil)
	jw, _ := w.CreatePart(jh)
	io.WriteString(jw, rfcExample)
	jw.Close()
	w.Close()
	r, err := ParseReportMail(&b)
	if err != nil || r.OrganizationName != "Company-X" {
		t.Fatalf("JSON part: %+v, %v", r, err)
	}
	// No report at all.
	if _, err := ParseReportMail(strings.NewReader("Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n")); !errors.Is(err, ErrNoReportInMail) {
		t.Errorf("no report: %v", err)
	}
	// A broken report part.
	msg := "Content-Type: application/tlsrpt+json\r\n\r\n{\"organization-name\": 1}\r\n"
	if _, err := ParseReportMail(strings.NewReader(msg)); !errors.Is(err, ErrReportSyntax) {
		t.Errorf("broken report: %v", err)
	}
}

// nestedMail returns a message whose MIME tree is depth levels of
// multipart/mixed (the top-level entity being level 0) with inner, a whole
// entity (header and body), at level depth. If tail is not empty it is the
// body of a text/plain part that follows the nested parts at level 1.
func nestedMail(depth int, inner, tail string) string {
	var b strings.Builder
	b.WriteString("From: a@sender.example\r\nSubject: nested\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString(inner)
	for i := depth - 1; i >= 0; i-- {
		if i == 0 && tail != "" {
			fmt.Fprintf(&b, "\r\n--b0\r\nContent-Type: text/plain\r\n\r\n%s", tail)
		}
		fmt.Fprintf(&b, "\r\n--b%d--\r\n", i)
	}
	return b.String()
}

// flatMail returns a multipart/mixed message with n text/plain parts
// followed by inner, a whole entity.
func flatMail(n int, inner string) string {
	var b strings.Builder
	b.WriteString("From: a@sender.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range n {
		b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	}
	fmt.Fprintf(&b, "--b\r\n%s\r\n--b--\r\n", inner)
	return b.String()
}

// TestParseReportMailLimits pins the MIME limits of ParseReportMail: a
// report within maxMailDepth and maxMailParts is found, one beyond them is
// refused with an error saying which limit was passed.
func TestParseReportMailLimits(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, rfcExample)
	zw.Close()
	gzPart := "Content-Type: " + MediaTypeGzip + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(gz.Bytes())
	jsonPart := "Content-Type: " + MediaTypeJSON + "\r\n\r\n" + rfcExample
	tests := []struct {
		name    string
		msg     string
		wantErr string // "" means the report is found
	}{
		{"gzip report at level 1", nestedMail(1, gzPart, ""), ""},
		{"report at the depth limit", nestedMail(maxMailDepth, jsonPart, ""), ""},
		{"report past the depth limit", nestedMail(maxMailDepth+1, jsonPart, ""), "nested deeper than 8 levels"},
		{"no report, past the depth limit", nestedMail(maxMailDepth+1, "Content-Type: text/plain\r\n\r\nx", ""), "nested deeper than 8 levels"},
		{"report as the last allowed part", flatMail(maxMailParts-2, gzPart), ""},
		{"report past the part limit", flatMail(maxMailParts-1, gzPart), "more than 200 MIME parts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := ParseReportMail(strings.NewReader(tt.msg))
			if tt.wantErr == "" {
				if err != nil || rep.OrganizationName != "Company-X" {
					t.Fatalf("got %+v, %v; want the report", rep, err)
				}
				return
			}
			if !errors.Is(err, ErrReportSyntax) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got report %t, error %v; want an error wrapping ErrReportSyntax with %q", rep != nil, err, tt.wantErr)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestParseReportMailDeepNestingBounded: hostile nesting (every level adds
// a multipart reader that all data below it passes through, so an
// unbounded walk costs depth × size) is refused after reading only a
// prefix of the message, so the work no longer grows with the depth or the
// size. The bound is checked by counting input bytes, not by a clock.
func TestParseReportMailDeepNestingBounded(t *testing.T) {
	tail := strings.Repeat(strings.Repeat("x", 76)+"\r\n", 1<<20/78)
	for _, depth := range []int{100, 4000} {
		msg := nestedMail(depth, "Content-Type: text/plain\r\n\r\nx", tail)
		cr := &countingReader{r: strings.NewReader(msg)}
		start := time.Now()
		_, err := ParseReportMail(cr)
		t.Logf("depth %d, %d bytes: read %d bytes in %v", depth, len(msg), cr.n, time.Since(start))
		if !errors.Is(err, ErrReportSyntax) || !strings.Contains(err.Error(), "nested deeper") {
			t.Fatalf("depth %d: got %v, want the depth limit error", depth, err)
		}
		if cr.n > 64<<10 {
			t.Errorf("depth %d: read %d of %d bytes before refusing; want at most 64 KiB", depth, cr.n, len(msg))
		}
	}
}

func TestNewHTTPRequest(t *testing.T) {
	rep := buildReports(t)[0]
	req, err := NewHTTPRequest(context.Background(), "https://reports.example.com/tlsrpt", rep)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.Header.Get("Content-Type") != "application/tlsrpt+gzip" || req.URL.Host != "reports.example.com" {
		t.Errorf("request %s %s %q", req.Method, req.URL, req.Header.Get("Content-Type"))
	}
	got, err := ParseReport(req.Body)
	if err != nil || !reflect.DeepEqual(got, rep) {
		t.Errorf("body: %+v, %v", got, err)
	}
	for _, u := range []string{"http://reports.example.com/", "mailto:a@example.com", "https:///nohost", "::"} {
		if _, err := NewHTTPRequest(context.Background(), u, rep); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
