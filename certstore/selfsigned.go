package certstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// GenerateSelfSignedPEM creates a self-signed ECDSA P-256 certificate for
// development and tests, valid from one hour ago (to tolerate clock skew)
// for validity (zero means 90 days). names are DNS names (wildcards allowed)
// or IP addresses in text form; the first one is also the subject common
// name. The certificate carries the serverAuth and clientAuth extended key
// usages, so it works for inbound TLS and for outbound mutual TLS. The key is
// returned as PKCS#8 (RFC 5208, RFC 7468 Section 10).
//
// No client that verifies certificates (Verify level and above) will trust
// it; it is for the Encrypt level, opportunistic TLS and tests.
func GenerateSelfSignedPEM(names []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, &Error{Op: "config", Err: errors.New("GenerateSelfSigned needs at least one name")}
	}
	if validity <= 0 {
		validity = 90 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certstore: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// GenerateSelfSigned is GenerateSelfSignedPEM returning a tls.Certificate
// ready for a Source or tls.Config (Leaf set).
func GenerateSelfSigned(names []string, validity time.Duration) (*tls.Certificate, error) {
	c, k, err := GenerateSelfSignedPEM(names, validity)
	if err != nil {
		return nil, err
	}
	return ParsePEM(c, k)
}

// WriteSelfSigned generates a certificate as GenerateSelfSignedPEM does and
// writes it to certFile (mode 0644) and keyFile (mode 0600), each through a
// temporary file in the same directory renamed into place, so a concurrent
// reader (or Watch) never sees half a file. Existing files are replaced;
// see EnsureSelfSigned to keep them.
func WriteSelfSigned(certFile, keyFile string, names []string, validity time.Duration) error {
	c, k, err := GenerateSelfSignedPEM(names, validity)
	if err != nil {
		return err
	}
	// Key first: a watcher that sees the new certificate before its key
	// would log one failed reload; the other order fails the same way, but
	// the key must never be world-readable even briefly, which CreateTemp's
	// 0600 guarantees.
	if err := writeAtomic(keyFile, k, 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, c, 0o644)
}

// EnsureSelfSigned calls WriteSelfSigned unless both files already exist. It
// reports whether it created them. Existing files are not validated here;
// loading them (LoadFiles, New, Reload) does that.
func EnsureSelfSigned(certFile, keyFile string, names []string, validity time.Duration) (created bool, err error) {
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	if errC == nil && errK == nil {
		return false, nil
	}
	for _, e := range []error{errC, errK} {
		if e != nil && !errors.Is(e, fs.ErrNotExist) {
			return false, &Error{File: certFile, Op: "read", Err: e}
		}
	}
	if err := WriteSelfSigned(certFile, keyFile, names, validity); err != nil {
		return false, err
	}
	return true, nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return &Error{File: path, Op: "write", Err: err}
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return &Error{File: path, Op: "write", Err: err}
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return &Error{File: path, Op: "write", Err: err}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return &Error{File: path, Op: "write", Err: err}
	}
	return nil
}
