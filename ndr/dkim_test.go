package ndr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// TestDKIMSigned: with a key, the report carries a DKIM-Signature that
// go-msgauth verifies against the matching public key record, and altering
// the report breaks it.
func TestDKIMSigned(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	r := fullReport("ja")
	r.DKIM = &dkim.SignOptions{Domain: "mta.example.com", Selector: "ndr", Signer: priv}
	msg := buildOrFatal(t, r)
	if !bytes.HasPrefix(msg, []byte("DKIM-Signature:")) {
		t.Fatalf("no DKIM-Signature at the top:\n%.200s", msg)
	}
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	opts := &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "ndr._domainkey.mta.example.com" {
			return nil, errors.New("no such record")
		}
		return []string{record}, nil
	}}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), opts)
	if err != nil || len(verifs) != 1 {
		t.Fatalf("verify: %v %v", verifs, err)
	}
	if verifs[0].Err != nil || verifs[0].Domain != "mta.example.com" {
		t.Errorf("signature does not verify: %+v", verifs[0])
	}
	tampered := bytes.Replace(msg, []byte("Action: failed"), []byte("Action: delivered"), 1)
	verifs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), opts)
	if err != nil || len(verifs) != 1 || verifs[0].Err == nil {
		t.Errorf("tampered report verified: %+v %v", verifs, err)
	}
	// The signed report is still a valid report.
	parts := mimeParts(t, msg)
	checkDeliveryStatusGrammar(t, parts[1].body)

	// A signer without a domain is an error, not an unsigned report.
	r = fullReport("en")
	r.DKIM = &dkim.SignOptions{Selector: "ndr", Signer: priv}
	if _, err := r.Build(); err == nil {
		t.Error("DKIM options without Domain accepted")
	}
}
