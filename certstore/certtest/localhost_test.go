package certtest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// A localhost certificate verifies for every loopback name, and only with
// its own CA.
func TestIssueLocalhost(t *testing.T) {
	ca := MustCA("pki test")
	other := MustCA("other")
	leaf, err := ca.IssueLocalhost()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(LocalhostNames, "mx.example.test") {
		_, err := leaf.X509.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: name})
		if want := name != "mx.example.test"; (err == nil) != want {
			t.Errorf("%s: verify error %v, want valid=%v", name, err, want)
		}
		if _, err := leaf.X509.Verify(x509.VerifyOptions{Roots: other.Pool, DNSName: name}); err == nil {
			t.Errorf("%s: verified by another CA", name)
		}
	}

	// A real handshake: ServerTLSConfig on one side, ClientTLSConfig on
	// the other.
	l, err := tls.Listen("tcp", "127.0.0.1:0", leaf.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for _, tc := range []struct {
		ca   *CA
		name string
		ok   bool
	}{{ca, "127.0.0.1", true}, {ca, "localhost", true}, {ca, "wrong.example", false}, {other, "localhost", false}} {
		c, err := tls.Dial("tcp", l.Addr().String(), tc.ca.ClientTLSConfig(tc.name))
		if (err == nil) != tc.ok {
			t.Errorf("dial as %s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err == nil {
			c.Close()
		}
	}
}

func TestAsCA(t *testing.T) {
	root := MustCA("root")
	if _, err := root.MustIssue(LeafOptions{DNSNames: []string{"a.example"}}).AsCA(); err == nil {
		t.Error("a leaf became a CA")
	}
	inter, err := root.MustIssue(LeafOptions{CommonName: "inter", IsCA: true}).AsCA()
	if err != nil {
		t.Fatal(err)
	}
	l := inter.MustIssue(LeafOptions{DNSNames: []string{"b.example"}, Key: RSA, IPs: []net.IP{net.IPv4(192, 0, 2, 1)}})
	if len(l.TLS.Certificate) != 2 {
		t.Fatalf("chain of %d, want leaf and intermediate", len(l.TLS.Certificate))
	}
	ip := x509.NewCertPool()
	ip.AddCert(inter.Cert)
	if _, err := l.X509.Verify(x509.VerifyOptions{Roots: root.Pool, Intermediates: ip, DNSName: "192.0.2.1"}); err != nil {
		t.Error(err)
	}
	if l.X509.PublicKeyAlgorithm != x509.RSA {
		t.Errorf("key %v, want RSA", l.X509.PublicKeyAlgorithm)
	}
}
