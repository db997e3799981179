package tlsrpt

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimKey is a signing key and the DNS TXT record publishing its public half
// (RFC 6376 §3.6.1).
type dkimKey struct {
	name   string
	signer crypto.Signer
	record string
}

func dkimKeys(t *testing.T) []dkimKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return []dkimKey{
		{"ed25519", priv, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
		{"rsa", rk, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)},
	}
}

// verifyOpts serves record as the only key, at sel._domainkey.domain.
func verifyOpts(sel, domain, record string) *dkim.VerifyOptions {
	return &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != sel+"._domainkey."+domain {
			return nil, errors.New("no such record: " + name)
		}
		return []string{record}, nil
	}}
}

func signedMailOptions(signer crypto.Signer) MailOptions {
	return MailOptions{
		From:      "noreply-tlsrpt@sender.example",
		To:        []string{"tlsrpt@example.com"},
		Submitter: "mail.sender.example",
		Date:      time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC),
		MessageID: "r1@mail.sender.example",
		DKIM:      &dkim.SignOptions{Domain: "sender.example", Selector: "tlsrpt", Signer: signer},
	}
}

// signatureTags returns the tags of the first DKIM-Signature field.
func signatureTags(t *testing.T, msg []byte) map[string]string {
	t.Helper()
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		t.Fatal("no header end")
	}
	// Unfold the header (RFC 5322 §2.2.3) and pick the signature field.
	hdr := strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(string(msg[:end]))
	for line := range strings.SplitSeq(hdr, "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(name, "DKIM-Signature") {
			continue
		}
		tags := map[string]string{}
		for tv := range strings.SplitSeq(val, ";") {
			k, v, _ := strings.Cut(tv, "=")
			tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
		}
		return tags
	}
	t.Fatalf("no DKIM-Signature field in\n%.400s", msg)
	return nil
}

// TestBuildMailDKIM: with MailOptions.DKIM the report message carries a
// DKIM-Signature (RFC 8460 §5.3) that go-msgauth verifies against the
// published key, for RSA and Ed25519 keys; its h= covers TLS-Report-Domain
// and TLS-Report-Submitter; and the signed message is still a report
// message ParseReportMail reads.
func TestBuildMailDKIM(t *testing.T) {
	rep := buildReports(t)[0]
	for _, k := range dkimKeys(t) {
		t.Run(k.name, func(t *testing.T) {
			msg, err := BuildMail(rep, signedMailOptions(k.signer))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(msg, []byte("DKIM-Signature:")) {
				t.Fatalf("no DKIM-Signature at the top:\n%.200s", msg)
			}
			verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), verifyOpts("tlsrpt", "sender.example", k.record))
			if err != nil || len(verifs) != 1 {
				t.Fatalf("verify: %v %v", verifs, err)
			}
			if v := verifs[0]; v.Err != nil || v.Domain != "sender.example" {
				t.Fatalf("signature does not verify: %+v", v)
			}
			h := map[string]bool{}
			for _, f := range verifs[0].HeaderKeys {
				h[strings.ToLower(f)] = true
			}
			for _, want := range SignedHeaders() {
				if !h[strings.ToLower(want)] {
					t.Errorf("h= lacks %s: %v", want, verifs[0].HeaderKeys)
				}
			}
			tags := signatureTags(t, msg)
			for _, want := range []string{"tls-report-domain", "tls-report-submitter"} {
				if !strings.Contains(":"+strings.ToLower(tags["h"])+":", ":"+want+":") {
					t.Errorf("h=%q lacks %s", tags["h"], want)
				}
			}
			if tags["d"] != "sender.example" || tags["s"] != "tlsrpt" {
				t.Errorf("d=%q s=%q", tags["d"], tags["s"])
			}

			got, err := ParseReportMail(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("ParseReportMail on the signed message: %v", err)
			}
			if got.ReportID != rep.ReportID || got.PolicyDomain() != rep.PolicyDomain() ||
				got.Policies[0].Summary != rep.Policies[0].Summary {
				t.Errorf("parsed %+v, want %+v", got, rep)
			}
		})
	}
}

