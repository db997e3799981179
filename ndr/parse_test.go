package ndr

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseSamplesByFile checks, file by file, what Parse extracts from a
// sample of other MTAs' reports. Expected values were read off the files.
func TestParseSamplesByFile(t *testing.T) {
	dir := filepath.Join(sharedTestdata(t), "dsn")
	type rcpt struct{ final, action, status, diag string }
	tests := []struct {
		file         string
		reportingMTA string
		rcpts        []rcpt
	}{
		{"lhost-postfix-02.eml", "smtp.example.com", []rcpt{
			{"filtered@example.co.jp", "failed", "5.2.1", "550 5.2.1 <filtered@example.co.jp>... User Unknown"},
			{"userunknown@example.co.jp", "failed", "5.1.1", "550 5.1.1 <userunknown@example.co.jp>... User Unknown"},
		}},
		// Upper-case types ("RFC822;", "SMTP;"), two recipients.
		{"lhost-sendmail-02.eml", "nijo.example.jp", []rcpt{
			{"userunknown@example.org", "failed", "5.1.1", "550 5.1.1 <userunknown@example.org>... User Unknown"},
			{"filtered@example.com", "failed", "5.2.1", "550 5.2.1 <filtered@example.com>... User Unknown"},
		}},
		// Exim: Action before Final-Recipient, folded Diagnostic-Code,
		// "Content-type" in lower case.
		{"lhost-exim-29.eml", "example.co.jp", []rcpt{
			{"kijitora@example.co.jp", "failed", "5.0.0", "550 Bad SPF records for [example.org:192.0.2.2], see http://spf.pobox.com/"},
		}},
		// Exchange: "dns;host" without a space.
		{"lhost-exchange2007-02.eml", "qs.example.edu", []rcpt{
			{"kijitora@example.edu", "failed", "5.2.2", ""},
		}},
		// Office 365: three-digit detail.
		{"lhost-office365-04.eml", "SG2APC01HT247.mail.protection.outlook.com", []rcpt{
			{"otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp", "failed", "5.1.351", "550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 : User unknown"},
		}},
		// OpenSMTPD: delayed, no Diagnostic-Code.
		{"lhost-opensmtpd-06.eml", "localhost", []rcpt{{"nekochan@libsisimai.org", "delayed", "4.4.7", ""}}},
		// Gmail via Postfix: multi-line reply folded over lines.
		{"rhost-google-03.eml", "mail4.example.com", []rcpt{{"kijitora@google.example.com", "failed", "5.7.26", "550-5.7.26 The MAIL FROM domain [mail4.example.com] has an SPF record with a 550-5.7.26 hard fail policy (-all)"}}},
		// "Action: Delayed" capitalized; Status followed by a comment.
		{"rfc3464-07.eml", "mx54.exmaple.com", []rcpt{{"kijitora@example.net", "delayed", "4.4.0", ""}}},
		{"lhost-yandex-02.eml", "forward1h.mail.yandex.net", []rcpt{
			{"mikeneko@example.jp", "failed", "5.2.1", "550 5.2.1 <mikeneko@example.jp>... User Unknown"},
			{"sabineko@example.jp", "failed", "5.2.2", "550 5.2.2 <sabineko@example.jp>... Mailbox Full"},
		}},
		// Domino: X-Notes diagnostic type, folded.
		{"lhost-domino-03.eml", "relay2.neko.example.org", []rcpt{{"kijitora@neko.example.org", "failed", "5.0.0", "Error transferring to neko22.example.org;"}}},
		// McAfee: no Final-Recipient and no Status; inferred from
		// Original-Recipient and from the enhanced code in the reply.
		{"lhost-mcafee-03.eml", "", []rcpt{{"kijitora@example.or.jp", "failed", "5.1.1", "550 5.1.1 <kijitora@example.or.jp>... User unknown"}}},
		{"lhost-amazonses-05.eml", "", []rcpt{{"bounce@simulator.amazonses.com", "failed", "5.1.1", "550 5.1.1 user unknown"}}},
		{"lhost-messagingserver-07.eml", "", []rcpt{{"kijitora@2jo.example.jp", "delayed", "4.4.7", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := Parse(f)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.reportingMTA != "" && rep.ReportingMTA != tt.reportingMTA {
				t.Errorf("ReportingMTA = %q, want %q", rep.ReportingMTA, tt.reportingMTA)
			}
			if len(rep.Recipients) != len(tt.rcpts) {
				t.Fatalf("%d recipients, want %d: %+v", len(rep.Recipients), len(tt.rcpts), rep.Recipients)
			}
			for i, want := range tt.rcpts {
				got := rep.Recipients[i]
				if got.FinalRecipient != want.final || string(got.Action) != want.action || got.Status != want.status {
					t.Errorf("recipient %d = %q %q %q, want %q %q %q", i, got.FinalRecipient, got.Action, got.Status, want.final, want.action, want.status)
				}
				if !strings.HasPrefix(got.DiagnosticCode, want.diag) {
					t.Errorf("recipient %d Diagnostic-Code = %q, want prefix %q", i, got.DiagnosticCode, want.diag)
				}
			}
		})
	}
}

// TestParseSamplesAggregate parses every shared sample and requires that at
// least 97% yield recipients whose address, action and status are all
// valid; the others are listed. It also counts diagnostics found.
func TestParseSamplesAggregate(t *testing.T) {
	files := sampleDSNs(t)
	var good, withDiag int
	var failures []string
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Parse(bytes.NewReader(data))
		if err != nil {
			failures = append(failures, filepath.Base(path)+": "+err.Error())
			continue
		}
		ok := len(rep.Recipients) > 0
		diag := false
		for _, rc := range rep.Recipients {
			_, _, _, statusOK := ParseStatus(rc.Status)
			if rc.FinalRecipient == "" || !rc.Action.Valid() || !statusOK {
				ok = false
				failures = append(failures, filepath.Base(path)+": incomplete recipient "+rc.FinalRecipient+" action="+string(rc.Action)+" status="+rc.Status)
			}
			if rc.DiagnosticCode != "" {
				diag = true
			}
		}
		if ok {
			good++
		}
		if diag {
			withDiag++
		}
	}
	rate := float64(good) / float64(len(files))
	t.Logf("shared DSN samples: %d/%d (%.1f%%) parsed completely; %d with a Diagnostic-Code", good, len(files), 100*rate, withDiag)
	for _, f := range failures {
		t.Logf("not parsed completely: %s", f)
	}
	if rate < 0.97 {
		t.Errorf("only %.1f%% of samples parsed, want >= 97%%", 100*rate)
	}
}

