// Package testpki is a small certificate authority for the module's tests and
// for transporttest: it issues CA, server and client certificates on demand,
// including deliberately bad ones (wrong name, expired, untrusted).
//
// Nothing here is meant for production keys.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyType selects the algorithm of a generated key. The zero value is ECDSA P-256.
type KeyType int

// Key types.
const (
	ECDSA KeyType = iota
	RSA
	Ed25519
)

// CA is a test certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	// Pool holds only this CA's certificate, for RootCAs or ClientCAs.
	Pool *x509.CertPool
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	// TLS is ready for tls.Config.Certificates (leaf then intermediates).
	TLS     tls.Certificate
	X509    *x509.Certificate
	CertPEM []byte // leaf (and chain, when issued by an intermediate)
	KeyPEM  []byte // PKCS#8
}

// LeafOptions describes a certificate to issue. Zero NotBefore/NotAfter mean
// "valid from an hour ago for a day".
type LeafOptions struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	NotBefore  time.Time
	NotAfter   time.Time
	Key        KeyType
	// Client adds the clientAuth extended key usage (serverAuth is always set).
	Client bool
	// IsCA issues an intermediate CA instead of a leaf.
	IsCA bool
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case RSA:
		return rsa.GenerateKey(rand.Reader, 2048)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// NewCA creates a self-signed ECDSA root CA named name.
func NewCA(name string) (*CA, error) {
	key, err := newKey(ECDSA)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"mailtls test PKI"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, CertPEM: pemCert(der), Pool: pool}, nil
}

// MustCA is NewCA for tests; it panics on error (only a broken crypto/rand fails).
func MustCA(name string) *CA {
	ca, err := NewCA(name)
	if err != nil {
		panic(err)
	}
	return ca
}

// Issue signs a certificate described by o.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	return issue(ca.Cert, ca.Key, o)
}

// MustIssue is Issue that panics on error.
func (ca *CA) MustIssue(o LeafOptions) *Leaf {
	l, err := ca.Issue(o)
	if err != nil {
		panic(err)
	}
	return l
}

// AsCA turns an intermediate Leaf (issued with IsCA) into a CA that can issue
// further certificates; leaves it issues carry the intermediate in their chain.
func (l *Leaf) AsCA() (*CA, error) {
	if !l.X509.IsCA {
		return nil, errors.New("testpki: certificate is not a CA")
	}
	signer, ok := l.TLS.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("testpki: key is not a signer")
	}
	pool := x509.NewCertPool()
	pool.AddCert(l.X509)
	return &CA{Cert: l.X509, Key: signer, CertPEM: l.CertPEM, Pool: pool}, nil
}

func issue(parent *x509.Certificate, parentKey crypto.Signer, o LeafOptions) (*Leaf, error) {
	key, err := newKey(o.Key)
	if err != nil {
		return nil, err
	}
	nb, na := o.NotBefore, o.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(24 * time.Hour)
	}
	cn := o.CommonName
	if cn == "" && len(o.DNSNames) > 0 {
		cn = o.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if o.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if o.IsCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	if parent == nil { // self-signed
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{der}
	certPEM := pemCert(der)
	if parent != tmpl && !parent.Equal(cert) && parent.Issuer.String() != parent.Subject.String() {
		// Issued by an intermediate: ship the intermediate too.
		chain = append(chain, parent.Raw)
		certPEM = append(certPEM, pemCert(parent.Raw)...)
	}
	return &Leaf{
		TLS:     tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert},
		X509:    cert,
		CertPEM: certPEM,
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// SelfSigned issues a self-signed ECDSA certificate for names (which may
// include IP addresses in text form).
func SelfSigned(names ...string) (*Leaf, error) {
	o := LeafOptions{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			o.IPs = append(o.IPs, ip)
		} else {
			o.DNSNames = append(o.DNSNames, n)
		}
	}
	return issue(nil, nil, o)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
