package certstore

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeKeyPEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// LoadDKIMKey takes Ed25519 (PKCS #8) and RSA of 1024 bits or more (PKCS
// #1 or #8), and refuses everything else with the file and the reason.
func TestLoadDKIMKey(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	good, _ := rsa.GenerateKey(rand.Reader, 1024)
	notPEM := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(notPEM, []byte("not a key"), 0o600)

	for _, file := range []string{writeKeyPEM(t, "PRIVATE KEY", edDER), writeKeyPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(good))} {
		if k, err := LoadDKIMKey(file); err != nil || k == nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	encrypted := filepath.Join(t.TempDir(), "encrypted.pem")
	os.WriteFile(encrypted, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"},
		Bytes: x509.MarshalPKCS1PrivateKey(good)}), 0o600)
	if _, err := LoadDKIMKey(encrypted); !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), "encrypted.pem: ") ||
		!strings.Contains(err.Error(), "key is encrypted") {
		t.Errorf("LoadDKIMKey(encrypted) = %v, want ErrUnsupportedKey naming the file", err)
	}
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(t.TempDir(), "missing.pem"), "missing.pem"},
		{notPEM, "no PEM block"},
		{writeKeyPEM(t, "CERTIFICATE", []byte{1, 2, 3}), `"CERTIFICATE"`},
		{writeKeyPEM(t, "PRIVATE KEY", ecDER), "cannot sign DKIM"},
		{writeKeyPEM(t, "PRIVATE KEY", []byte{1, 2, 3}), "key.pem"},
	} {
		if _, err := LoadDKIMKey(tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadDKIMKey(%s) = %v, want an error mentioning %q", tc.file, err, tc.want)
		}
	}
}

func TestValidDKIMName(t *testing.T) {
	for s, want := range map[string]bool{
		"relay.test": true, "s1": true, "a-b.example": true, "": false, "bad domain": false, "s;1": false,
		"-a.example": false, "a-.example": false, "a..example": false, strings.Repeat("a", 64): false,
	} {
		if got := ValidDKIMName(s); got != want {
			t.Errorf("ValidDKIMName(%q) = %v, want %v", s, got, want)
		}
	}
}