// TestBuildMailDKIMTamper: replacing the report attachment with another,
// well-formed report, or changing a signed header field, breaks the
// signature.
func TestBuildMailDKIMTamper(t *testing.T) {
	rep := buildReports(t)[0]
	k := dkimKeys(t)[0]
	msg, err := BuildMail(rep, signedMailOptions(k.signer))
	if err != nil {
		t.Fatal(err)
	}
	vo := verifyOpts("tlsrpt", "sender.example", k.record)

	// Forge the JSON: one more successful session.
	forged := *rep
	forged.Policies = append([]PolicyResult(nil), rep.Policies...)
	forged.Policies[0].Summary.TotalSuccessfulSessionCount++
	gz, err := forged.Gzip()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(gz)
	var lines []string
	for len(b64) > 76 {
		lines = append(lines, b64[:76])
		b64 = b64[76:]
	}
	lines = append(lines, b64)
	// The attachment body: after the part header naming the gzip type,
	// up to the next boundary line.
	at := bytes.Index(msg, []byte("Content-Type: "+MediaTypeGzip))
	if at < 0 {
		t.Fatal("no attachment")
	}
	start := at + bytes.Index(msg[at:], []byte("\r\n\r\n")) + 4
	end := start + bytes.Index(msg[start:], []byte("\r\n--"))
	tampered := append(append(append([]byte(nil), msg[:start]...), strings.Join(lines, "\r\n")...), msg[end:]...)

	// The forgery is a readable report with the forged figure...
	got, err := ParseReportMail(bytes.NewReader(tampered))
	if err != nil {
		t.Fatalf("tampered message unreadable, so the test proves nothing: %v", err)
	}
	if got.Policies[0].Summary.TotalSuccessfulSessionCount != rep.Policies[0].Summary.TotalSuccessfulSessionCount+1 {
		t.Fatalf("forgery not in place: %+v", got.Policies[0].Summary)
	}
	// ... that the signature no longer vouches for.
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(tampered), vo)
	if err != nil || len(verifs) != 1 || verifs[0].Err == nil {
		t.Errorf("tampered attachment verified: %+v %v", verifs, err)
	}

	// A signed header field changed.
	hdr := bytes.Replace(msg, []byte("TLS-Report-Domain: example.com"), []byte("TLS-Report-Domain: example.net"), 1)
	if bytes.Equal(hdr, msg) {
		t.Fatal("TLS-Report-Domain not found")
	}
	verifs, err = dkim.VerifyWithOptions(bytes.NewReader(hdr), vo)
	if err != nil || len(verifs) != 1 || verifs[0].Err == nil {
		t.Errorf("tampered TLS-Report-Domain verified: %+v %v", verifs, err)
	}
}

// TestBuildMailDKIMOptions: nil DKIM leaves the message unsigned; options
// lacking Domain, Selector or Signer are an error, not an unsigned message;
// caller-chosen HeaderKeys are completed with SignedHeaders, and the
// caller's options are not modified.
func TestBuildMailDKIMOptions(t *testing.T) {
	rep := buildReports(t)[0]
	k := dkimKeys(t)[0]

	o := signedMailOptions(nil)
	o.DKIM = nil
	msg, err := BuildMail(rep, o)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ToLower(msg), []byte("dkim-signature")) {
		t.Error("unsigned options produced a DKIM-Signature")
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), verifyOpts("tlsrpt", "sender.example", k.record))
	if err != nil || len(verifs) != 0 {
		t.Errorf("unsigned message: %v %v", verifs, err)
	}

	for name, mod := range map[string]func(*dkim.SignOptions){
		"no domain":   func(s *dkim.SignOptions) { s.Domain = "" },
		"no selector": func(s *dkim.SignOptions) { s.Selector = "" },
		"no signer":   func(s *dkim.SignOptions) { s.Signer = nil },
	} {
		o := signedMailOptions(k.signer)
		mod(o.DKIM)
		if m, err := BuildMail(rep, o); err == nil {
			t.Errorf("%s: accepted, %.80q", name, m)
		}
	}

	o = signedMailOptions(k.signer)
	o.DKIM.HeaderKeys = []string{"From", "X-Extra"}
	msg, err = BuildMail(rep, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.DKIM.HeaderKeys) != 2 {
		t.Errorf("caller's HeaderKeys modified: %v", o.DKIM.HeaderKeys)
	}
	verifs, err = dkim.VerifyWithOptions(bytes.NewReader(msg), verifyOpts("tlsrpt", "sender.example", k.record))
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
		t.Fatalf("verify: %+v %v", verifs, err)
	}
	h := strings.ToLower(":" + strings.Join(verifs[0].HeaderKeys, ":") + ":")
	for _, want := range []string{"x-extra", "tls-report-domain", "tls-report-submitter", "content-type"} {
		if !strings.Contains(h, ":"+want+":") {
			t.Errorf("h= %v lacks %s", verifs[0].HeaderKeys, want)
		}
	}
}
