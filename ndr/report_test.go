package ndr

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/mailtls/mailtls/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	arrival = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	attempt = time.Date(2026, 11, 27, 9, 5, 0, 0, time.UTC)
	retry   = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	buildAt = time.Date(2026, 11, 27, 9, 6, 0, 0, time.UTC)
)

const originalMessage = "From: Alice <alice@example.com>\r\n" +
	"To: bob@legacy.example, carol@partner.example\r\n" +
	"Subject: Quarterly figures\r\n" +
	"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <orig-1@example.com>\r\n" +
	"\r\n" +
	"The figures are attached.\r\n"

// fullReport has every field set: a TLS failure, a delayed recipient with
// a certificate problem, and a delivered one.
func fullReport(lang string) *Report {
	return &Report{
		ReportingMTA:       "mta.example.com",
		OriginalEnvelopeID: "QQ314159",
		ReceivedFromMTA:    "client.example.com",
		ArrivalDate:        arrival,
		Sender:             "alice@example.com",
		Recipients: []Recipient{{
			OriginalRecipient: "rfc822;bob@legacy.example",
			FinalRecipient:    "bob@legacy.example",
			Action:            ActionFailed,
			Status:            StatusSTARTTLSRequired,
			RemoteMTA:         "mx.legacy.example",
			DiagnosticCode:    "530 5.7.0 Must issue a STARTTLS command first",
			LastAttemptDate:   attempt,
			FinalLogID:        "4F2A1B",
			Reason: &Reason{
				Domain:  "legacy.example",
				MX:      "mx.legacy.example",
				Failure: policy.FailureSTARTTLSNotSupported,
				Source:  policy.SourceStatic,
			},
		}, {
			OriginalRecipient: "rfc822;carol@partner.example",
			FinalRecipient:    "carol@partner.example",
			Action:            ActionDelayed,
			Status:            Transient(StatusCryptoFailure),
			RemoteMTA:         "mx1.partner.example",
			DiagnosticCode:    "TLS handshake: x509: certificate is valid for mail.hosting.example, not mx1.partner.example",
			DiagnosticType:    "x-tls",
			LastAttemptDate:   attempt,
			WillRetryUntil:    retry,
			Reason: &Reason{
				Domain:           "partner.example",
				MX:               "mx1.partner.example",
				Failure:          policy.FailureCertificateHostMismatch,
				Source:           policy.SourceMTASTS,
				CertificateNames: []string{"mail.hosting.example"},
			},
		}, {
			FinalRecipient:  "dave@secure.example",
			Action:          ActionDelivered,
			Status:          "2.0.0",
			RemoteMTA:       "mx.secure.example",
			DiagnosticCode:  "250 2.0.0 OK queued as 7788",
			LastAttemptDate: attempt,
		}},
		Original:  strings.NewReader(originalMessage),
		Return:    ReturnFull,
		Language:  lang,
		MessageID: "<ndr-1@mta.example.com>",
		Now:       func() time.Time { return buildAt },
		Boundary:  "=_ndr_boundary_0001",
	}
}

func buildOrFatal(t *testing.T, r *Report) []byte {
	t.Helper()
	b, err := r.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return b
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

// TestGolden compares complete reports in English and Japanese, and their
// decoded human-readable parts, with the files in testdata/.
func TestGolden(t *testing.T) {
	for _, lang := range []string{"en", "ja"} {
		t.Run(lang, func(t *testing.T) {
			msg := buildOrFatal(t, fullReport(lang))
			golden(t, "report_"+lang+".eml", msg)
			parts := mimeParts(t, msg)
			golden(t, "human_"+lang+".txt", parts[0].body)
		})
	}
}

type part struct {
	mediaType string
	params    map[string]string
	header    message.Header
	body      []byte
}

// mimeParts reads a built report with go-message, an independent MIME
// parser, checks the top-level structure and returns the parts.
func mimeParts(t *testing.T, msg []byte) []part {
	t.Helper()
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("go-message cannot read the report: %v", err)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %q %v %v, want multipart/report; report-type=delivery-status", mt, params, err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("no multipart reader")
	}
	var parts []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", len(parts), err)
		}
		pmt, pparams, _ := p.Header.ContentType()
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("part %d body: %v", len(parts), err)
		}
		parts = append(parts, part{pmt, pparams, p.Header, body})
	}
	if len(parts) < 2 {
		t.Fatalf("%d parts, want at least 2", len(parts))
	}
	if parts[0].mediaType != "text/plain" {
		t.Errorf("part 1 is %s, want text/plain (RFC 6522 §3)", parts[0].mediaType)
	}
	if m := parts[1].mediaType; m != "message/delivery-status" && m != "message/global-delivery-status" {
		t.Errorf("part 2 is %s, want message/delivery-status", m)
	}
	return parts
}

