package transport

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
)

// tlsCheck verifies one handshake and remembers the verdict.
//
// Verification is done in tls.Config.VerifyConnection with
// InsecureSkipVerify set, not by crypto/tls's built-in check, so that the
// Connector can tell *why* a certificate was refused (expired, untrusted
// issuer, wrong name: the TLS-RPT result types, RFC 8460 §4.3.2) and so
// that the levels that do not verify (Encrypt, May) still complete the
// handshake and record "verified: false" instead of failing or silently
// passing. chasquid does the same to distinguish invalid from valid
// certificates. Every path that must verify returns an error from here,
// which aborts the handshake before any SMTP command is sent over TLS.
type tlsCheck struct {
	kind       policy.Check
	mxHost     string     // CheckVerify: the MX host name
	match      []string   // CheckSecure: "name" exact, ".name" any subdomain
	dane       *dane.Host // CheckDANE: the host's records and reference names
	minVersion uint16
	roots      *x509.CertPool
	now        time.Time
	// enforce false records failures without failing the handshake
	// (MTA-STS testing mode, RFC 8461 §5).
	enforce bool

	// noResume: no session resumption (Connector.Check examines the chain).
	noResume bool

	verified bool
	failure  policy.FailureType
	err      error                // the classified failure, also when not enforced
	state    *tls.ConnectionState // what the check saw, also when it failed
}

func (v *tlsCheck) verifyConnection(cs tls.ConnectionState) error {
	v.state = &cs
	if err := v.check(cs); err != nil {
		v.err = err
		if v.enforce {
			return err
		}
	}
	return nil
}

func (v *tlsCheck) check(cs tls.ConnectionState) error {
	if cs.Version < v.minVersion {
		v.failure = policy.FailureValidation
		return fmt.Errorf("%w: negotiated %s, policy requires %s", ErrTLSVersion,
			tls.VersionName(cs.Version), tls.VersionName(v.minVersion))
	}
	if v.kind == policy.CheckNone {
		return nil
	}
	if v.kind == policy.CheckDANE {
		// RFC 7672 §3.1: DANE replaces WebPKI verification: DANE-EE ignores
		// names and dates, DANE-TA checks the chain to the matched anchor
		// and the reference names (dane.Verify).
		if err := v.dane.Verify(cs, v.now); err != nil {
			v.failure = dane.ResultType(err)
			if v.failure == policy.FailureNone {
				v.failure = policy.FailureValidation
			}
			return fmt.Errorf("%w (%s): %w", ErrCertificate, v.failure, err)
		}
		v.verified = true
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		v.failure = policy.FailureValidation
		return fmt.Errorf("%w: no certificate presented", ErrCertificate)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	// Chain first, names second: an untrusted or expired certificate is
	// reported as such even when its name is also wrong.
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   v.now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		v.failure = classifyX509(err)
		return fmt.Errorf("%w (%s): %w", ErrCertificate, v.failure, err)
	}
	switch v.kind {
	case policy.CheckVerify:
		if err := leaf.VerifyHostname(v.mxHost); err != nil {
			v.failure = policy.FailureCertificateHostMismatch
			return fmt.Errorf("%w (%s): %w", ErrCertificate, v.failure, err)
		}
	case policy.CheckSecure:
		if !matchesAny(leaf, v.match) {
			v.failure = policy.FailureCertificateHostMismatch
			return fmt.Errorf("%w (%s): certificate names %v match none of %v",
				ErrCertificate, v.failure, leaf.DNSNames, v.match)
		}
	}
	v.verified = true
	return nil
}

// classifyX509 maps a chain verification error to a TLS-RPT result type.
func classifyX509(err error) policy.FailureType {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return policy.FailureCertificateExpired
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return policy.FailureCertificateNotTrusted
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		return policy.FailureCertificateHostMismatch
	}
	return policy.FailureValidation
}

