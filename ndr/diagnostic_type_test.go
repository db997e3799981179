package ndr

import (
	"bytes"
	"strings"
	"testing"
)

// RFC 3464 §2.3.6: an "smtp" diagnostic is the remote server's reply and
// is labelled so in the human part; any other type is the reporting MTA's
// own finding and must not be called a server reply. Both survive Parse.
func TestHumanPartLabelsDiagnosticType(t *testing.T) {
	for _, lang := range []string{"en", "ja"} {
		r := &Report{
			ReportingMTA: "mta.example.com",
			Sender:       "alice@example.com",
			Language:     lang,
			Recipients: []Recipient{{
				FinalRecipient: "bob@example.net",
				Action:         ActionFailed,
				Status:         "5.1.1",
				RemoteMTA:      "mx.example.net",
				DiagnosticCode: "550 5.1.1 no such user",
			}, {
				FinalRecipient: "carol@legacy.example",
				Action:         ActionFailed,
				Status:         "5.7.4",
				DiagnosticType: "X-mailtls",
				DiagnosticCode: "TLS is required but mx.legacy.example did not offer STARTTLS",
			}},
		}
		msg := buildOrFatal(t, r)
		human := string(mimeParts(t, msg)[0].body)
		reply, local := textsFor(lang).reply, textsFor(lang).localDiag
		if !strings.Contains(human, reply+": 550 5.1.1 no such user") {
			t.Errorf("%s: the remote reply is not labelled %q:\n%s", lang, reply, human)
		}
		if !strings.Contains(human, local+": TLS is required") || strings.Contains(human, reply+": TLS is required") {
			t.Errorf("%s: our finding is not labelled %q:\n%s", lang, local, human)
		}
		if strings.Count(human, reply+":") != 1 {
			t.Errorf("%s: %q appears %d times, want once", lang, reply, strings.Count(human, reply+":"))
		}
		p, err := Parse(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Recipients; len(got) != 2 ||
			got[0].DiagnosticType != "smtp" || got[0].DiagnosticCode != "550 5.1.1 no such user" ||
			got[1].DiagnosticType != "X-mailtls" || !strings.HasPrefix(got[1].DiagnosticCode, "TLS is required") {
			t.Errorf("%s: parsed back %+v", lang, got)
		}
	}
}
