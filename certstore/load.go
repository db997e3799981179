package certstore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"iter"
	"os"
	"time"
)

// Loader reads and validates certificate and key PEM. The zero value is
// ready to use and strict: keys must match, every certificate in the file must
// be within its validity period now, and each certificate must be signed by
// the next one. A Loader holds no state and is safe for concurrent use.
type Loader struct {
	// Now returns the time used to check validity periods. nil means
	// time.Now. Tests set it to move the clock.
	Now func() time.Time
	// Roots, if non-nil, additionally requires that the chain in the file
	// verify to one of these trust anchors (RFC 5280, Section 6) at Now,
	// with the file's later certificates as intermediates. nil means only
	// the in-file chain is checked, which accepts self-signed certificates
	// and private CAs.
	Roots *x509.CertPool
}

func (l Loader) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// ParsePEM parses and validates PEM with the zero Loader; see Loader.ParsePEM.
func ParsePEM(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	return Loader{}.ParsePEM(certPEM, keyPEM)
}

// LoadFiles loads and validates files with the zero Loader; see Loader.LoadFiles.
func LoadFiles(certFile, keyFile string) (*tls.Certificate, error) {
	return Loader{}.LoadFiles(certFile, keyFile)
}

// ParsePEM parses certPEM (the leaf certificate followed by its
// intermediates, RFC 8446 Section 4.4.2 order) and keyPEM (one private key:
// PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY";
// RSA, ECDSA or Ed25519) and validates them as described on Loader. If
// keyPEM is nil the key is looked for in certPEM, for combined files. Other
// PEM blocks (such as "EC PARAMETERS") are ignored. Input may be untrusted:
// it is only parsed, never executed or fetched from.
//
// Errors are *Error values wrapping ErrNoCertificate, ErrNoKey,
// ErrUnsupportedKey, ErrWeakKey, ErrKeyMismatch, ErrExpired, ErrNotYetValid
// or ErrChain.
func (l Loader) ParsePEM(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	return l.parse(certPEM, keyPEM, "", "")
}

// LoadFiles reads certFile and keyFile and validates them as ParsePEM does.
// keyFile may be empty when the key is in certFile. Errors name the file at
// fault.
func (l Loader) LoadFiles(certFile, keyFile string) (*tls.Certificate, error) {
	c, _, err := l.loadFiles(certFile, keyFile)
	return c, err
}

// loadFiles also returns the raw bytes read, keyed by path, for change detection.
func (l Loader) loadFiles(certFile, keyFile string) (*tls.Certificate, map[string][]byte, error) {
	raw := make(map[string][]byte, 2)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, &Error{File: certFile, Op: "read", Err: err}
	}
	raw[certFile] = certPEM
	var keyPEM []byte
	if keyFile != "" {
		keyPEM, err = os.ReadFile(keyFile)
		if err != nil {
			return nil, nil, &Error{File: keyFile, Op: "read", Err: err}
		}
		raw[keyFile] = keyPEM
	}
	c, err := l.parse(certPEM, keyPEM, certFile, keyFile)
	return c, raw, err
}

func (l Loader) parse(certPEM, keyPEM []byte, certFile, keyFile string) (*tls.Certificate, error) {
	var ders [][]byte
	var keyBlocks []*pem.Block
	for b := range pemBlocks(certPEM) {
		switch {
		case b.Type == "CERTIFICATE":
			ders = append(ders, b.Bytes)
		case isKeyType(b.Type):
			keyBlocks = append(keyBlocks, b)
		}
	}
	if len(ders) == 0 {
		return nil, &Error{File: certFile, Op: "parse", Err: fmt.Errorf("%w: no CERTIFICATE PEM block found", ErrNoCertificate)}
	}
	keySrc := certFile
	if keyPEM != nil {
		keySrc = keyFile
		keyBlocks = nil
		for b := range pemBlocks(keyPEM) {
			if isKeyType(b.Type) {
				keyBlocks = append(keyBlocks, b)
			}
		}
	}
	switch len(keyBlocks) {
	case 0:
		return nil, &Error{File: keySrc, Op: "parse", Err: fmt.Errorf("%w: no PRIVATE KEY PEM block found", ErrNoKey)}
	case 1:
	default:
		return nil, &Error{File: keySrc, Op: "parse", Err: fmt.Errorf("%w: %d private keys in one file, want one", ErrUnsupportedKey, len(keyBlocks))}
	}
	key, err := parseKey(keyBlocks[0])
	if err != nil {
		return nil, &Error{File: keySrc, Op: "parse", Err: err}
	}
	certs := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, &Error{File: certFile, Op: "parse", Err: fmt.Errorf("%w: certificate %d: %w", ErrNoCertificate, i+1, err)}
		}
		certs[i] = c
	}
	tc := &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: certs[0]}
	if err := l.check(tc, certs, certFile, keySrc); err != nil {
		return nil, err
	}
	return tc, nil
}