// matchesAny implements Postfix's match= rule for level secure
// (postconf(5) smtp_tls_secure_cert_match): "example.net" matches a
// certificate valid for exactly that name (wildcards as in RFC 6125 §6.4.3),
// ".example.net" one valid for any name below it.
func matchesAny(leaf *x509.Certificate, patterns []string) bool {
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(p), "."))
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, ".") {
			for _, n := range leaf.DNSNames {
				n = strings.ToLower(strings.TrimSuffix(n, "."))
				if strings.HasSuffix(n, p) && len(n) > len(p) {
					return true
				}
			}
			continue
		}
		if leaf.VerifyHostname(p) == nil {
			return true
		}
	}
	return false
}

// tlsConfig builds the client tls.Config for one attempt.
func (c *Connector) tlsConfig(v *tlsCheck, serverName string, r *Route) *tls.Config {
	cfg := &tls.Config{
		// Verification happens in VerifyConnection; see tlsCheck.
		InsecureSkipVerify: true,
		VerifyConnection:   v.verifyConnection,
		MinVersion:         tls.VersionTLS12, // RFC 9325 §3.1.1; policies may raise it
		ClientSessionCache: c.sessionCache(),
	}
	if r != nil && (r.ClientCertificate != nil || r.GetClientCertificate != nil) {
		// A resumed session keeps the client identity it was opened with
		// (RFC 8446 §2.2, RFC 5077 §4), and crypto/tls keys its cache by
		// server name only: without a namespace per route, mail of one route
		// would reach a shared next hop authenticated with another route's
		// certificate, and mail without a route with any. Server
		// verification needs no namespace: VerifyConnection runs on
		// resumption too and sees the original certificate.
		cfg.ClientSessionCache = keyedSessionCache{c: cfg.ClientSessionCache, prefix: sessionNamespace(r)}
	}
	// SNI only for names; RFC 6066 §3 forbids IP literals.
	if net.ParseIP(serverName) == nil {
		cfg.ServerName = serverName
	}
	if r != nil {
		if r.GetClientCertificate != nil {
			cfg.GetClientCertificate = r.GetClientCertificate
		} else if r.ClientCertificate != nil {
			cfg.Certificates = []tls.Certificate{*r.ClientCertificate}
		}
	}
	if v.noResume {
		cfg.ClientSessionCache = nil
	}
	return cfg
}

// sessionNamespace names the client identity of a route with a client
// certificate: the certificate's SHA-256 when it is fixed (routes, and
// Connectors sharing a SessionCache, that present the same certificate may
// share sessions), else the route itself (GetClientCertificate may answer
// anything).
func sessionNamespace(r *Route) string {
	if r.GetClientCertificate == nil && len(r.ClientCertificate.Certificate) > 0 {
		sum := sha256.Sum256(r.ClientCertificate.Certificate[0])
		return "client cert " + hex.EncodeToString(sum[:]) + "|"
	}
	return fmt.Sprintf("client cert route %p|", r)
}

// keyedSessionCache is a namespace in a shared tls.ClientSessionCache.
type keyedSessionCache struct {
	c      tls.ClientSessionCache
	prefix string
}

func (k keyedSessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	return k.c.Get(k.prefix + key)
}
func (k keyedSessionCache) Put(key string, cs *tls.ClientSessionState) { k.c.Put(k.prefix+key, cs) }

// classifyHandshake names a handshake error that VerifyConnection did not
// classify.
func classifyHandshake(err error) error {
	var ae tls.AlertError
	if errors.As(err, &ae) && ae == tls.AlertError(70) { // protocol_version
		return fmt.Errorf("%w: %w", ErrTLSVersion, err)
	}
	if strings.Contains(err.Error(), "unsupported protocol version") ||
		strings.Contains(err.Error(), "protocol version not supported") {
		// crypto/tls reports a locally detected version mismatch only as text.
		return fmt.Errorf("%w: %w", ErrTLSVersion, err)
	}
	return fmt.Errorf("%w: %w", ErrTLSHandshake, err)
}
