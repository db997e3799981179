package ndr

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
)

func TestReasonExplainExample(t *testing.T) {
	r := &Reason{Domain: "legacy.example", MX: "mx.legacy.example", Failure: policy.FailureSTARTTLSNotSupported, Source: policy.SourceStatic}
	wantEN := "The remote server mx.legacy.example did not offer STARTTLS, while the TLS policy for legacy.example (from the static table) requires encryption. Nothing was sent in plaintext."
	if got := r.Explain("en"); got != wantEN {
		t.Errorf("en:\n got %q\nwant %q", got, wantEN)
	}
	wantJA := "相手先サーバー mx.legacy.example は STARTTLS を提供しませんでしたが、legacy.example の TLS ポリシー（静的テーブルによる設定）では暗号化が必須です。メッセージは平文では一切送信されていません。"
	if got := r.Explain("ja"); got != wantJA {
		t.Errorf("ja:\n got %q\nwant %q", got, wantJA)
	}
	r.Failure, r.TLSVersion, r.MinTLSVersion = policy.FailureTLSVersion, "TLS 1.0", "TLS 1.2"
	if got := r.Explain("en"); !strings.Contains(got, "negotiated TLS 1.0, below the minimum version TLS 1.2") {
		t.Errorf("version: %q", got)
	}
	if got := r.Explain("ja"); !strings.Contains(got, "TLS 1.0 は") || !strings.Contains(got, "最低バージョン TLS 1.2 を下回っています") {
		t.Errorf("version ja: %q", got)
	}
}

// TestReasonExplainEveryFailure: each failure has its own sentence in both
// languages, naming the server or domain, with the plaintext assurance.
func TestReasonExplainEveryFailure(t *testing.T) {
	failures := []policy.FailureType{
		policy.FailureSTARTTLSNotSupported, policy.FailureCertificateHostMismatch, policy.FailureCertificateExpired,
		policy.FailureCertificateNotTrusted, policy.FailureValidation, policy.FailureTLSAInvalid, policy.FailureDNSSECInvalid,
		policy.FailureDANERequired, policy.FailureSTSPolicyFetch, policy.FailureSTSPolicyInvalid, policy.FailureSTSWebPKIInvalid,
		policy.FailureMXNotAllowed, policy.FailureHandshake, policy.FailureTLSVersion, policy.FailureWeakCipher,
		policy.FailureREQUIRETLSNotSupported,
	}
	for _, lang := range []string{"en", "ja"} {
		fallback := (&Reason{Domain: "d.example", MX: "mx.d.example", Failure: "unheard-of", Source: policy.SourceDANE, Detail: "x509: boom"}).Explain(lang)
		seen := map[string]policy.FailureType{}
		for _, f := range failures {
			r := &Reason{Domain: "d.example", MX: "mx.d.example", Failure: f, Source: policy.SourceDANE, Detail: "x509: boom"}
			got := r.Explain(lang)
			if got == "" || got == fallback {
				t.Errorf("%s %s: falls back to the generic text: %q", lang, f, got)
			}
			if prev, dup := seen[got]; dup {
				t.Errorf("%s: %s and %s explained alike", lang, f, prev)
			}
			seen[got] = f
			if !strings.Contains(got, "mx.d.example") && !strings.Contains(got, "d.example") {
				t.Errorf("%s %s: names neither server nor domain: %q", lang, f, got)
			}
			plain := map[string]string{"en": "Nothing was sent in plaintext.", "ja": "平文では一切送信されていません"}[lang]
			if !strings.Contains(got, plain) {
				t.Errorf("%s %s: lacks %q", lang, f, plain)
			}
			if !strings.HasSuffix(got, "x509: boom") {
				t.Errorf("%s %s: detail not appended: %q", lang, f, got)
			}
		}
	}
	// Without MX or domain the sentence still reads.
	got := (&Reason{Failure: policy.FailureHandshake}).Explain("en")
	if got != "The TLS handshake with the remote server failed, while the TLS policy requires encryption. Nothing was sent in plaintext." {
		t.Errorf("bare reason: %q", got)
	}
}

func TestNormalizeLanguage(t *testing.T) {
	for in, want := range map[string]string{"": "en", "en": "en", "EN-us": "en", "ja": "ja", "ja-JP": "ja", "JA_jp": "ja", "fr": "en", "jav": "en"} {
		if got := normalizeLanguage(in); got != want {
			t.Errorf("normalizeLanguage(%q) = %q, want %q", in, got, want)
		}
	}
	// An unknown language gives the English report.
	r := fullReport("fr")
	parts := mimeParts(t, buildOrFatal(t, r))
	if parts[0].header.Get("Content-Language") != "en" || !strings.Contains(string(parts[0].body), "did not offer STARTTLS") {
		t.Errorf("fallback to English failed:\n%s", parts[0].body)
	}
}

// Every failure type has its own sentence in each language (not the
// fallback), and no sentence has a word cut short by a rename (a
// "pol" for "policy" reached DSNs once).
func TestExplainEveryFailure(t *testing.T) {
	cut := regexp.MustCompile(`\bpol\b`)
	for _, ft := range []policy.FailureType{policy.FailureSTARTTLSNotSupported, policy.FailureCertificateHostMismatch,
		policy.FailureCertificateExpired, policy.FailureCertificateNotTrusted, policy.FailureValidation, policy.FailureTLSAInvalid,
		policy.FailureDNSSECInvalid, policy.FailureDANERequired, policy.FailureSTSPolicyFetch, policy.FailureSTSPolicyInvalid,
		policy.FailureSTSWebPKIInvalid, policy.FailureMXNotAllowed, policy.FailureHandshake, policy.FailureTLSVersion,
		policy.FailureWeakCipher, policy.FailureREQUIRETLSNotSupported} {
		for _, lang := range []string{"en", "ja"} {
			r := &Reason{Domain: "d.example", MX: "mx.d.example", Failure: ft, Source: policy.SourceMTASTS}
			got := r.Explain(lang)
			fallback := (&Reason{Domain: "d.example", MX: "mx.d.example", Failure: "unheard-of", Source: policy.SourceMTASTS}).Explain(lang)
			if got == fallback {
				t.Errorf("%s %s: the fallback sentence", lang, ft)
			}
			if cut.MatchString(got) {
				t.Errorf("%s %s: %q", lang, ft, got)
			}
		}
	}
	for k, p := range plainSentences {
		if cut.MatchString(p.en) {
			t.Errorf("plain sentence %s: %q", k, p.en)
		}
	}
}
