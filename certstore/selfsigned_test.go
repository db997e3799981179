package certstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateSelfSigned(t *testing.T) {
	c, err := GenerateSelfSigned([]string{"mx.example.com", "*.example.net", "127.0.0.1", "::1"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", c.PrivateKey)
	}
	l := c.Leaf
	if l.Subject.CommonName != "mx.example.com" || len(l.DNSNames) != 2 || len(l.IPAddresses) != 2 {
		t.Fatalf("names: CN %q DNS %v IP %v", l.Subject.CommonName, l.DNSNames, l.IPAddresses)
	}
	if d := time.Until(l.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Fatalf("NotAfter in %v", d)
	}
	if time.Since(l.NotBefore) < 59*time.Minute {
		t.Fatalf("NotBefore %v leaves no room for clock skew", l.NotBefore)
	}
	// It verifies as a self-signed server and client certificate for its names.
	pool := x509.NewCertPool()
	pool.AddCert(l)
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := l.Verify(x509.VerifyOptions{Roots: pool, DNSName: "a.example.net", KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Fatalf("usage %v: %v", eku, err)
		}
	}
	if err := l.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateSelfSigned(nil, 0); err == nil {
		t.Fatal("no names accepted")
	}
	d, err := GenerateSelfSigned([]string{"x.example"}, 0)
	if err != nil || time.Until(d.Leaf.NotAfter) < 89*24*time.Hour {
		t.Fatalf("default validity: %v %v", err, d.Leaf.NotAfter)
	}
}

func TestWriteAndEnsureSelfSigned(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	created, err := EnsureSelfSigned(certFile, keyFile, []string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil || !created {
		t.Fatalf("first Ensure: %v %v", created, err)
	}
	for f, want := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Fatalf("%s mode %v, want %v", f, fi.Mode().Perm(), want)
		}
	}
	c1, err := LoadFiles(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	created, err = EnsureSelfSigned(certFile, keyFile, []string{"localhost"}, time.Hour)
	if err != nil || created {
		t.Fatalf("second Ensure replaced existing files: %v %v", created, err)
	}
	c2, _ := LoadFiles(certFile, keyFile)
	if c1.Leaf.SerialNumber.Cmp(c2.Leaf.SerialNumber) != 0 {
		t.Fatal("existing certificate changed")
	}
	if err := WriteSelfSigned(certFile, keyFile, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	c3, err := LoadFiles(certFile, keyFile)
	if err != nil || c3.Leaf.SerialNumber.Cmp(c1.Leaf.SerialNumber) == 0 {
		t.Fatalf("WriteSelfSigned did not replace: %v", err)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("directory holds %d entries", len(ents))
	}
	if err := WriteSelfSigned(filepath.Join(dir, "nodir", "c.pem"), filepath.Join(dir, "nodir", "k.pem"), []string{"x"}, 0); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
