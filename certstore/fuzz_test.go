package certstore

import (
	"crypto"
	"errors"
	"testing"

	"github.com/mailtls/mailtls/certstore/certtest"
)

// FuzzParsePEM feeds untrusted bytes to the PEM loading entry point. It must
// never panic; an accepted pair must really be a leaf with its matching key;
// every rejection must be a *certstore.Error.
func FuzzParsePEM(f *testing.F) {
	ca := certtest.MustCA("fuzz root")
	ec := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"mx.example.com"}})
	ed := ca.MustIssue(certtest.LeafOptions{DNSNames: []string{"ed.example"}, Key: certtest.Ed25519})
	inter, _ := ca.MustIssue(certtest.LeafOptions{CommonName: "inter", IsCA: true}).AsCA()
	chained := inter.MustIssue(certtest.LeafOptions{DNSNames: []string{"chain.example"}})
	combined := append(append([]byte{}, ec.CertPEM...), ec.KeyPEM...)

	f.Add(ec.CertPEM, ec.KeyPEM)                                                                                                                                            // valid ECDSA pair
	f.Add(ed.CertPEM, ed.KeyPEM)                                                                                                                                            // valid Ed25519 pair
	f.Add(chained.CertPEM, chained.KeyPEM)                                                                                                                                  // leaf + intermediate
	f.Add(combined, []byte(nil))                                                                                                                                            // combined file, key looked for in the certificate PEM
	f.Add(ec.CertPEM, ed.KeyPEM)                                                                                                                                            // key from another pair
	f.Add(ec.CertPEM[:len(ec.CertPEM)/2], ec.KeyPEM)                                                                                                                        // truncated certificate
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----\n"))                       // empty blocks
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN EC PRIVATE KEY-----\nMAMCAQE=\n-----END EC PRIVATE KEY-----\n")) // tiny DER
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), []byte{})                                             // encrypted legacy key, empty key file
	f.Add([]byte{}, []byte{})                                                                                                                                               // nothing at all

	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := ParsePEM(certPEM, keyPEM)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *certstore.Error", err, err)
			}
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if c.Leaf == nil || len(c.Certificate) == 0 {
			t.Fatal("accepted without a leaf")
		}
		pub, ok := c.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(c.PrivateKey.(crypto.Signer).Public()) {
			t.Fatal("accepted a key that does not match the leaf")
		}
		// What was accepted validates again in memory.
		if err := (Loader{}).Validate(c); err != nil {
			t.Fatalf("accepted pair fails Validate: %v", err)
		}
	})
}
