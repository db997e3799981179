package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the demo's whole scenario and checks what it prints: the
// partner delivery over verified TLS 1.3, the legacy refusal with 5.7.4
// before any transaction command crossed in plaintext, the one-line policy
// explanations, and a DSN with the RFC 3464 fields a program reads.
func TestDemo(t *testing.T) {
	var out, logs bytes.Buffer
	if err := runDemo(t.Context(), &out, &logs); err != nil {
		t.Fatalf("runDemo: %v\noutput:\n%s\nlogs:\n%s", err, out.String(), logs.String())
	}
	s := out.String()
	t.Logf("demo output:\n%s", s)

	line := func(prefix string) string {
		t.Helper()
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line starting with %q in:\n%s", prefix, s)
		return ""
	}
	must := func(what, l string, subs ...string) {
		t.Helper()
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				t.Errorf("%s: missing %q in %q", what, sub, l)
			}
		}
	}

	must("delivered line", line("DELIVERED  bob@partner.example"), "mx.partner.example", "TLSv1.3", "TLS_", "certificate verified")
	must("refused line", line("REFUSED    carol@legacy.example"), "554 5.7.4", "STARTTLS", "starttls-not-supported")
	must("plaintext proof", line("           before any plaintext"), "EHLO relay.demo.example", "no MAIL FROM")
	must("policy lines", s, "policy     partner.example: verify (static: demo-policy:2",
		"policy     legacy.example: encrypt (static: demo-policy:3 entry legacy.example), on failure bounce")
	must("submission", line("submitted 2 messages"), "TLS 1.3", "AUTH PLAIN")
	must("DSN", s, "DSN returned to alice@demo.example", "did not offer STARTTLS",
		"Final-Recipient: rfc822; carol@legacy.example", "Action: failed", "Status: 5.7.4",
		"Remote-MTA: dns; mx.legacy.example")
	if strings.Contains(s, "LEAKED") || strings.Contains(s, "unexpected") {
		t.Errorf("demo reports a leak or an unexpected delivery:\n%s", s)
	}
	// The library logged the attempts the demo summarises.
	must("logs", logs.String(), `msg="delivery attempt"`, "tls_failure=starttls-not-supported", `msg="smtp tls handshake"`)
}