var (
	perMessageFields = map[string]bool{
		"original-envelope-id": true, "reporting-mta": true, "dsn-gateway": true,
		"received-from-mta": true, "arrival-date": true,
	}
	perRecipientFields = map[string]bool{
		"original-recipient": true, "final-recipient": true, "action": true,
		"status": true, "remote-mta": true, "diagnostic-code": true,
		"last-attempt-date": true, "final-log-id": true, "will-retry-until": true,
	}
	typedFields = map[string]bool{
		"reporting-mta": true, "received-from-mta": true, "dsn-gateway": true,
		"original-recipient": true, "final-recipient": true, "remote-mta": true,
		"diagnostic-code": true,
	}
)

// checkDeliveryStatusGrammar checks a message/delivery-status body against
// RFC 3464 §2.1 strictly: CRLF lines; per-message fields, then one
// per-recipient group after each single empty line; only known fields;
// "type; value" where the grammar has a type; required fields present.
// It returns the number of recipient groups.
func checkDeliveryStatusGrammar(t *testing.T, body []byte) int {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Errorf("delivery-status does not end in CRLF")
	}
	if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("delivery-status has a bare LF")
	}
	text := strings.TrimSuffix(string(body), "\r\n")
	// The body may end with one empty line before the boundary's CRLF.
	text = strings.TrimSuffix(text, "\r\n")
	groups := strings.Split(text, "\r\n\r\n")
	if len(groups) < 2 {
		t.Fatalf("%d groups, want per-message + per-recipient", len(groups))
	}
	for gi, g := range groups {
		names := map[string]bool{}
		var cur string
		for _, line := range strings.Split(g, "\r\n") {
			if line == "" {
				t.Errorf("group %d: more than one empty line between groups", gi)
				continue
			}
			if line[0] == ' ' || line[0] == '\t' {
				if cur == "" {
					t.Errorf("group %d: continuation line with no field", gi)
				}
				continue
			}
			if len(line) > 998 {
				t.Errorf("line longer than 998 octets")
			}
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				t.Errorf("group %d: line %q is not a field", gi, line)
				continue
			}
			cur = strings.ToLower(name)
			if names[cur] {
				t.Errorf("group %d: %s repeated", gi, name)
			}
			names[cur] = true
			if gi == 0 && !perMessageFields[cur] {
				t.Errorf("per-message group has %s", name)
			}
			if gi > 0 && !perRecipientFields[cur] {
				t.Errorf("per-recipient group %d has %s", gi, name)
			}
			if typedFields[cur] {
				typ, v, ok := strings.Cut(value, ";")
				if !ok || strings.TrimSpace(typ) == "" || strings.ContainsAny(strings.TrimSpace(typ), " <>@") || strings.TrimSpace(v) == "" {
					t.Errorf("%s: %q is not \"type; value\"", name, value)
				}
			}
			if cur == "status" {
				if _, _, _, ok := ParseStatus(value); !ok {
					t.Errorf("Status %q is not an enhanced status code", value)
				}
			}
			if cur == "action" && !Action(strings.TrimSpace(value)).Valid() {
				t.Errorf("Action %q", value)
			}
			if strings.HasSuffix(cur, "-date") || cur == "will-retry-until" {
				if _, err := time.Parse(dateLayout, strings.TrimSpace(value)); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
		if gi == 0 && !names["reporting-mta"] {
			t.Errorf("per-message group lacks Reporting-MTA")
		}
		if gi > 0 {
			for _, req := range []string{"final-recipient", "action", "status"} {
				if !names[req] {
					t.Errorf("recipient group %d lacks %s", gi, req)
				}
			}
		}
	}
	return len(groups) - 1
}

