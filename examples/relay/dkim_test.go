package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/mailtls/mailtls/policy/tlsrpt"
)

// writePEM writes der as a PEM block of type typ and returns the file name.
func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// With -tlsrpt and -dkim-*, the daily TLS-RPT report mail that lands in the
// rua Maildir carries a DKIM signature (RFC 8460 §5.3) that go-msgauth
// verifies against the public key, with h= covering TLS-Report-Domain and
// TLS-Report-Submitter; the report in it is still readable. Both key types
// the flag accepts are exercised.
func TestTLSRPTReportDKIMSigned(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, typ, record string
		der               []byte
	}{
		{"ed25519-pkcs8", "PRIVATE KEY", "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), edDER},
		{"rsa-pkcs1", "RSA PRIVATE KEY", "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub), x509.MarshalPKCS1PrivateKey(rk)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keyFile := writePEM(t, tc.typ, tc.der)
			dns := &fakeDNS{txt: map[string][]string{
				"_smtp._tls.rpt.example": {"v=TLSRPTv1; rua=mailto:tls-reports@localhost"},
			}}
			tr := startRelayWith(t, func(r *Relay) { r.reporter.Resolver = dns },
				"-tlsrpt", "-dkim-domain", "relay.test", "-dkim-selector", "tlsrpt", "-dkim-key", keyFile)

			now := time.Now().UTC()
			today := now.Truncate(24 * time.Hour)
			if err := tr.tlsrpt.Record(t.Context(), tlsrpt.Result{Time: now, PolicyDomain: "rpt.example",
				PolicyType: tlsrpt.PolicyNoPolicyFound, ResultType: tlsrpt.ResultSuccess}); err != nil {
				t.Fatal(err)
			}
			if err := tr.reporter.ReportDay(t.Context(), today); err != nil {
				t.Fatalf("reportDay: %v", err)
			}
			waitFor(t, "the TLS-RPT report mail", 30*time.Second, func() bool {
				return len(maildirFiles(t, tr.cfg, "tls-reports@localhost", "new")) >= 1
			})
			files := maildirFiles(t, tr.cfg, "tls-reports@localhost", "new")
			msg, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}

			vo := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
				if name != "tlsrpt._domainkey.relay.test" {
					return nil, errors.New("no such record: " + name)
				}
				return []string{tc.record}, nil
			}}
			verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), vo)
			if err != nil || len(verifs) != 1 {
				t.Fatalf("verify: %v %v\n%.600s", verifs, err, msg)
			}
			v := verifs[0]
			if v.Err != nil || v.Domain != "relay.test" {
				t.Fatalf("signature in the Maildir copy does not verify: %+v", v)
			}
			h := strings.ToLower(":" + strings.Join(v.HeaderKeys, ":") + ":")
			for _, want := range []string{"tls-report-domain", "tls-report-submitter", "from", "subject", "content-type"} {
				if !strings.Contains(h, ":"+want+":") {
					t.Errorf("h= %v lacks %s", v.HeaderKeys, want)
				}
			}
			rep, err := tlsrpt.ParseReportMail(bytes.NewReader(msg))
			if err != nil || rep.PolicyDomain() != "rpt.example" || rep.Policies[0].Summary.TotalSuccessfulSessionCount != 1 {
				t.Fatalf("report in the signed mail: %+v %v", rep, err)
			}

			// The same bytes with the policy domain changed do not verify.
			tampered := bytes.Replace(msg, []byte("TLS-Report-Domain: rpt.example"), []byte("TLS-Report-Domain: rpt.example.evil"), 1)
			if bytes.Equal(tampered, msg) {
				t.Fatal("TLS-Report-Domain field not found")
			}
			verifs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), vo)
			if err != nil || len(verifs) != 1 || verifs[0].Err == nil {
				t.Errorf("tampered report verified: %+v %v", verifs, err)
			}
		})
	}
}

