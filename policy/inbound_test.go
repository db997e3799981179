package policy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
)

func TestInboundZeroValueIsStrict(t *testing.T) {
	var p Inbound
	if !p.RequireTLS() {
		t.Error("zero Inbound does not require TLS")
	}
	if p.EffectiveMinVersion() != tls.VersionTLS12 {
		t.Errorf("min version %x", p.EffectiveMinVersion())
	}
	if p.EffectiveMinCipherBits() != 128 {
		t.Errorf("min bits %d", p.EffectiveMinCipherBits())
	}
	if p.ClientCertificates != ClientCertNone {
		t.Errorf("client certs %v", p.ClientCertificates)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	if got, want := p.String(), "require TLS, min TLS 1.2, >=128-bit ciphers, client certificates none"; got != want {
		t.Errorf("String %q, want %q", got, want)
	}
	open := Inbound{InsecureAllowPlaintext: true, MinVersion: tls.VersionTLS13, MinCipherBits: 256, ClientCertificates: ClientCertOptional}
	if open.RequireTLS() || open.EffectiveMinVersion() != tls.VersionTLS13 || open.EffectiveMinCipherBits() != 256 {
		t.Errorf("explicit values not kept: %+v", open)
	}
	if !strings.HasPrefix(open.String(), "plaintext allowed (insecure), min TLS 1.3, >=256-bit") {
		t.Errorf("String %q", open.String())
	}
}

func TestInboundValidate(t *testing.T) {
	for _, c := range []struct {
		p    Inbound
		want string
	}{
		{Inbound{MinVersion: 0x0299}, "is not a TLS version"},
		{Inbound{MinCipherBits: 512}, "out of range"},
		{Inbound{ClientCertificates: ClientCertMode(9)}, "unknown client certificate mode"},
		{Inbound{ClientCertificates: ClientCertVerified}, "ClientCAs is nil"},
	} {
		err := c.p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
	ok := Inbound{ClientCertificates: ClientCertVerified, ClientCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS13}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

func TestClientCertModeNames(t *testing.T) {
	for m := ClientCertNone; m <= ClientCertVerified; m++ {
		got, err := ParseClientCertMode(" " + strings.ToUpper(m.String()) + " ")
		if err != nil || got != m {
			t.Errorf("%v: parsed %v, %v", m, got, err)
		}
	}
	if _, err := ParseClientCertMode("sometimes"); err == nil {
		t.Error("unknown mode parsed")
	}
	if s := ClientCertMode(7).String(); s != "clientcert(7)" {
		t.Errorf("String %q", s)
	}
}

// ExampleInbound shows the administrator's classic inbound settings as a
// policy: TLS required, 128-bit or stronger, partner certificates verified.
func ExampleInbound() {
	partners := x509.NewCertPool() // AppendCertsFromPEM(partner CA PEM)
	p := Inbound{
		MinVersion:         tls.VersionTLS12,
		MinCipherBits:      128,
		ClientCertificates: ClientCertVerified,
		ClientCAs:          partners,
	}
	fmt.Println(p.Validate())
	fmt.Println(p)

	// A publicly referenced MX must accept plaintext (RFC 3207 §4):
	mx := Inbound{InsecureAllowPlaintext: true}
	fmt.Println(mx)
	// Output:
	// <nil>
	// require TLS, min TLS 1.2, >=128-bit ciphers, client certificates verified
	// plaintext allowed (insecure), min TLS 1.2, >=128-bit ciphers, client certificates none
}
