// Package certtest is a small certificate authority for tests, as
// net/http/httptest is a small HTTP server: it issues CA, server and
// client certificates (RFC 5280) on demand, including deliberately bad
// ones (another name, expired, untrusted), and the tls.Configs that use
// them. transporttest's fixtures use it; it has no dependency on the rest
// of the module, so that every package's tests can.
//
// Nothing here is meant for production keys.
package certtest

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

// KeyType selects the algorithm of a generated key. The zero value is
// ECDSA P-256.
type KeyType int

// Key types.
const (
	ECDSA KeyType = iota // P-256
	RSA                  // 2048 bits
	Ed25519
)

// CA is a test certificate authority: a self-signed root (NewCA) or an
// intermediate (Leaf.AsCA) that issues server and client certificates on
// demand. Its keys are made fresh for each CA.
type CA struct {
	// Cert is the CA's certificate and Key its private key.
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is Cert in PEM form, for a file a peer reads (Postfix's
	// smtp_tls_CAfile, swaks --tls-ca-path).
	CertPEM []byte
	// Pool holds only this CA's certificate, for a tls.Config's RootCAs
	// (servers it issued are trusted) or ClientCAs (clients it issued are).
	Pool *x509.CertPool
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	// TLS is ready for tls.Config.Certificates: the leaf, then the
	// intermediate when the issuer is one (RFC 8446 §4.4.2).
	TLS tls.Certificate
	// X509 is the parsed leaf.
	X509 *x509.Certificate
	// CertPEM is the leaf (and the intermediate, as in TLS) in PEM form.
	CertPEM []byte
	// KeyPEM is the private key, PKCS#8 in PEM form.
	KeyPEM []byte
}

// LeafOptions describes a certificate to issue (RFC 5280 §4.1). The zero
// value is a server certificate without names, valid from an hour ago for
// a day, with an ECDSA P-256 key.
type LeafOptions struct {
	// CommonName is the subject's CN. Empty means the first of DNSNames.
	CommonName string
	// DNSNames and IPs are the subject alternative names (RFC 5280
	// §4.2.1.6) a client checks (RFC 6125 §6).
	DNSNames []string
	IPs      []net.IP
	// NotBefore and NotAfter bound the validity. Zero means an hour ago
	// and a day from now.
	NotBefore, NotAfter time.Time
	// Key selects the key algorithm.
	Key KeyType
	// Client adds the clientAuth extended key usage (serverAuth is always
	// set), for a certificate a client presents.
	Client bool
	// IsCA issues an intermediate CA instead of a leaf (see Leaf.AsCA).
	IsCA bool
}

// LocalhostNames are the names a certificate from CA.IssueLocalhost is
// valid for: the loopback name (RFC 6761 §6.3) and the IPv4 and IPv6
// loopback addresses (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3), so that a
// client may dial 127.0.0.1, [::1] or localhost.
var LocalhostNames = []string{"localhost", "127.0.0.1", "::1"}

// IssueLocalhost issues a server certificate valid for LocalhostNames.
func (ca *CA) IssueLocalhost() (*Leaf, error) {
	return ca.Issue(LeafOptions{DNSNames: []string{LocalhostNames[0]},
		IPs: []net.IP{net.ParseIP(LocalhostNames[1]), net.ParseIP(LocalhostNames[2])}})
}

// ClientTLSConfig returns a client configuration that trusts this CA only
// and checks that the server's certificate is valid for serverName (a host
// name or an IP address), with TLS 1.2 as the minimum (RFC 9325 §3.1.1).
// It is a new value each time; change it freely.
func (ca *CA) ClientTLSConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// ServerTLSConfig returns a server configuration presenting this
// certificate, with TLS 1.2 as the minimum (RFC 9325 §3.1.1). It is a new
// value each time.
func (l *Leaf) ServerTLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{l.TLS}, MinVersion: tls.VersionTLS12}
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

// NewCA creates a fresh self-signed root CA (ECDSA P-256, valid for ten
// years) with name as its common name.
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

// MustCA is NewCA that panics on error, for test set-up (only a failing
// crypto/rand makes NewCA fail).
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

// AsCA turns an intermediate issued with LeafOptions.IsCA into a CA; the
// certificates it issues carry the intermediate in their chain. It fails
// for a certificate that is not a CA.
func (l *Leaf) AsCA() (*CA, error) {
	if !l.X509.IsCA {
		return nil, errors.New("certtest: certificate is not a CA")
	}
	signer, ok := l.TLS.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("certtest: key is not a signer")
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
		return nil, fmt.Errorf("certtest: %w", err)
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