// Without -dkim-*, the report mail is not signed.
func TestTLSRPTReportUnsignedByDefault(t *testing.T) {
	dns := &fakeDNS{txt: map[string][]string{
		"_smtp._tls.rpt.example": {"v=TLSRPTv1; rua=mailto:tls-reports@localhost"},
	}}
	tr := startRelayWith(t, func(r *Relay) { r.reporter.Resolver = dns }, "-tlsrpt")
	if tr.reporter.DKIM != nil {
		t.Fatal("reporter has DKIM options without -dkim-*")
	}
	now := time.Now().UTC()
	if err := tr.tlsrpt.Record(t.Context(), tlsrpt.Result{Time: now, PolicyDomain: "rpt.example",
		PolicyType: tlsrpt.PolicyNoPolicyFound, ResultType: tlsrpt.ResultSuccess}); err != nil {
		t.Fatal(err)
	}
	if err := tr.reporter.ReportDay(t.Context(), now.Truncate(24*time.Hour)); err != nil {
		t.Fatalf("reportDay: %v", err)
	}
	waitFor(t, "the TLS-RPT report mail", 30*time.Second, func() bool {
		return len(maildirFiles(t, tr.cfg, "tls-reports@localhost", "new")) >= 1
	})
	msg, err := os.ReadFile(maildirFiles(t, tr.cfg, "tls-reports@localhost", "new")[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(msg, []byte("TLS-Report-Domain: rpt.example")) {
		t.Fatalf("not the report mail:\n%.400s", msg)
	}
	if bytes.Contains(bytes.ToLower(msg), []byte("dkim-signature:")) {
		t.Error("report signed without -dkim-*")
	}
}

// The -dkim-* flags are checked at start, with errors naming the flag
// (certstore.LoadDKIMKey's own cases are in its test).
func TestDKIMFlagErrors(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	good := writePEM(t, "PRIVATE KEY", edDER)

	all := func(key string) []string {
		return []string{"-tlsrpt", "-dkim-domain", "relay.test", "-dkim-selector", "s1", "-dkim-key", key}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-tlsrpt", "-dkim-domain", "relay.test"}, "give all three or none"},
		{[]string{"-tlsrpt", "-dkim-selector", "s1", "-dkim-key", good}, "give all three or none"},
		{all(filepath.Join(t.TempDir(), "missing.pem")), "-dkim-key:"},
		{all(writePEM(t, "PRIVATE KEY", []byte{1, 2, 3})), "-dkim-key:"},
		{[]string{"-tlsrpt", "-dkim-domain", "bad domain", "-dkim-selector", "s1", "-dkim-key", good}, "-dkim-domain:"},
		{[]string{"-tlsrpt", "-dkim-domain", "relay.test", "-dkim-selector", "s;1", "-dkim-key", good}, "-dkim-selector:"},
	} {
		_, err := parseFlags(tc.args, &syncBuffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}

	cfg, err := parseFlags(all(good), &syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.dkimOptions()
	if o == nil || o.Domain != "relay.test" || o.Selector != "s1" || !edPriv.Equal(o.Signer) {
		t.Errorf("dkimOptions: %+v", o)
	}
	cfg, err = parseFlags([]string{"-tlsrpt"}, &syncBuffer{})
	if err != nil || cfg.dkimOptions() != nil {
		t.Errorf("without -dkim-*: %+v %v", cfg, err)
	}
}

// With -dkim-* (and no -tlsrpt) the relay's own delivery status
// notifications are DKIM-signed: a bounce for a TLS failure reaches the
// local sender signed for d=relay.test and verifies.
func TestDSNDKIMSigned(t *testing.T) {
	keyFile, opts := dsnDKIMKey(t)
	raw, _ := bounceToAlice(t, "-dkim-domain", "relay.test", "-dkim-selector", "dsn", "-dkim-key", keyFile)
	if err := contains(string(raw), "DKIM-Signature:", "Status: 5.7.4"); err != nil {
		t.Fatal(err)
	}
	// The Maildir copy starts with the relay's Return-Path; DKIM ignores
	// fields it did not sign.
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), opts)
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "relay.test" {
		t.Fatalf("DSN signature does not verify: %v %+v", err, vs)
	}
}

// dsnDKIMKey writes a fresh Ed25519 key for -dkim-key and returns the file
// with verify options that publish its public key as
// dsn._domainkey.relay.test (and nothing else).
func dsnDKIMKey(t *testing.T) (string, *dkim.VerifyOptions) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	return writePEM(t, "PRIVATE KEY", der), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "dsn._domainkey.relay.test" {
			return nil, fmt.Errorf("unexpected key lookup %q", domain)
		}
		return []string{record}, nil
	}}
}
