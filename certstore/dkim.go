package certstore

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// ValidDKIMName accepts a domain name or selector: dot-separated labels of
// letters, digits and inner hyphens (RFC 6376 §3.1, §3.5).
func ValidDKIMName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// LoadDKIMKey reads a PEM private key usable for DKIM (RFC 6376 §3.3, RFC
// 8463): RSA of at least 1024 bits ("RSA PRIVATE KEY" or "PRIVATE KEY") or
// Ed25519 ("PRIVATE KEY"). Other key types are refused with their name.
// Errors name the file. Give the key to dkim.SignOptions.Signer (the
// queue's and tlsrpt's DKIM options).
func LoadDKIMKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	if block.Type != "RSA PRIVATE KEY" && block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: PEM block %q: want \"PRIVATE KEY\" (PKCS #8) or \"RSA PRIVATE KEY\"", file, block.Type)
	}
	key, err := decodeKey(block)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("%s: RSA key of %d bits; DKIM needs at least 1024 (RFC 8301 §3.2)", file, k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%s: %T keys cannot sign DKIM; use RSA or Ed25519", file, key)
	}
}
