package transporttest

import "github.com/mailtls/mailtls/certstore/certtest"

// The certificate authority of the fixtures is package certtest; these
// names are its, so that a test needs one import.
type (
	// CA is certtest.CA: a test certificate authority.
	CA = certtest.CA
	// Leaf is certtest.Leaf: an issued certificate with its key.
	Leaf = certtest.Leaf
	// LeafOptions is certtest.LeafOptions: a certificate to issue.
	LeafOptions = certtest.LeafOptions
	// KeyType is certtest.KeyType: the algorithm of a generated key.
	KeyType = certtest.KeyType
)

// Key types (certtest's).
const (
	ECDSA   = certtest.ECDSA
	RSA     = certtest.RSA
	Ed25519 = certtest.Ed25519
)

// LocalhostNames are certtest.LocalhostNames, the names of a certificate
// from CA.IssueLocalhost.
var LocalhostNames = certtest.LocalhostNames

// NewCA is certtest.NewCA: a fresh self-signed root CA.
func NewCA(name string) (*CA, error) { return certtest.NewCA(name) }

// MustCA is certtest.MustCA: NewCA that panics on error.
func MustCA(name string) *CA { return certtest.MustCA(name) }
