package policy

import (
	"fmt"
	"strings"
)

// Inbound is what an inbound SMTP listener demands of its clients beyond
// the TLS configuration itself: the administrator's "require TLS from
// clients" and "only 128-bit or stronger".
//
// The zero value is the strict policy: TLS is required before MAIL
// (RFC 3207 §4) and cipher suites weaker than 128 bits are refused. Inbound
// is plain data: copy, compare and print it freely. It is applied by
// transport.Server.
//
// The minimum TLS version and the client certificate policy are not here:
// they are set once, on the listener's *tls.Config, which certstore builds
// (certstore.TLSOptions: MinVersion, ClientAuth, ClientCAs; RFC 9325).
type Inbound struct {
	// InsecureAllowPlaintext lets clients send mail without STARTTLS.
	// The zero value (false) answers MAIL, RCPT, DATA and every other
	// transaction command sent before STARTTLS with
	// "530 5.7.0 Must issue a STARTTLS command first" (RFC 3207 §4).
	//
	// Setting it is insecure: mail may then cross the network in clear
	// text. It is nevertheless what RFC 3207 §4 asks of a publicly-referenced
	// MX host ("MUST NOT require the use of the STARTTLS extension in order
	// to deliver mail locally"), since many senders still cannot do TLS.
	// AUTH is never accepted in plaintext, whatever this field says.
	InsecureAllowPlaintext bool

	// MinCipherBits is the minimum symmetric key strength of the negotiated
	// cipher suite in bits: the "128-bit encryption or stronger" of
	// administrators' guides; RFC 9325 §4.1 says implementations SHOULD NOT
	// negotiate less than 128 bits. Zero means 128. Clients that can only
	// negotiate weaker suites fail the handshake. 256 excludes the AES-128
	// suites, including TLS 1.3's TLS_AES_128_GCM_SHA256, which Go cannot
	// disable by configuration: the Server then refuses the connection
	// after the suite is chosen.
	MinCipherBits int
}

// RequireTLS reports whether transactions need TLS first (the zero value's
// behaviour; false only with InsecureAllowPlaintext).
func (p Inbound) RequireTLS() bool { return !p.InsecureAllowPlaintext }

// EffectiveMinCipherBits returns MinCipherBits, or 128 when it is zero.
func (p Inbound) EffectiveMinCipherBits() int {
	if p.MinCipherBits <= 0 {
		return 128
	}
	return p.MinCipherBits
}

// Validate reports an inconsistent policy: a cipher floor outside 0..256.
func (p Inbound) Validate() error {
	if p.MinCipherBits < 0 || p.MinCipherBits > 256 {
		return fmt.Errorf("policy: inbound MinCipherBits %d out of range 0..256", p.MinCipherBits)
	}
	return nil
}

// String explains the policy in one line, e.g.
// "require TLS, >=128-bit ciphers".
func (p Inbound) String() string {
	var b strings.Builder
	if p.RequireTLS() {
		b.WriteString("require TLS")
	} else {
		b.WriteString("plaintext allowed (insecure)")
	}
	fmt.Fprintf(&b, ", >=%d-bit ciphers", p.EffectiveMinCipherBits())
	return b.String()
}