// rfcSample is written after the examples of RFC 3464 (§2 grammar and the
// examples of its predecessor RFC 1894 §9): LF line ends, mixed case,
// folding, two recipients, a delayed one with Will-Retry-Until.
const rfcSample = `Date: Thu, 7 Jul 1994 17:16:05 -0400
From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
Message-Id: <199407072116.RAA14128@CS.UTK.EDU>
Subject: Returned mail: Cannot send message for 5 days
To: <owner-ups-mib@CS.UTK.EDU>
In-Reply-To: <199406301604.MAA11111@CS.UTK.EDU>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="RAA14128.773615765/CS.UTK.EDU"

--RAA14128.773615765/CS.UTK.EDU

   ----- The following addresses had delivery problems -----
<louis@larry.slip.umd.edu>  (unrecoverable error)
<owner-ups-mib@CS.UTK.EDU>  (still trying)

--RAA14128.773615765/CS.UTK.EDU
content-type: message/delivery-status

original-envelope-id: 199407072116.RAA14128
Reporting-MTA: dns; cs.utk.edu
arrival-date: Thu, 30 Jun 1994 12:04:24 -0400

Original-Recipient: rfc822;louis@larry.slip.umd.edu
Final-Recipient: rfc822;louis@larry.slip.umd.edu
Action: failed
Status: 4.0.0
Diagnostic-Code: smtp; 426 connection timed out
Last-Attempt-Date: Thu, 7 Jul 1994 17:15:49 -0400

FINAL-RECIPIENT: rfc822; owner-ups-mib@CS.UTK.EDU
ACTION: DELAYED
STATUS: 4.4.1
REMOTE-MTA: DNS; larry.slip.umd.edu
DIAGNOSTIC-CODE: smtp; 421 larry.slip.umd.edu
    connection refused
WILL-RETRY-UNTIL: Thu, 14 Jul 1994 17:15:49 -0400

--RAA14128.773615765/CS.UTK.EDU
content-type: text/rfc822-headers

Date: Thu, 30 Jun 1994 12:04:00 -0400
Message-Id: <199406301604.MAA11111@CS.UTK.EDU>
Subject: UPS MIB

--RAA14128.773615765/CS.UTK.EDU--
`

