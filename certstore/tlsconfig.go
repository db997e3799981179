package certstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// DefaultMinVersion is the lowest TLS version a server built or configured
// with this package accepts when no minimum is given: TLS 1.2 (RFC 9325,
// Section 3.1.1; RFC 8996 deprecates TLS 1.0 and 1.1).
const DefaultMinVersion uint16 = tls.VersionTLS12

// EffectiveMinVersion returns v, or DefaultMinVersion when v is zero: the
// minimum a server applies for a tls.Config.MinVersion of v.
func EffectiveMinVersion(v uint16) uint16 {
	if v == 0 {
		return DefaultMinVersion
	}
	return v
}

// ClientAuthPolicy says whether a server asks TLS clients for a certificate
// (RFC 8446, Section 4.3.2; RFC 5246, Section 7.4.4) and what it does with
// it. The zero value, ClientCertNone, asks for none: on the public MX port
// clients have no certificate to give, and the server still authenticates
// itself.
type ClientAuthPolicy int

// Client certificate policies, weakest first.
const (
	// ClientCertNone requests no certificate (tls.NoClientCert).
	ClientCertNone ClientAuthPolicy = iota
	// ClientCertRequest requests one but accepts none, and does not verify
	// what is sent (tls.RequestClientCert); useful to record who connected.
	ClientCertRequest
	// ClientCertRequire requires a certificate but does not verify it
	// (tls.RequireAnyClientCert): the application checks it, for example by
	// fingerprint.
	ClientCertRequire
	// ClientCertVerifyIfGiven accepts clients without a certificate but
	// verifies any certificate sent against ClientCAs
	// (tls.VerifyClientCertIfGiven).
	ClientCertVerifyIfGiven
	// ClientCertRequireVerified requires a certificate that verifies against
	// ClientCAs (tls.RequireAndVerifyClientCert): mutual TLS between
	// partners.
	ClientCertRequireVerified
)

var clientAuthNames = [...]string{"none", "request", "require", "verify-if-given", "require-verified"}

// String returns the policy's name as used in logs and configuration:
// "none", "request", "require", "verify-if-given" or "require-verified".
func (p ClientAuthPolicy) String() string {
	if p >= 0 && int(p) < len(clientAuthNames) {
		return clientAuthNames[p]
	}
	return fmt.Sprintf("ClientAuthPolicy(%d)", int(p))
}

// ParseClientAuthPolicy parses the String form, case-insensitively and
// ignoring surrounding space.
func ParseClientAuthPolicy(s string) (ClientAuthPolicy, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range clientAuthNames {
		if s == n {
			return ClientAuthPolicy(i), nil
		}
	}
	return ClientCertNone, fmt.Errorf("certstore: unknown client certificate policy %q (want %s)", s, strings.Join(clientAuthNames[:], ", "))
}

// RequiresCertificate reports whether a client without a certificate is
// refused (ClientCertRequire, ClientCertRequireVerified).
func (p ClientAuthPolicy) RequiresCertificate() bool {
	return p == ClientCertRequire || p == ClientCertRequireVerified
}

// VerifiesCertificate reports whether a certificate the client sends must
// chain to ClientCAs for client authentication (RFC 5280, Section 6;
// ClientCertVerifyIfGiven, ClientCertRequireVerified).
func (p ClientAuthPolicy) VerifiesCertificate() bool {
	return p == ClientCertVerifyIfGiven || p == ClientCertRequireVerified
}

