package queue

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailtls/mailtls/transport"
)

// With Queue.DKIM set, the reports the queue builds carry a DKIM signature
// (RFC 6376) that verifies against the signer's public key, and a changed
// report no longer verifies.
func TestReportsDKIMSigned(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	h := newHarness(t, func(string, int) transport.RecipientResult { return tlsFailure(transport.Failed) })
	h.q.DelayWarning = -1
	h.q.DKIM = &dkim.SignOptions{Domain: "relay.example", Selector: "dsn", Signer: priv}
	h.run()
	h.enqueue("alice@example.org", rcpt("bob@legacy.example"))
	h.waitFor("failed report", func() bool { return len(h.fake.rawReports()) == 1 })
	raw := h.fake.rawReports()[0]
	if !bytes.HasPrefix(raw, []byte("DKIM-Signature:")) {
		t.Fatalf("report is not signed:\n%.300s", raw)
	}

	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	opts := &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "dsn._domainkey.relay.example" {
			t.Errorf("key looked up at %q", domain)
		}
		return []string{record}, nil
	}}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), opts)
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "relay.example" {
		t.Fatalf("verification: %v %+v", err, vs)
	}
	tampered := bytes.Replace(raw, []byte("bob@legacy.example"), []byte("eve@legacy.example"), 1)
	vs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), opts)
	if err != nil || len(vs) != 1 || vs[0].Err == nil {
		t.Fatalf("a changed report still verifies: %v %+v", err, vs)
	}
}
