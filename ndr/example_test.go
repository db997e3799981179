package ndr_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
)

// A report for a message that could not go out because the next hop did
// not offer STARTTLS while the static policy required encryption.
func ExampleReport_Build() {
	r := &ndr.Report{
		ReportingMTA: "mta.example.com",
		Sender:       "alice@example.com",
		Recipients: []ndr.Recipient{{
			FinalRecipient: "bob@legacy.example",
			Action:         ndr.ActionFailed,
			Status:         ndr.StatusSTARTTLSRequired,
			RemoteMTA:      "mx.legacy.example",
			DiagnosticCode: "530 5.7.0 Must issue a STARTTLS command first",
			Reason: &ndr.Reason{
				Domain:  "legacy.example",
				MX:      "mx.legacy.example",
				Failure: policy.FailureSTARTTLSNotSupported,
				Source:  policy.SourceStatic,
			},
		}},
		Original: strings.NewReader("Subject: hello\r\nMessage-ID: <1@example.com>\r\n\r\nHi Bob\r\n"),
		Language: "en",
	}
	msg, err := r.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	// Send msg with MAIL FROM:<> to alice@example.com. Here, read it back.
	back, err := ndr.Parse(bytes.NewReader(msg))
	if err != nil {
		fmt.Println(err)
		return
	}
	rc := back.Recipients[0]
	fmt.Println(back.Sender, rc.FinalRecipient, rc.Action, rc.Status, back.OriginalMessageID)
	fmt.Println(rc.DiagnosticCode)
	// Output:
	// alice@example.com bob@legacy.example failed 5.7.4 <1@example.com>
	// 530 5.7.0 Must issue a STARTTLS command first
}

// The sentence the human-readable part gives for a TLS failure, in English
// and Japanese.
func ExampleReason_Explain() {
	reason := &ndr.Reason{
		Domain:  "legacy.example",
		MX:      "mx.legacy.example",
		Failure: policy.FailureSTARTTLSNotSupported,
		Source:  policy.SourceStatic,
	}
	fmt.Println(reason.Explain("en"))
	fmt.Println(reason.Explain("ja"))
	// Output:
	// The remote server mx.legacy.example did not offer STARTTLS, while the TLS policy for legacy.example (from the static table) requires encryption. Nothing was sent in plaintext.
	// 相手先サーバー mx.legacy.example は STARTTLS を提供しませんでしたが、legacy.example の TLS ポリシー（静的テーブルによる設定）では暗号化が必須です。メッセージは平文では一切送信されていません。
}

// Deterministic output for tests: fix the clock, the Message-ID and the
// MIME boundary. This report is about a delayed recipient whose
// certificate did not match, in Japanese.
func ExampleReport_Build_deterministic() {
	r := &ndr.Report{
		ReportingMTA: "mta.example.com",
		Sender:       "alice@example.com",
		Language:     "ja",
		Recipients: []ndr.Recipient{{
			FinalRecipient: "carol@partner.example",
			Action:         ndr.ActionDelayed,
			Status:         ndr.Transient(ndr.StatusCryptoFailure),
			WillRetryUntil: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC),
			Reason: &ndr.Reason{
				Domain: "partner.example", MX: "mx1.partner.example",
				Failure: policy.FailureCertificateHostMismatch, Source: policy.SourceMTASTS,
			},
		}},
		Now:       func() time.Time { return time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC) },
		MessageID: "ndr-42@mta.example.com",
		Boundary:  "b1",
	}
	a, _ := r.Build()
	b, _ := r.Build()
	fmt.Println(bytes.Equal(a, b), bytes.Contains(a, []byte("Will-Retry-Until: Wed, 02 Dec 2026 09:00:00 +0000\r\n")))
	// Output: true true
}

// Which outcomes produce a report, from the NOTIFY parameter of RCPT TO.
func ExampleShouldReport() {
	notify, _ := ndr.ParseNotify("SUCCESS,FAILURE")
	fmt.Println(ndr.ShouldReport(notify, ndr.ActionDelivered, "alice@example.com"))
	fmt.Println(ndr.ShouldReport(notify, ndr.ActionDelayed, "alice@example.com"))
	fmt.Println(ndr.ShouldReport(0, ndr.ActionDelayed, "alice@example.com")) // NOTIFY absent
	fmt.Println(ndr.ShouldReport(notify, ndr.ActionFailed, "<>"))            // null sender: never
	// Output:
	// true
	// false
	// true
	// false
}

func ExampleStatusText() {
	fmt.Println(ndr.StatusText(ndr.StatusSTARTTLSRequired))
	fmt.Println(ndr.StatusTextLang("5.7.30", "ja"))
	fmt.Println(ndr.Explain("5.2.2", "552 5.2.2 Mailbox full", "en"))
	// Output:
	// Security features not supported
	// REQUIRETLS への対応が必要です
	// The recipient's mailbox is full. The remote server replied: "552 5.2.2 Mailbox full"
}