func TestParseRFCSample(t *testing.T) {
	for _, crlf := range []bool{false, true} {
		in := rfcSample
		if crlf {
			in = strings.ReplaceAll(in, "\n", "\r\n")
		}
		rep, err := Parse(strings.NewReader(in))
		if err != nil {
			t.Fatalf("crlf=%v: %v", crlf, err)
		}
		edt := time.FixedZone("", -4*3600)
		want := []Recipient{{
			OriginalRecipient: "rfc822;louis@larry.slip.umd.edu",
			FinalRecipient:    "louis@larry.slip.umd.edu",
			Action:            ActionFailed,
			Status:            "4.0.0",
			DiagnosticType:    "smtp",
			DiagnosticCode:    "426 connection timed out",
			LastAttemptDate:   time.Date(1994, 7, 7, 17, 15, 49, 0, edt),
		}, {
			FinalRecipient: "owner-ups-mib@CS.UTK.EDU",
			Action:         ActionDelayed,
			Status:         "4.4.1",
			RemoteMTA:      "larry.slip.umd.edu",
			DiagnosticType: "smtp",
			DiagnosticCode: "421 larry.slip.umd.edu connection refused",
			WillRetryUntil: time.Date(1994, 7, 14, 17, 15, 49, 0, edt),
		}}
		if len(rep.Recipients) != 2 {
			t.Fatalf("crlf=%v: %d recipients", crlf, len(rep.Recipients))
		}
		for i := range want {
			got := rep.Recipients[i]
			if !got.LastAttemptDate.Equal(want[i].LastAttemptDate) || !got.WillRetryUntil.Equal(want[i].WillRetryUntil) {
				t.Errorf("crlf=%v recipient %d dates %v %v", crlf, i, got.LastAttemptDate, got.WillRetryUntil)
			}
			got.LastAttemptDate, got.WillRetryUntil = want[i].LastAttemptDate, want[i].WillRetryUntil
			if !reflect.DeepEqual(got, want[i]) {
				t.Errorf("crlf=%v recipient %d\n got %+v\nwant %+v", crlf, i, got, want[i])
			}
		}
		if rep.ReportingMTA != "cs.utk.edu" || rep.OriginalEnvelopeID != "199407072116.RAA14128" ||
			!rep.ArrivalDate.Equal(time.Date(1994, 6, 30, 12, 4, 24, 0, edt)) {
			t.Errorf("per-message fields: %q %q %v", rep.ReportingMTA, rep.OriginalEnvelopeID, rep.ArrivalDate)
		}
		if rep.Sender != "owner-ups-mib@CS.UTK.EDU" || rep.OriginalMessageID != "<199406301604.MAA11111@CS.UTK.EDU>" {
			t.Errorf("Sender %q OriginalMessageID %q", rep.Sender, rep.OriginalMessageID)
		}
		if rep.Return != ReturnHeaders || rep.Original == nil {
			t.Errorf("returned headers not found")
		} else if b, _ := io.ReadAll(rep.Original); !bytes.Contains(b, []byte("Subject: UPS MIB")) {
			t.Errorf("Original = %q", b)
		}
	}
}

