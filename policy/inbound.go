package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Inbound is what TLS an inbound SMTP listener demands of its clients: the
// administrator's "require TLS from clients", "only 128-bit or stronger" and
// "require a certificate from partner servers".
//
// The zero value is the strict policy: TLS is required before MAIL
// (RFC 3207 §4), TLS 1.2 is the minimum version (RFC 9325 §3.1.1), cipher
// suites weaker than 128 bits are refused, and no client certificate is
// asked for. Inbound is plain data: copy, compare (except ClientCAs, a
// pointer) and print it freely. It is applied by transport.Server.
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

	// MinVersion is the lowest TLS version accepted (tls.VersionTLS12,
	// tls.VersionTLS13). Zero means TLS 1.2 (RFC 9325 §3.1.1, which
	// forbids TLS 1.0 and 1.1 per RFC 8996). Setting it below TLS 1.2 is
	// insecure and allowed only for legacy peers.
	MinVersion uint16

	// MinCipherBits is the minimum symmetric key strength of the negotiated
	// cipher suite in bits: the "128-bit encryption or stronger" of
	// administrators' guides. Zero means 128. Clients that can only
	// negotiate weaker suites fail the handshake. 256 excludes the AES-128
	// suites, including TLS 1.3's TLS_AES_128_GCM_SHA256, which Go cannot
	// disable by configuration: the Server then refuses the connection
	// after the suite is chosen.
	MinCipherBits int

	// ClientCertificates says whether clients are asked for a certificate
	// (mutual TLS between partner domains). The zero value is
	// ClientCertNone.
	ClientCertificates ClientCertMode

	// ClientCAs are the roots client certificates are verified against.
	// Required when ClientCertificates is ClientCertVerified; with
	// ClientCertOptional or ClientCertRequired, a certificate that chains
	// to them is reported as verified, one that does not is accepted but
	// reported as unverified. Nil means no CA: nothing verifies (the host's
	// WebPKI roots are never used for client certificates).
	ClientCAs *x509.CertPool
}

// ClientCertMode says whether an inbound listener asks for, requires or
// verifies TLS client certificates (RFC 8446 §4.3.2; RFC 5246 §7.4.4).
type ClientCertMode int

// Client certificate modes.
const (
	// ClientCertNone: no certificate is requested.
	ClientCertNone ClientCertMode = iota
	// ClientCertOptional: a certificate is requested; clients without one
	// are accepted. A certificate that does not verify is accepted too and
	// recorded as unverified.
	ClientCertOptional
	// ClientCertRequired: a certificate is required (the handshake fails
	// without one) but need not verify; the verdict is recorded.
	ClientCertRequired
	// ClientCertVerified: a certificate is required and must verify against
	// ClientCAs for client authentication; otherwise the handshake fails.
	ClientCertVerified
)

var clientCertNames = [...]string{"none", "optional", "required", "verified"}

// String returns "none", "optional", "required" or "verified".
func (m ClientCertMode) String() string {
	if m >= 0 && int(m) < len(clientCertNames) {
		return clientCertNames[m]
	}
	return fmt.Sprintf("clientcert(%d)", int(m))
}

// ParseClientCertMode parses the String form, case-insensitively.
func ParseClientCertMode(s string) (ClientCertMode, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range clientCertNames {
		if s == n {
			return ClientCertMode(i), nil
		}
	}
	return ClientCertNone, fmt.Errorf("policy: unknown client certificate mode %q (want none, optional, required or verified)", s)
}

// RequireTLS reports whether transactions need TLS first (the zero value's
// behaviour; false only with InsecureAllowPlaintext).
func (p Inbound) RequireTLS() bool { return !p.InsecureAllowPlaintext }

// EffectiveMinVersion returns MinVersion, or TLS 1.2 when it is zero.
func (p Inbound) EffectiveMinVersion() uint16 {
	if p.MinVersion == 0 {
		return tls.VersionTLS12
	}
	return p.MinVersion
}

// EffectiveMinCipherBits returns MinCipherBits, or 128 when it is zero.
func (p Inbound) EffectiveMinCipherBits() int {
	if p.MinCipherBits <= 0 {
		return 128
	}
	return p.MinCipherBits
}

// Validate reports an inconsistent policy: an unknown TLS version or client
// certificate mode, or ClientCertVerified without ClientCAs.
func (p Inbound) Validate() error {
	switch p.MinVersion {
	case 0, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("policy: inbound MinVersion 0x%04x is not a TLS version", p.MinVersion)
	}
	if p.MinCipherBits < 0 || p.MinCipherBits > 256 {
		return fmt.Errorf("policy: inbound MinCipherBits %d out of range 0..256", p.MinCipherBits)
	}
	if p.ClientCertificates < ClientCertNone || p.ClientCertificates > ClientCertVerified {
		return fmt.Errorf("policy: unknown client certificate mode %d", int(p.ClientCertificates))
	}
	if p.ClientCertificates == ClientCertVerified && p.ClientCAs == nil {
		return errors.New("policy: inbound ClientCertificates is verified but ClientCAs is nil")
	}
	return nil
}

// String explains the policy in one line, e.g.
// "require TLS, min TLS 1.2, >=128-bit ciphers, client certificates none".
func (p Inbound) String() string {
	var b strings.Builder
	if p.RequireTLS() {
		b.WriteString("require TLS")
	} else {
		b.WriteString("plaintext allowed (insecure)")
	}
	fmt.Fprintf(&b, ", min %s, >=%d-bit ciphers, client certificates %s",
		tls.VersionName(p.EffectiveMinVersion()), p.EffectiveMinCipherBits(), p.ClientCertificates)
	return b.String()
}
