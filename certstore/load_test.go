package certstore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore/certtest"
)

// reencode turns a leaf's PKCS#8 key into the legacy encoding for its type.
func reencode(t *testing.T, l *certtest.Leaf) []byte {
	t.Helper()
	switch k := l.TLS.PrivateKey.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		// openssl ecparam -genkey writes an EC PARAMETERS block first; it must be skipped.
		params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
		return append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	}
	return l.KeyPEM // Ed25519 exists only as PKCS#8
}

func TestLoadKeyTypesAndEncodings(t *testing.T) {
	ca := certtest.MustCA("root")
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		kt   certtest.KeyType
		want string
	}{
		{"rsa", certtest.RSA, "*rsa.PrivateKey"},
		{"ecdsa", certtest.ECDSA, "*ecdsa.PrivateKey"},
		{"ed25519", certtest.Ed25519, "ed25519.PrivateKey"},
	} {
		l := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{tc.name + ".example"}, Key: tc.kt})
		for _, enc := range []string{"pkcs8", "legacy"} {
			certFile, keyFile := writePair(t, dir, tc.name+enc, l)
			if enc == "legacy" {
				writeFile(t, keyFile, reencode(t, l))
			}
			c, err := LoadFiles(certFile, keyFile)
			if err != nil {
				t.Fatalf("%s/%s: %v", tc.name, enc, err)
			}
			if c.Leaf == nil || c.Leaf.SerialNumber.Cmp(l.X509.SerialNumber) != 0 {
				t.Fatalf("%s/%s: wrong leaf", tc.name, enc)
			}
			if got := typeName(c.PrivateKey); got != tc.want {
				t.Fatalf("%s/%s: key type %s, want %s", tc.name, enc, got, tc.want)
			}
		}
	}
	// A combined file: certificate and key in one, KeyFile empty.
	l := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"combined.example"}})
	combined := filepath.Join(dir, "combined.pem")
	writeFile(t, combined, append(append([]byte{}, l.CertPEM...), l.KeyPEM...))
	if _, err := LoadFiles(combined, ""); err != nil {
		t.Fatalf("combined file: %v", err)
	}
}

func typeName(k any) string {
	switch k.(type) {
	case *rsa.PrivateKey:
		return "*rsa.PrivateKey"
	case *ecdsa.PrivateKey:
		return "*ecdsa.PrivateKey"
	case ed25519.PrivateKey:
		return "ed25519.PrivateKey"
	}
	return "other"
}

func TestLoadChainWithIntermediate(t *testing.T) {
	root := certtest.MustCA("root")
	inter, err := root.MustIssue(certtest.LeafOptions{CommonName: "intermediate", IsCA: true}).AsCA()
	if err != nil {
		t.Fatal(err)
	}
	l := inter.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	c, err := ParsePEM(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 {
		t.Fatalf("chain length %d, want 2", len(c.Certificate))
	}
	// With the right roots it verifies; with another CA's roots it does not.
	if _, err := (Loader{Roots: root.Pool}).ParsePEM(l.CertPEM, l.KeyPEM); err != nil {
		t.Fatalf("verify to root: %v", err)
	}
	other := certtest.MustCA("other")
	_, err = (Loader{Roots: other.Pool}).ParsePEM(l.CertPEM, l.KeyPEM)
	var ua x509.UnknownAuthorityError
	if !errors.Is(err, ErrChain) || !errors.As(err, &ua) {
		t.Fatalf("untrusted root: got %v, want ErrChain wrapping x509.UnknownAuthorityError", err)
	}
}

func TestLoadRejects(t *testing.T) {
	ca := certtest.MustCA("root")
	other := certtest.MustCA("other")
	now := time.Now()
	good := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	good2 := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	expired := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"old.example.com"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	future := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"new.example.com"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	interCert := other.MustIssue(certtest.LeafOptions{CommonName: "foreign intermediate", IsCA: true})
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})
	encrypted := []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")

	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      error
		wantFile  string // "cert" or "key": which file the error must name
		wantText  []string
	}{
		{"key mismatch", good.CertPEM, good2.KeyPEM, ErrKeyMismatch, "key", []string{"does not match", ".crt"}},
		{"expired", expired.CertPEM, expired.KeyPEM, ErrExpired, "cert", []string{"validity", "not valid after"}},
		{"not yet valid", future.CertPEM, future.KeyPEM, ErrNotYetValid, "cert", []string{"not valid before"}},
		{"broken chain", append(append([]byte{}, good.CertPEM...), interCert.CertPEM...), good.KeyPEM, ErrChain, "cert", []string{"certificate 1", "is not signed by certificate 2"}},
		{"no certificate", good.KeyPEM, good.KeyPEM, ErrNoCertificate, "cert", []string{"no CERTIFICATE"}},
		{"no key", good.CertPEM, []byte("not pem at all"), ErrNoKey, "key", []string{"no PRIVATE KEY"}},
		{"two keys", good.CertPEM, append(append([]byte{}, good.KeyPEM...), good.KeyPEM...), ErrUnsupportedKey, "key", []string{"2 private keys"}},
		{"encrypted key", good.CertPEM, encrypted, ErrUnsupportedKey, "key", []string{"encrypted"}},
		{"weak rsa", good.CertPEM, weakPEM, ErrWeakKey, "key", []string{"1024 bits"}},
		{"garbage certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), good.KeyPEM, ErrNoCertificate, "cert", []string{"certificate 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certFile := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".crt")
			keyFile := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".key")
			writeFile(t, certFile, tc.cert)
			writeFile(t, keyFile, tc.key)
			c, err := LoadFiles(certFile, keyFile)
			if err == nil {
				t.Fatalf("loaded %v, want error %v", c.Leaf.Subject, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *certstore.Error", err)
			}
			wantFile := certFile
			if tc.wantFile == "key" {
				wantFile = keyFile
			}
			if ce.File != wantFile {
				t.Fatalf("Error.File = %q, want %q", ce.File, wantFile)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "certstore: "+wantFile+": ") {
				t.Fatalf("message %q does not start with the file name", msg)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(msg, s) {
					t.Fatalf("message %q lacks %q", msg, s)
				}
			}
			// The same bytes through ParsePEM fail the same way, without a file name.
			if _, err := ParsePEM(tc.cert, tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("ParsePEM: %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := LoadFiles(filepath.Join(dir, "nope.crt"), filepath.Join(dir, "nope.key"))
		var ce *Error
		if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &ce) || ce.Op != "read" || !strings.HasSuffix(ce.File, "nope.crt") {
			t.Fatalf("got %v", err)
		}
	})
}

