package transporttest

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"time"

	"github.com/mailtls/mailtls/internal/testpki"
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
// demand, including deliberately bad ones (another name, expired). Its keys
// are made fresh for each CA and are not meant for production.
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

// NewCA creates a fresh self-signed root CA (ECDSA P-256, valid for ten
// years) with name as its common name.
func NewCA(name string) (*CA, error) {
	ca, err := testpki.NewCA(name)
	if err != nil {
		return nil, err
	}
	return (*CA)(ca), nil
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

func (ca *CA) pki() *testpki.CA { return (*testpki.CA)(ca) }

func (o LeafOptions) pki() testpki.LeafOptions {
	return testpki.LeafOptions{CommonName: o.CommonName, DNSNames: o.DNSNames, IPs: o.IPs,
		NotBefore: o.NotBefore, NotAfter: o.NotAfter, Key: testpki.KeyType(o.Key), Client: o.Client, IsCA: o.IsCA}
}

// Issue signs a certificate described by o.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	l, err := ca.pki().Issue(o.pki())
	if err != nil {
		return nil, err
	}
	return (*Leaf)(l), nil
}

// MustIssue is Issue that panics on error.
func (ca *CA) MustIssue(o LeafOptions) *Leaf {
	l, err := ca.Issue(o)
	if err != nil {
		panic(err)
	}
	return l
}

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

// AsCA turns an intermediate issued with LeafOptions.IsCA into a CA; the
// certificates it issues carry the intermediate in their chain. It fails
// for a certificate that is not a CA.
func (l *Leaf) AsCA() (*CA, error) {
	ca, err := (*testpki.Leaf)(l).AsCA()
	if err != nil {
		return nil, err
	}
	return (*CA)(ca), nil
}