// TestBuildStructure reads the built report back with go-message part by
// part and checks the header, each part's type and content, and the
// delivery-status grammar.
func TestBuildStructure(t *testing.T) {
	for _, lang := range []string{"en", "ja"} {
		t.Run(lang, func(t *testing.T) {
			msg := buildOrFatal(t, fullReport(lang))
			e, err := message.Read(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			h := e.Header
			for k, want := range map[string]string{
				"From":           "Mail Delivery System <MAILER-DAEMON@mta.example.com>",
				"To":             "<alice@example.com>",
				"Date":           "Fri, 27 Nov 2026 09:06:00 +0000",
				"Message-Id":     "<ndr-1@mta.example.com>",
				"In-Reply-To":    "<orig-1@example.com>",
				"References":     "<orig-1@example.com>",
				"Auto-Submitted": "auto-replied",
				"Mime-Version":   "1.0",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			subj, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if err != nil || subj == "" {
				t.Errorf("Subject %q: %v", h.Get("Subject"), err)
			}
			if lang == "ja" && !strings.Contains(subj, "配送できませんでした") {
				t.Errorf("Japanese subject %q", subj)
			}

			parts := mimeParts(t, msg)
			if len(parts) != 3 {
				t.Fatalf("%d parts, want 3", len(parts))
			}
			human := string(parts[0].body)
			if parts[0].header.Get("Content-Language") != lang {
				t.Errorf("Content-Language = %q", parts[0].header.Get("Content-Language"))
			}
			wants := map[string][]string{
				"en": {"bob@legacy.example", "did not offer STARTTLS", "from the static table",
					"Nothing was sent in plaintext", "carol@partner.example",
					"mail.hosting.example", "published with MTA-STS", "dave@secure.example",
					"530 5.7.0 Must issue a STARTTLS command first", "Will retry until"},
				"ja": {"bob@legacy.example", "STARTTLS を提供しませんでした", "静的テーブル",
					"平文では一切送信されていません", "carol@partner.example",
					"mail.hosting.example", "MTA-STS", "dave@secure.example",
					"530 5.7.0 Must issue a STARTTLS command first", "再試行の期限"},
			}[lang]
			for _, w := range wants {
				if !strings.Contains(unwrap(human), w) {
					t.Errorf("human part lacks %q:\n%s", w, human)
				}
			}
			if n := checkDeliveryStatusGrammar(t, parts[1].body); n != 3 {
				t.Errorf("%d recipient groups, want 3", n)
			}
			if parts[2].mediaType != "message/rfc822" {
				t.Errorf("part 3 is %s, want message/rfc822 (RET=FULL)", parts[2].mediaType)
			}
			if !bytes.Equal(parts[2].body, []byte(originalMessage)) {
				t.Errorf("returned message differs:\n%q", parts[2].body)
			}
		})
	}
}

// unwrap joins the wrapped lines of the English text so that phrases can
// be searched across line breaks.
func unwrap(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// TestBuildDeterministic: fixed seams give identical bytes; default seams
// give distinct message IDs and boundaries.
func TestBuildDeterministic(t *testing.T) {
	a := buildOrFatal(t, fullReport("en"))
	b := buildOrFatal(t, fullReport("en"))
	if !bytes.Equal(a, b) {
		t.Error("two builds with the same seams differ")
	}
	r1, r2 := fullReport("en"), fullReport("en")
	for _, r := range []*Report{r1, r2} {
		r.MessageID, r.Boundary, r.Now = "", "", nil
	}
	m1, m2 := buildOrFatal(t, r1), buildOrFatal(t, r2)
	id := func(m []byte) string {
		e, err := message.Read(bytes.NewReader(m))
		if err != nil {
			t.Fatal(err)
		}
		return e.Header.Get("Message-Id")
	}
	if id(m1) == id(m2) || !strings.HasSuffix(id(m1), "@mta.example.com>") {
		t.Errorf("generated Message-IDs %q and %q", id(m1), id(m2))
	}
	mimeParts(t, m1)
}

func TestReturnModes(t *testing.T) {
	big := "Subject: big\r\nMessage-ID: <big@example.com>\r\n\r\n" + strings.Repeat("x", 100) + "\r\n"
	tests := []struct {
		name      string
		modify    func(r *Report)
		wantType  string
		wantBody  bool
		wantHuman string
	}{
		{"headers", func(r *Report) { r.Return = ReturnHeaders }, "text/rfc822-headers", false, "The headers of your message are attached."},
		{"full", func(r *Report) {}, "message/rfc822", true, "Your message is attached."},
		{"too large", func(r *Report) { r.MaxReturnSize = 50 }, "text/rfc822-headers", false, "too large to return in full (more than 50 bytes)"},
		{"never body", func(r *Report) { r.MaxReturnSize = -1 }, "text/rfc822-headers", false, "Only the headers of your message are attached."},
		{"requiretls", func(r *Report) { r.RequireTLS = true }, "text/rfc822-headers", false, "sent with REQUIRETLS (RFC 8689), so this report includes only its headers"},
		{"smtputf8 headers", func(r *Report) { r.SMTPUTF8 = true; r.Return = ReturnHeaders }, "message/global-headers", false, "The headers of your message are attached."},
		{"smtputf8 full", func(r *Report) { r.SMTPUTF8 = true }, "message/global", true, "Your message is attached."},
		// RFC 3461 §4.3: RET=FULL applies to failure reports only.
		{"delay report", func(r *Report) { r.Recipients = r.Recipients[1:2] }, "text/rfc822-headers", false, "The headers of your message are attached."},
		{"success report", func(r *Report) { r.Recipients = r.Recipients[2:] }, "text/rfc822-headers", false, "The headers of your message are attached."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fullReport("en")
			r.Original = strings.NewReader(big)
			r.OriginalMessageID = ""
			tt.modify(r)
			msg := buildOrFatal(t, r)
			parts := mimeParts(t, msg)
			if len(parts) != 3 {
				t.Fatalf("%d parts", len(parts))
			}
			if parts[2].mediaType != tt.wantType {
				t.Errorf("returned part is %s, want %s", parts[2].mediaType, tt.wantType)
			}
			hasBody := bytes.Contains(parts[2].body, []byte("xxxx"))
			if hasBody != tt.wantBody {
				t.Errorf("body returned = %v, want %v", hasBody, tt.wantBody)
			}
			if !bytes.Contains(parts[2].body, []byte("Subject: big")) {
				t.Errorf("headers not returned: %q", parts[2].body)
			}
			if !strings.Contains(unwrap(string(parts[0].body)), tt.wantHuman) {
				t.Errorf("human part lacks %q:\n%s", tt.wantHuman, parts[0].body)
			}
			e, _ := message.Read(bytes.NewReader(msg))
			if got := e.Header.Get("In-Reply-To"); got != "<big@example.com>" {
				t.Errorf("In-Reply-To %q, want the original's Message-ID", got)
			}
			wantDS := "message/delivery-status"
			if r.SMTPUTF8 {
				wantDS = "message/global-delivery-status"
			}
			if parts[1].mediaType != wantDS {
				t.Errorf("status part %s, want %s", parts[1].mediaType, wantDS)
			}
		})
	}
}

func TestRequireTLSJapanese(t *testing.T) {
	r := fullReport("ja")
	r.RequireTLS = true
	parts := mimeParts(t, buildOrFatal(t, r))
	if parts[2].mediaType != "text/rfc822-headers" {
		t.Errorf("returned %s", parts[2].mediaType)
	}
	if !strings.Contains(string(parts[0].body), "REQUIRETLS（RFC 8689）が指定されていたため") {
		t.Errorf("Japanese REQUIRETLS sentence missing:\n%s", parts[0].body)
	}
}

func TestSMTPUTF8Addresses(t *testing.T) {
	r := fullReport("en")
	r.Sender = "アリス@例え.jp"
	r.Recipients = []Recipient{{FinalRecipient: "ボブ@例え.jp", Action: ActionFailed, Status: StatusBadMailbox}}
	msg := buildOrFatal(t, r)
	parts := mimeParts(t, msg)
	if parts[1].mediaType != "message/global-delivery-status" {
		t.Errorf("non-ASCII address in %s, want message/global-delivery-status", parts[1].mediaType)
	}
	if !bytes.Contains(parts[1].body, []byte("Final-Recipient: utf-8; ボブ@例え.jp\r\n")) {
		t.Errorf("utf-8 address type missing:\n%s", parts[1].body)
	}
	checkDeliveryStatusGrammar(t, parts[1].body)
	back, err := Parse(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if back.Recipients[0].FinalRecipient != "ボブ@例え.jp" || !back.SMTPUTF8 || back.Sender != "アリス@例え.jp" {
		t.Errorf("round trip: %+v sender %q utf8 %v", back.Recipients[0], back.Sender, back.SMTPUTF8)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := map[string]func(r *Report){
		"no reporting MTA": func(r *Report) { r.ReportingMTA = " " },
		"typed, no host":   func(r *Report) { r.ReportingMTA = "dns; " },
		"bad boundary":     func(r *Report) { r.Boundary = "bad\r\nboundary" },
		"long boundary":    func(r *Report) { r.Boundary = strings.Repeat("b", 71) },
		"non-ASCII bound.": func(r *Report) { r.Boundary = "é" },
		"null sender":      func(r *Report) { r.Sender = "<>" },
		"empty sender":     func(r *Report) { r.Sender = "" },
		"no recipients":    func(r *Report) { r.Recipients = nil },
		"no final rcpt":    func(r *Report) { r.Recipients[0].FinalRecipient = "" },
		"bad action":       func(r *Report) { r.Recipients[0].Action = "expired" },
		"bad status":       func(r *Report) { r.Recipients[0].Status = "550" },
		"status class 3":   func(r *Report) { r.Recipients[0].Status = "3.1.1" },
		"boundary in body": func(r *Report) { r.Original = strings.NewReader("Subject: x\r\n\r\n--" + r.Boundary + "\r\n") },
	}
	for name, modify := range tests {
		t.Run(name, func(t *testing.T) {
			r := fullReport("en")
			modify(r)
			_, err := r.Build()
			if !errors.Is(err, ErrInvalidReport) {
				t.Errorf("Build error = %v, want ErrInvalidReport", err)
			}
		})
	}
}

// TestHeaderInjection: line breaks in caller data cannot add header fields
// or delivery-status fields.
func TestHeaderInjection(t *testing.T) {
	r := fullReport("en")
	r.Sender = "alice@example.com\r\nBcc: victim@example.net"
	r.Subject = "hi\r\nX-Injected: 1"
	r.Recipients[0].RemoteMTA = "mx.legacy.example\r\nAction: delivered"
	msg := buildOrFatal(t, r)
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if e.Header.Has("Bcc") || e.Header.Has("X-Injected") {
		t.Error("header injection succeeded")
	}
	parts := mimeParts(t, msg)
	checkDeliveryStatusGrammar(t, parts[1].body)
	back, err := Parse(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if back.Recipients[0].Action != ActionFailed || len(back.Recipients) != 3 {
		t.Errorf("delivery-status injection: %+v", back.Recipients)
	}
}

func TestLongDiagnosticFolded(t *testing.T) {
	r := fullReport("en")
	r.Recipients[0].DiagnosticCode = "550-5.7.1 first line of a long multi-line reply that goes on and on for a while\n550 5.7.1 second line " + strings.Repeat("word ", 30)
	parts := mimeParts(t, buildOrFatal(t, r))
	for _, line := range strings.Split(string(parts[1].body), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
	checkDeliveryStatusGrammar(t, parts[1].body)
	back, err := ParseDeliveryStatus(parts[1].body)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(strings.Fields(strings.ReplaceAll(r.Recipients[0].DiagnosticCode, "\n", " ")), " ")
	if got := back.Recipients[0].DiagnosticCode; got != want {
		t.Errorf("unfolded diagnostic\n got %q\nwant %q", got, want)
	}
}

// TestBuildBoundedOriginal: Build stops reading an endless original at the
// header limit or at MaxReturnSize, and returns headers only.
func TestBuildBoundedOriginal(t *testing.T) {
	r := fullReport("en")
	r.Original = io.MultiReader(strings.NewReader("Subject: endless\r\n\r\n"), endless{})
	r.MaxReturnSize = 1 << 16
	parts := mimeParts(t, buildOrFatal(t, r))
	if parts[2].mediaType != "text/rfc822-headers" || string(parts[2].body) != "Subject: endless\r\n" {
		t.Errorf("endless body: %s %.100q", parts[2].mediaType, parts[2].body)
	}
	if !strings.Contains(unwrap(string(parts[0].body)), "too large to return in full (more than 65536 bytes)") {
		t.Errorf("human part does not say the message was too large:\n%s", parts[0].body)
	}

	// An endless header line is cut at the header limit.
	r = fullReport("en")
	r.Original = io.MultiReader(strings.NewReader("Subject: ok\r\nX-Long: "), endless{})
	parts = mimeParts(t, buildOrFatal(t, r))
	if string(parts[2].body) != "Subject: ok\r\n" {
		t.Errorf("endless header: %.100q", parts[2].body)
	}
}

// TestBuildLFOriginal: an original with LF line ends is returned with CRLF.
func TestBuildLFOriginal(t *testing.T) {
	r := fullReport("en")
	r.Original = strings.NewReader(strings.ReplaceAll(originalMessage, "\r\n", "\n"))
	parts := mimeParts(t, buildOrFatal(t, r))
	if string(parts[2].body) != originalMessage {
		t.Errorf("returned %q", parts[2].body)
	}
}

// TestDiagnosticOddShapes: blank lines and very long words in a reply keep
// the delivery-status part grammatical (no empty line inside a group, no
// line over 998 octets).
func TestDiagnosticOddShapes(t *testing.T) {
	r := fullReport("en")
	r.Recipients[0].DiagnosticCode = "550-first\r\n   \r\n\r\n 550 second " + strings.Repeat("x", 2500)
	parts := mimeParts(t, buildOrFatal(t, r))
	if n := checkDeliveryStatusGrammar(t, parts[1].body); n != 3 {
		t.Errorf("%d recipient groups", n)
	}
	back, err := ParseDeliveryStatus(parts[1].body)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Recipients[0].DiagnosticCode; !strings.HasPrefix(got, "550-first 550 second xxx") {
		t.Errorf("diagnostic %.60q", got)
	}
}

// TestOriginalHeaderBareCR: a bare CR in the original's header (here its
// Message-ID) reaches neither the report's own header (In-Reply-To,
// References) nor the returned headers; every line of the report ends in
// CRLF.
func TestOriginalHeaderBareCR(t *testing.T) {
	r := fullReport("en")
	r.OriginalMessageID = ""
	r.Original = strings.NewReader("From: a@example.com\r\n" +
		"Message-ID: <orig-2@example.com>\rBcc: victim@example.net\r\n" +
		"X-Other: one\rtwo\r\n\r\nbody\r\n")
	msg := buildOrFatal(t, r)
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\r' && (i+1 == len(msg) || msg[i+1] != '\n') {
			t.Fatalf("bare CR at offset %d: %q", i, msg[max(0, i-40):min(len(msg), i+40)])
		}
	}
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if e.Header.Has("Bcc") {
		t.Error("Bcc injected into the report's header")
	}
	for _, f := range []string{"In-Reply-To", "References"} {
		if got := e.Header.Get(f); got != "<orig-2@example.com>" {
			t.Errorf("%s = %q, want <orig-2@example.com>", f, got)
		}
	}
	parts := mimeParts(t, msg)
	if !bytes.Contains(parts[2].body, []byte("X-Other: one two\r\n")) {
		t.Errorf("returned headers: %q", parts[2].body)
	}
}

// TestOriginalRecipientUntyped: an ORCPT value given without its address
// type is still written as "address-type; generic-address" (RFC 3464
// §2.3.1).
func TestOriginalRecipientUntyped(t *testing.T) {
	r := fullReport("en")
	r.Recipients[0].OriginalRecipient = "Bob@Legacy.example"
	parts := mimeParts(t, buildOrFatal(t, r))
	if !bytes.Contains(parts[1].body, []byte("\r\nOriginal-Recipient: rfc822; Bob@Legacy.example\r\n")) {
		t.Errorf("delivery-status:\n%s", parts[1].body)
	}
	checkDeliveryStatusGrammar(t, parts[1].body)
	back, err := ParseDeliveryStatus(parts[1].body)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Recipients[0].OriginalRecipient; got != "rfc822;Bob@Legacy.example" {
		t.Errorf("parsed back %q", got)
	}
}

// TestHumanPartLineBreaksInCallerData: a line break in caller data shown in
// the human-readable part (here Reason.Detail) does not start a line of its
// own, in English or in Japanese, and no line ends in a bare LF.
func TestHumanPartLineBreaksInCallerData(t *testing.T) {
	for _, lang := range []string{"en", "ja"} {
		r := fullReport(lang)
		r.Recipients[0].Reason.Detail = "first\r\nX-Evil: 1\nlast"
		parts := mimeParts(t, buildOrFatal(t, r))
		human := string(parts[0].body)
		if strings.Contains(strings.ReplaceAll(human, "\r\n", ""), "\n") {
			t.Errorf("%s: bare LF in the human part:\n%q", lang, human)
		}
		if !strings.Contains(unwrap(human), "first X-Evil: 1 last") {
			t.Errorf("%s: detail not kept on one line:\n%s", lang, human)
		}
	}
}

// TestNoLineOver998: a reply with a very long word keeps every line of the
// report within the 998 octets of RFC 5322 §2.1.1 (the human part, which
// quotes the reply, is then base64-encoded), in English and Japanese.
func TestNoLineOver998(t *testing.T) {
	for _, lang := range []string{"en", "ja"} {
		r := fullReport(lang)
		r.Recipients[0].DiagnosticCode = "550 5.7.1 " + strings.Repeat("x", 2500)
		msg := buildOrFatal(t, r)
		for i, line := range strings.Split(string(msg), "\r\n") {
			if len(line) > 998 {
				t.Errorf("%s: line %d has %d octets: %.60q", lang, i+1, len(line), line)
			}
		}
		parts := mimeParts(t, msg)
		if !strings.Contains(string(parts[0].body), strings.Repeat("x", 2500)) {
			t.Errorf("%s: human part lost the reply", lang)
		}
	}
}

// TestOriginalLongLines: an original with a line over 998 octets is not
// returned as message/rfc822, which could not carry it (RFC 2046 §5.2.1);
// its headers are, base64-encoded when a header line is the long one.
func TestOriginalLongLines(t *testing.T) {
	long := strings.Repeat("y", 1500)
	for name, tc := range map[string]struct {
		original string
		wantCTE  string
	}{
		"long body line":   {"Subject: x\r\n\r\n" + long + "\r\n", ""},
		"long header line": {"Subject: x\r\nX-Long: " + long + "\r\n\r\nbody\r\n", "base64"},
	} {
		t.Run(name, func(t *testing.T) {
			r := fullReport("en")
			r.Return = ReturnFull
			r.Original = strings.NewReader(tc.original)
			msg := buildOrFatal(t, r)
			for i, line := range strings.Split(string(msg), "\r\n") {
				if len(line) > 998 {
					t.Errorf("line %d has %d octets", i+1, len(line))
				}
			}
			parts := mimeParts(t, msg)
			if parts[2].mediaType != "text/rfc822-headers" {
				t.Fatalf("returned as %s", parts[2].mediaType)
			}
			if got := parts[2].header.Get("Content-Transfer-Encoding"); got != tc.wantCTE {
				t.Errorf("Content-Transfer-Encoding %q, want %q", got, tc.wantCTE)
			}
			want, _, _ := strings.Cut(tc.original, "\r\n\r\n")
			if string(parts[2].body) != want+"\r\n" {
				t.Errorf("returned headers %.80q", parts[2].body)
			}
			if !strings.Contains(unwrap(string(parts[0].body)), "Only the headers of your message are attached.") {
				t.Errorf("human part does not say why:\n%s", parts[0].body)
			}
		})
	}
}
