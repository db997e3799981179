package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestInboundZeroValueIsStrict(t *testing.T) {
	var p Inbound
	if !p.RequireTLS() {
		t.Error("zero Inbound does not require TLS")
	}
	if p.EffectiveMinCipherBits() != 128 {
		t.Errorf("min bits %d", p.EffectiveMinCipherBits())
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	if got, want := p.String(), "require TLS, >=128-bit ciphers"; got != want {
		t.Errorf("String %q, want %q", got, want)
	}
	open := Inbound{InsecureAllowPlaintext: true, MinCipherBits: 256}
	if open.RequireTLS() || open.EffectiveMinCipherBits() != 256 {
		t.Errorf("explicit values not kept: %+v", open)
	}
	if !strings.HasPrefix(open.String(), "plaintext allowed (insecure), >=256-bit") {
		t.Errorf("String %q", open.String())
	}
}

// The minimum TLS version and client certificate checks of Validate are
// certstore's (TestTLSOptionsErrors, TestClientAuthPolicyNames) and
// transport.Server's (TestServerConfigErrors).
func TestInboundValidate(t *testing.T) {
	for _, c := range []struct {
		p    Inbound
		want string
	}{
		{Inbound{MinCipherBits: 512}, "out of range"},
		{Inbound{MinCipherBits: -1}, "out of range"},
	} {
		err := c.p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
	ok := Inbound{MinCipherBits: 256}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

// ExampleInbound shows the administrator's classic inbound settings as a
// policy: TLS required, 128-bit or stronger. The minimum TLS version and
// partner certificates are set on the listener's TLS configuration
// (certstore.TLSOptions).
func ExampleInbound() {
	p := Inbound{MinCipherBits: 128}
	fmt.Println(p.Validate())
	fmt.Println(p)

	// A publicly referenced MX must accept plaintext (RFC 3207 §4):
	mx := Inbound{InsecureAllowPlaintext: true}
	fmt.Println(mx)
	// Output:
	// <nil>
	// require TLS, >=128-bit ciphers
	// plaintext allowed (insecure), >=128-bit ciphers
}