// TestParseDeliveryStatusTolerance covers the grammar's edge cases and
// real-world deviations directly on the delivery-status body.
func TestParseDeliveryStatusTolerance(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Recipient
	}{
		{"minimal, no per-message group",
			"Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n",
			[]Recipient{{FinalRecipient: "a@b.example", Action: ActionFailed, Status: "5.1.1"}}},
		{"no blank line between recipients",
			"Reporting-MTA: dns; x\nFinal-Recipient: rfc822; a@b\nAction: failed\nStatus: 5.1.1\nFinal-Recipient: rfc822; c@d\nAction: delayed\nStatus: 4.4.1\n",
			[]Recipient{{FinalRecipient: "a@b", Action: ActionFailed, Status: "5.1.1"}, {FinalRecipient: "c@d", Action: ActionDelayed, Status: "4.4.1"}}},
		{"several blank and whitespace lines, tabs in folding",
			"Reporting-MTA: dns; x\r\n\r\n \r\n\r\nFinal-Recipient: rfc822;\r\n\t<a@b>\r\nAction: failed (permanent)\r\nStatus: 5.0.0 (undefined)\r\n",
			[]Recipient{{FinalRecipient: "a@b", Action: ActionFailed, Status: "5.0.0"}}},
		{"field name with space before the colon, lines without colon skipped",
			"Final-Recipient : rfc822; a@b\ngarbage line\nAction :failed\nStatus:5.2.2\nDiagnostic-Code: 552 mailbox full\n",
			[]Recipient{{FinalRecipient: "a@b", Action: ActionFailed, Status: "5.2.2", DiagnosticCode: "552 mailbox full"}}},
		{"other address type kept with its type",
			"Final-Recipient: x400; /G=a/S=b/\nAction: failed\nStatus: 5.1.1\n",
			[]Recipient{{FinalRecipient: "x400; /G=a/S=b/", Action: ActionFailed, Status: "5.1.1"}}},
		{"status inferred from a bare reply code",
			"Final-Recipient: rfc822; a@b\nAction: failed\nDiagnostic-Code: smtp; 550 no such user\n",
			[]Recipient{{FinalRecipient: "a@b", Action: ActionFailed, Status: "5.0.0", DiagnosticType: "smtp", DiagnosticCode: "550 no such user"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := ParseDeliveryStatus([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rep.Recipients, tt.want) {
				t.Errorf("\n got %+v\nwant %+v", rep.Recipients, tt.want)
			}
		})
	}
	if _, err := ParseDeliveryStatus([]byte("Reporting-MTA: dns; x\n\n")); !errors.Is(err, ErrNoDeliveryStatus) {
		t.Errorf("no recipients: err = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse(strings.NewReader("Subject: hello\r\n\r\nJust a letter.\r\n")); !errors.Is(err, ErrNoDeliveryStatus) {
		t.Errorf("plain message: %v, want ErrNoDeliveryStatus", err)
	}
	p := Parser{MaxSize: 100}
	if _, err := p.Parse(strings.NewReader(rfcSample)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v, want ErrTooLarge", err)
	}
	// The limit is exact: a message of MaxSize bytes is read.
	p.MaxSize = int64(len(rfcSample))
	if _, err := p.Parse(strings.NewReader(rfcSample)); err != nil {
		t.Errorf("message of exactly MaxSize: %v", err)
	}
	// Parse stops reading at MaxSize+1 bytes of an endless input.
	p.MaxSize = 1 << 10
	if _, err := p.Parse(endless{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless input: %v", err)
	}
}

type endless struct{}

func (endless) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = 'a'
	}
	return len(b), nil
}

// TestParseBrokenMIME: a report whose boundary never appears is still read
// through the fallback scan for the part's Content-Type line.
func TestParseBrokenMIME(t *testing.T) {
	in := strings.Replace(rfcSample, `boundary="RAA14128.773615765/CS.UTK.EDU"`, `boundary="wrong"`, 1)
	rep, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 2 || rep.Recipients[1].Status != "4.4.1" {
		t.Errorf("recipients %+v", rep.Recipients)
	}
}

// TestRoundTrip builds reports and parses them back.
func TestRoundTrip(t *testing.T) {
	for _, lang := range []string{"en", "ja"} {
		for _, ret := range []Return{ReturnHeaders, ReturnFull} {
			r := fullReport(lang)
			r.Return = ret
			msg := buildOrFatal(t, r)
			back, err := Parse(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("%s/%d: %v", lang, ret, err)
			}
			r = fullReport(lang) // fresh copy: Build consumed Original
			if back.ReportingMTA != r.ReportingMTA || back.OriginalEnvelopeID != r.OriginalEnvelopeID ||
				back.ReceivedFromMTA != r.ReceivedFromMTA || !back.ArrivalDate.Equal(r.ArrivalDate) ||
				back.Sender != r.Sender || back.Return != ret || back.Language != lang ||
				back.OriginalMessageID != "<orig-1@example.com>" || back.MessageID != r.MessageID ||
				!back.Date.Equal(buildAt) || back.From != "MAILER-DAEMON@mta.example.com" {
				t.Errorf("%s/%d: per-message fields differ: %+v", lang, ret, back)
			}
			wantSubject := textsFor(lang).subjectFailed
			if back.Subject != wantSubject {
				t.Errorf("Subject %q, want %q", back.Subject, wantSubject)
			}
			if len(back.Recipients) != len(r.Recipients) {
				t.Fatalf("%d recipients", len(back.Recipients))
			}
			for i, want := range r.Recipients {
				want.Reason = nil
				want.OriginalRecipient = strings.ReplaceAll(want.OriginalRecipient, "; ", ";")
				if want.DiagnosticType == "" {
					want.DiagnosticType = "smtp"
				}
				if want.Action != ActionDelayed {
					want.WillRetryUntil = time.Time{}
				}
				got := back.Recipients[i]
				for _, d := range [][2]*time.Time{{&got.LastAttemptDate, &want.LastAttemptDate}, {&got.WillRetryUntil, &want.WillRetryUntil}} {
					if !d[0].Equal(*d[1]) {
						t.Errorf("recipient %d date %v, want %v", i, *d[0], *d[1])
					}
					*d[0] = *d[1]
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s/%d recipient %d\n got %+v\nwant %+v", lang, ret, i, got, want)
				}
			}
			orig, _ := io.ReadAll(back.Original)
			if ret == ReturnFull && string(orig) != originalMessage {
				t.Errorf("full original %q", orig)
			}
			if ret == ReturnHeaders && string(orig) != strings.SplitAfter(originalMessage, "\r\n\r\n")[0][:len(strings.SplitAfter(originalMessage, "\r\n\r\n")[0])-2] {
				t.Errorf("returned headers %q", orig)
			}
		}
	}
}

// TestParseOwnOutputAfterLF: a built report whose line ends were turned
// into LF (as some mail stores do) still parses.
func TestParseOwnOutputAfterLF(t *testing.T) {
	msg := buildOrFatal(t, fullReport("ja"))
	back, err := Parse(bytes.NewReader(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Recipients) != 3 || back.Recipients[0].Status != StatusSTARTTLSRequired {
		t.Errorf("%+v", back.Recipients)
	}
}

// TestParseEncodedAndNested: a base64-encoded global delivery-status part
// nested in multipart/mixed inside the report is found and decoded.
func TestParseEncodedAndNested(t *testing.T) {
	status := "Reporting-MTA: dns; mx.example.jp\r\n\r\nFinal-Recipient: utf-8; ボブ@例え.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n"
	in := "To: alice@example.com\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
		"--outer\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n" +
		"--outer\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=inner\r\n\r\n" +
		"--inner\r\nContent-Type: text/plain; charset=iso-2022-jp\r\nContent-Language: ja\r\n\r\nhello\r\n" +
		"--inner\r\nContent-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64Lines(status) +
		"--inner--\r\n--outer--\r\n"
	rep, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ReportingMTA != "mx.example.jp" || len(rep.Recipients) != 1 || rep.Recipients[0].FinalRecipient != "ボブ@例え.jp" || !rep.SMTPUTF8 {
		t.Errorf("got %+v", rep)
	}
}

func base64Lines(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return b.String() + enc + "\r\n"
}