// Validate applies the Loader's checks to a certificate built elsewhere
// (for example by tls.X509KeyPair or GenerateSelfSigned): key type and
// strength, key match, validity at Now and chain. It parses c.Certificate
// and, on success, sets c.Leaf when it was nil.
func (l Loader) Validate(c *tls.Certificate) error {
	if c == nil || len(c.Certificate) == 0 {
		return &Error{Op: "parse", Err: ErrNoCertificate}
	}
	certs := make([]*x509.Certificate, len(c.Certificate))
	for i, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return &Error{Op: "parse", Err: fmt.Errorf("%w: certificate %d: %w", ErrNoCertificate, i+1, err)}
		}
		certs[i] = x
	}
	if c.PrivateKey == nil {
		return &Error{Op: "parse", Err: ErrNoKey}
	}
	if err := checkKeyType(c.PrivateKey); err != nil {
		return &Error{Op: "parse", Err: err}
	}
	if err := l.check(c, certs, "", ""); err != nil {
		return err
	}
	if c.Leaf == nil {
		c.Leaf = certs[0]
	}
	return nil
}

func (l Loader) check(c *tls.Certificate, certs []*x509.Certificate, certFile, keyFile string) error {
	leaf := certs[0]
	// Key match: the private key's public half must be the leaf's key.
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	signer, sok := c.PrivateKey.(crypto.Signer)
	if !ok || !sok || !pub.Equal(signer.Public()) {
		f := keyFile
		if f == "" {
			f = certFile
		}
		detail := ""
		if certFile != "" && keyFile != "" && certFile != keyFile {
			detail = " in " + certFile
		}
		return &Error{File: f, Op: "key", Err: fmt.Errorf("%w%s (%s)", ErrKeyMismatch, detail, describe(leaf))}
	}
	// Validity period of every certificate in the file, RFC 5280 Section 4.1.2.5.
	now := l.now()
	for i, x := range certs {
		if now.After(x.NotAfter) {
			return &Error{File: certFile, Op: "validity", Err: fmt.Errorf("%w: certificate %d (%s) not valid after %s (now %s)",
				ErrExpired, i+1, describe(x), x.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
		}
		if now.Before(x.NotBefore) {
			return &Error{File: certFile, Op: "validity", Err: fmt.Errorf("%w: certificate %d (%s) not valid before %s (now %s)",
				ErrNotYetValid, i+1, describe(x), x.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
		}
	}
	// Chain order: each certificate signed by the next (RFC 8446 Section
	// 4.4.2 lets peers be lenient, but a misordered or foreign file is almost
	// always an operator mistake that some clients will reject).
	for i := 0; i+1 < len(certs); i++ {
		child, parent := certs[i], certs[i+1]
		if err := child.CheckSignatureFrom(parent); err != nil {
			return &Error{File: certFile, Op: "chain", Err: fmt.Errorf("%w: certificate %d (%s) is not signed by certificate %d (%s): %w",
				ErrChain, i+1, describe(child), i+2, describe(parent), err)}
		}
	}
	if l.Roots != nil {
		inter := x509.NewCertPool()
		for _, x := range certs[1:] {
			inter.AddCert(x)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         l.Roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return &Error{File: certFile, Op: "chain", Err: fmt.Errorf("%w: does not verify to the configured roots: %w", ErrChain, err)}
		}
	}
	return nil
}

// pemBlocks yields the PEM blocks of data in order (RFC 7468), skipping
// text between them.
func pemBlocks(data []byte) iter.Seq[*pem.Block] {
	return func(yield func(*pem.Block) bool) {
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil || !yield(b) {
				return
			}
		}
	}
}

func describe(x *x509.Certificate) string {
	s := "subject " + x.Subject.String()
	if x.Subject.String() == "" && len(x.DNSNames) > 0 {
		s = "DNS " + x.DNSNames[0]
	}
	return fmt.Sprintf("%s, serial %s", s, x.SerialNumber.Text(16))
}

func isKeyType(t string) bool {
	switch t {
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return true
	}
	return false
}

// parseKey decodes one key block. The label chooses the format, as in RFC
// 7468 Section 10 (PKCS#8), RFC 8017 Appendix A.1.2 (PKCS#1) and RFC 5915
// (SEC1).
func parseKey(b *pem.Block) (crypto.PrivateKey, error) {
	key, err := decodeKey(b)
	if err != nil {
		return nil, err
	}
	if err := checkKeyType(key); err != nil {
		return nil, err
	}
	return key, nil
}

// decodeKey decodes one key block by its label, without judging the key:
// "RSA PRIVATE KEY" is PKCS#1, "EC PRIVATE KEY" SEC1, anything else PKCS#8.
// Encrypted keys are an ErrUnsupportedKey error.
func decodeKey(b *pem.Block) (crypto.PrivateKey, error) {
	if _, encrypted := b.Headers["Proc-Type"]; encrypted || b.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("%w: key is encrypted; store it unencrypted with restricted permissions", ErrUnsupportedKey)
	}
	var key crypto.PrivateKey
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnsupportedKey, b.Type, err)
	}
	return key, nil
}

func checkKeyType(key crypto.PrivateKey) error {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		// RFC 9325, Section 4.4: RSA keys of at least 2048 bits.
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits, want at least 2048 (RFC 9325, Section 4.4)", ErrWeakKey, k.N.BitLen())
		}
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return fmt.Errorf("%w: key type %T", ErrUnsupportedKey, key)
	}
	return nil
}