// The Now seam moves the clock: a certificate valid today is expired next
// year and not yet valid last year; an intermediate that expires before its
// leaf is caught as certificate 2.
func TestLoadNowSeam(t *testing.T) {
	root := certtest.MustCA("root")
	now := time.Now()
	interLeaf := root.MustIssue(certtest.LeafOptions{CommonName: "short-lived intermediate", IsCA: true, NotAfter: now.Add(24 * time.Hour)})
	inter, err := interLeaf.AsCA()
	if err != nil {
		t.Fatal(err)
	}
	l := inter.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}, NotAfter: now.Add(72 * time.Hour)})
	if _, err := (Loader{Now: func() time.Time { return now }}).ParsePEM(l.CertPEM, l.KeyPEM); err != nil {
		t.Fatalf("today: %v", err)
	}
	_, err = (Loader{Now: func() time.Time { return now.Add(48 * time.Hour) }}).ParsePEM(l.CertPEM, l.KeyPEM)
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "certificate 2") {
		t.Fatalf("intermediate expired: got %v", err)
	}
	_, err = (Loader{Now: func() time.Time { return now.Add(-48 * time.Hour) }}).ParsePEM(l.CertPEM, l.KeyPEM)
	if !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("last year: got %v", err)
	}
}

func TestValidateInMemory(t *testing.T) {
	ca := certtest.MustCA("root")
	a := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"a.example"}})
	b := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"b.example"}})
	c := a.TLS
	c.Leaf = nil
	if err := (Loader{}).Validate(&c); err != nil || c.Leaf == nil {
		t.Fatalf("Validate: %v (leaf %v)", err, c.Leaf)
	}
	bad := a.TLS
	bad.PrivateKey = b.TLS.PrivateKey
	if err := (Loader{}).Validate(&bad); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
}

// opaqueSigner is a crypto.Signer of a type the package does not know, as
// a hardware key would be.
type opaqueSigner struct{ crypto.Signer }

// TestValidateRejectsOpaqueSigner: a key whose strength cannot be checked
// is refused, as the package doc says, even when it matches.
func TestValidateRejectsOpaqueSigner(t *testing.T) {
	ca := certtest.MustCA("root")
	a := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"a.example"}})
	c := a.TLS
	c.PrivateKey = opaqueSigner{a.TLS.PrivateKey.(crypto.Signer)}
	if err := (Loader{}).Validate(&c); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("opaque signer: %v, want ErrUnsupportedKey", err)
	}
	if err := (&Store{Sources: []Source{{Certificate: &c}}}).Reload(); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("opaque signer in a Source: %v, want ErrUnsupportedKey", err)
	}
}
