package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"strings"

	message "github.com/emersion/go-message"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// report prints the outcome in a few readable lines.
func report(w io.Writer, o *outcome) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("mailtls demo: one relay, two destinations, everything on 127.0.0.1, DNS faked in memory")
	p("")
	p("  relay    %s  submissions (implicit TLS + AUTH) on %s", relayHost, o.submitAddr)
	p("  partner  mx.partner.example  STARTTLS, certificate from the demo CA, on %s", o.partnerAddr)
	p("  legacy   mx.legacy.example   no STARTTLS, on %s", o.legacyAddr)
	p("  policy   %s", strings.Join(policyLines(), " | "))
	p("")
	p("submitted 2 messages as %s over %s (%s, implicit TLS, RFC 8314) with AUTH PLAIN",
		sender, tls.VersionName(o.submitTLS.Version), tls.CipherSuiteName(o.submitTLS.CipherSuite))
	p("")

	pr, ok := o.results[partnerRcpt]
	if !ok {
		return fmt.Errorf("no result for %s", partnerRcpt)
	}
	p("policy     %s", pr.Requirement)
	if pr.Status == transport.Delivered || pr.Status == transport.Relayed {
		p("DELIVERED  %s to %s over %s", partnerRcpt, pr.RemoteMTA, tlsSummary(pr.TLS))
		p("           server said: %s", replyOf(pr))
	} else {
		p("NOT DELIVERED  %s: %s (%s)", partnerRcpt, replyOf(pr), pr.Status)
	}
	p("")

	lr, ok := o.results[legacyRcpt]
	if !ok {
		return fmt.Errorf("no result for %s", legacyRcpt)
	}
	p("policy     %s", lr.Requirement)
	if lr.Status == transport.Failed || lr.Status == transport.Deferred {
		p("REFUSED    %s at %s: %s [%s]", legacyRcpt, lr.RemoteMTA, replyOf(lr), lr.TLSFailure)
		p("           before any plaintext: the legacy server received only %s", wireSummary(o.legacyWire))
	} else {
		p("DELIVERED (unexpected)  %s: %s", legacyRcpt, replyOf(lr))
	}
	p("")

	rep, err := ndr.Parse(bytes.NewReader(o.dsn))
	if err != nil {
		return fmt.Errorf("the DSN does not parse: %w", err)
	}
	subject, human := humanPart(o.dsn)
	p("DSN returned to %s (Subject: %s):", sender, subject)
	for _, l := range strings.Split(strings.TrimRight(human, "\r\n"), "\n") {
		p("  | %s", strings.TrimRight(l, "\r"))
	}
	p("  delivery-status (RFC 3464):")
	p("    Reporting-MTA: dns; %s", rep.ReportingMTA)
	for _, r := range rep.Recipients {
		fr := r.FinalRecipient
		if !strings.Contains(fr, ";") {
			fr = "rfc822; " + fr
		}
		p("    Final-Recipient: %s", fr)
		p("    Action: %s", r.Action)
		p("    Status: %s (%s)", r.Status, ndr.StatusText(r.Status))
		if r.RemoteMTA != "" {
			p("    Remote-MTA: dns; %s", r.RemoteMTA)
		}
		if r.DiagnosticCode != "" {
			dt := r.DiagnosticType
			if dt == "" {
				dt = "smtp"
			}
			p("    Diagnostic-Code: %s; %s", dt, strings.ReplaceAll(r.DiagnosticCode, "\n", " "))
		}
	}
	return nil
}

func policyLines() []string {
	var out []string
	for _, l := range strings.Split(policyText, "\n") {
		if i := strings.Index(l, "#"); i >= 0 {
			l = l[:i]
		}
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func tlsSummary(ti *transport.TLSInfo) string {
	if ti == nil {
		return "plaintext"
	}
	v := "certificate NOT verified"
	if ti.Verified {
		v = "certificate verified"
	}
	return fmt.Sprintf("%s, %s, %s", ti.VersionName(), ti.CipherName(), v)
}

func replyOf(r transport.RecipientResult) string {
	if r.Reply == nil {
		return "(no reply)"
	}
	return r.Reply.Reply()
}

// wireSummary lists the commands a server received, quoted.
func wireSummary(wire string) string {
	var cmds []string
	for _, l := range strings.Split(wire, "\r\n") {
		if l = strings.TrimSpace(l); l != "" {
			cmds = append(cmds, fmt.Sprintf("%q", l))
		}
	}
	verdict := "no MAIL FROM, no RCPT TO, no message data"
	up := strings.ToUpper(wire)
	if strings.Contains(up, "MAIL FROM") || strings.Contains(up, "RCPT TO") || strings.Contains(up, "DATA") {
		verdict = "THE TRANSACTION LEAKED IN PLAINTEXT"
	}
	if len(cmds) == 0 {
		return "nothing — " + verdict
	}
	return strings.Join(cmds, ", ") + " — " + verdict
}

// humanPart returns the report's Subject and its first text/plain part
// (RFC 6522 §3: the human-readable explanation).
func humanPart(raw []byte) (subject, text string) {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		return "", fmt.Sprintf("(unreadable report: %v)", err)
	}
	subject = e.Header.Get("Subject")
	mr := e.MultipartReader()
	if mr == nil {
		return subject, "(not a multipart report)"
	}
	for {
		part, err := mr.NextPart()
		if part == nil {
			return subject, fmt.Sprintf("(no text part: %v)", err)
		}
		if t, _, _ := part.Header.ContentType(); t == "text/plain" {
			b, _ := io.ReadAll(part.Body)
			return subject, string(b)
		}
	}
}
