package certtest

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestIssueVerifies(t *testing.T) {
	ca := MustCA("root")
	for _, kt := range []KeyType{ECDSA, RSA, Ed25519} {
		l := ca.MustIssue(LeafOptions{DNSNames: []string{"mx.example.com"}, Key: kt})
		if _, err := l.X509.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "mx.example.com"}); err != nil {
			t.Fatalf("key type %d: %v", kt, err)
		}
		if _, err := l.X509.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "other.example"}); err == nil {
			t.Fatalf("wrong name verified")
		}
	}
	exp := ca.MustIssue(LeafOptions{DNSNames: []string{"a.example"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if _, err := exp.X509.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "a.example"}); err == nil {
		t.Fatal("expired certificate verified")
	}
	ss, err := SelfSigned("localhost", "127.0.0.1")
	if err != nil || len(ss.X509.IPAddresses) != 1 || ss.X509.DNSNames[0] != "localhost" {
		t.Fatalf("self-signed: %v %+v", err, ss)
	}
}