// TLSClientAuth returns the crypto/tls setting that implements p.
func (p ClientAuthPolicy) TLSClientAuth() tls.ClientAuthType {
	switch p {
	case ClientCertRequest:
		return tls.RequestClientCert
	case ClientCertRequire:
		return tls.RequireAnyClientCert
	case ClientCertVerifyIfGiven:
		return tls.VerifyClientCertIfGiven
	case ClientCertRequireVerified:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// ClientAuthPolicyOf returns the policy a tls.Config's ClientAuth setting
// implements, so that a consumer of a built *tls.Config (such as
// transport.Server) reads the client certificate policy from the one place
// it is set. An unknown value is an ErrInsecureConfig error.
func ClientAuthPolicyOf(t tls.ClientAuthType) (ClientAuthPolicy, error) {
	switch t {
	case tls.NoClientCert:
		return ClientCertNone, nil
	case tls.RequestClientCert:
		return ClientCertRequest, nil
	case tls.RequireAnyClientCert:
		return ClientCertRequire, nil
	case tls.VerifyClientCertIfGiven:
		return ClientCertVerifyIfGiven, nil
	case tls.RequireAndVerifyClientCert:
		return ClientCertRequireVerified, nil
	}
	return ClientCertNone, &Error{Op: "config", Err: fmt.Errorf("%w: unknown tls.ClientAuthType %d", ErrInsecureConfig, int(t))}
}

// TLSOptions tunes the server configuration built by Store.TLSConfig and
// ServerTLSConfig. The zero value is the RFC 9325 (BCP 195) recommendation:
// TLS 1.2 and 1.3 only, ECDHE with AEAD for TLS 1.2, Go's default key
// exchanges, session tickets on, no client certificate requested.
type TLSOptions struct {
	// MinVersion is the lowest TLS version accepted. Zero means TLS 1.2
	// (RFC 9325, Section 3.1.1, and RFC 8996 which deprecates 1.0 and 1.1);
	// tls.VersionTLS13 accepts TLS 1.3 only. A value below TLS 1.2 is an
	// ErrInsecureConfig error, never a downgrade.
	MinVersion uint16
	// ClientAuth is the client certificate policy. Zero is ClientCertNone.
	ClientAuth ClientAuthPolicy
	// ClientCAs are the anchors client certificates are verified against. It
	// is required (nil is an ErrInsecureConfig error) for
	// ClientCertVerifyIfGiven and ClientCertRequireVerified. With
	// ClientCertRequest and ClientCertRequire it is passed on in the
	// Config, where crypto/tls names it to clients (RFC 8446, Section
	// 4.2.4) but does not enforce it, and a consumer such as
	// transport.Server records whether the certificate verified. It is
	// ignored with ClientCertNone.
	ClientCAs *x509.CertPool
}

// CipherSuites returns the TLS 1.2 cipher suites this package enables: the
// four ECDHE AES-GCM suites RFC 9325, Section 4.2 recommends, plus the two
// ECDHE ChaCha20-Poly1305 suites (RFC 7905), likewise AEAD with forward
// secrecy, for ECDSA (and Ed25519) and RSA certificates. No CBC, no static RSA key exchange, no
// 3DES or RC4. TLS 1.3 suites are not configurable in Go and are all AEAD.
// The result is a fresh slice the caller may modify.
func CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// TLSConfig returns a server *tls.Config whose certificates come from the
// Store (GetCertificate, so SNI selection and reloads apply to every new
// handshake), with the RFC 9325 defaults described on TLSOptions. Each call
// returns a new Config the caller may adjust before first use; after it is
// passed to a TLS function it must not be modified.
func (s *Store) TLSConfig(o TLSOptions) (*tls.Config, error) {
	return ServerTLSConfig(s.GetCertificate, o)
}

// ServerTLSConfig is Store.TLSConfig for any certificate source, such as
// Store.Fallback.
//
// What it sets and why:
//   - MinVersion TLS 1.2 (or 1.3): RFC 9325, Section 3.1.1; RFC 8996.
//   - CipherSuites: CipherSuites(), RFC 9325, Section 4.2.
//   - CurvePreferences is left nil on purpose, so Go's defaults apply: the
//     post-quantum hybrid X25519MLKEM768 first (TLS 1.3), then X25519 and
//     P-256 (RFC 9325, Section 4.2.1 recommends X25519 and P-256). Narrowing
//     the list would silently drop post-quantum key exchange.
//   - Session tickets stay on (RFC 8446, Section 2.2; RFC 5077): MTAs that
//     reconnect often save a full handshake. Go rotates the ticket keys.
//   - Renegotiation is never offered by a Go server (RFC 9325, Section 3.5).
//   - Compression is never used by crypto/tls (RFC 9325, Section 3.3).
func ServerTLSConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), o TLSOptions) (*tls.Config, error) {
	if getCertificate == nil {
		return nil, &Error{Op: "config", Err: fmt.Errorf("%w: no certificate source", ErrInsecureConfig)}
	}
	minV := EffectiveMinVersion(o.MinVersion)
	switch minV {
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, &Error{Op: "config", Err: fmt.Errorf("%w: MinVersion %s is below TLS 1.2 or unknown (RFC 8996, RFC 9325 Section 3.1.1)",
			ErrInsecureConfig, tls.VersionName(o.MinVersion))}
	}
	cfg := &tls.Config{
		MinVersion:             minV,
		CipherSuites:           CipherSuites(),
		GetCertificate:         getCertificate,
		SessionTicketsDisabled: false,
	}
	if o.ClientAuth < ClientCertNone || o.ClientAuth > ClientCertRequireVerified {
		return nil, &Error{Op: "config", Err: fmt.Errorf("%w: unknown client certificate policy %d", ErrInsecureConfig, int(o.ClientAuth))}
	}
	if o.ClientAuth.VerifiesCertificate() && o.ClientCAs == nil {
		return nil, &Error{Op: "config", Err: fmt.Errorf("%w: client certificate policy %s needs ClientCAs", ErrInsecureConfig, o.ClientAuth)}
	}
	cfg.ClientAuth = o.ClientAuth.TLSClientAuth()
	if o.ClientAuth != ClientCertNone {
		cfg.ClientCAs = o.ClientCAs
	}
	return cfg, nil
}
