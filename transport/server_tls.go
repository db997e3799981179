package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/policy"
)

// applyInbound returns a clone of base with the inbound policy applied, and
// the client certificate policy base asks for. The TLS knobs are read from
// base, where certstore.TLSOptions sets them, and nowhere else: the minimum
// version is base.MinVersion, or certstore.DefaultMinVersion when zero (RFC
// 9325 §3.1.1); the client certificate policy is base.ClientAuth, verified
// against base.ClientCAs. applyInbound adds the cipher floor of p: TLS 1.2
// suites are filtered by key size (the floor for TLS 1.3 suites, which Go
// does not let us configure, is enforced in verifyInbound). Client
// certificates are requested, never required, at the TLS layer:
// verifyInbound enforces the policy returned here, so that the reason for a
// refusal can be logged.
func applyInbound(base *tls.Config, p policy.Inbound) (*tls.Config, certstore.ClientAuthPolicy, error) {
	mode, err := certstore.ClientAuthPolicyOf(base.ClientAuth)
	if err != nil {
		return nil, 0, fmt.Errorf("transport: TLSConfig.ClientAuth: %w", err)
	}
	if mode.VerifiesCertificate() && base.ClientCAs == nil {
		// crypto/tls would verify against the host's WebPKI roots, which
		// never authenticate mail clients.
		return nil, 0, fmt.Errorf("transport: TLSConfig.ClientAuth is %s but ClientCAs is nil", mode)
	}
	cfg := base.Clone()
	cfg.MinVersion = certstore.EffectiveMinVersion(cfg.MinVersion)
	if cfg.MaxVersion != 0 && cfg.MaxVersion < cfg.MinVersion {
		return nil, 0, fmt.Errorf("transport: TLSConfig.MaxVersion %s is below the inbound minimum %s",
			tls.VersionName(cfg.MaxVersion), tls.VersionName(cfg.MinVersion))
	}
	if cfg.MinVersion < tls.VersionTLS13 {
		suites := cfg.CipherSuites
		if suites == nil {
			for _, cs := range tls.CipherSuites() {
				suites = append(suites, cs.ID)
			}
		}
		floor := p.EffectiveMinCipherBits()
		var kept []uint16
		for _, id := range suites {
			if CipherBits(id) >= floor && suiteBelow13(id) {
				kept = append(kept, id)
			}
		}
		if len(kept) == 0 {
			return nil, 0, fmt.Errorf("transport: no TLS 1.2 cipher suite of at least %d bits is enabled", floor)
		}
		cfg.CipherSuites = kept
	}
	if mode != certstore.ClientCertNone {
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg, mode, nil
}

// tlsAttrs returns the listener's TLS knobs for its "smtp listening" log
// line: the minimum version and the client certificate policy.
func (s *Server) tlsAttrs() slog.Attr {
	if s.tlsBase == nil {
		return slog.Group("tls", "enabled", false)
	}
	return slog.Group("tls", "min", tls.VersionName(s.tlsBase.MinVersion), "client_auth", s.clientAuth.String())
}

func suiteBelow13(id uint16) bool {
	for _, cs := range tls.CipherSuites() {
		if cs.ID == id {
			return slices.ContainsFunc(cs.SupportedVersions, func(v uint16) bool { return v < tls.VersionTLS13 })
		}
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.ID == id {
			return true
		}
	}
	return false
}

// configForClient returns the GetConfigForClient hook installed on the
// server's TLS config. Per handshake it checks the ClientHello against the
// policy (to name the reason a legacy client is refused) and returns a clone
// whose VerifyConnection records the outcome on the connection.
func (s *Server) configForClient(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	userHook := s.TLSConfig.GetConfigForClient
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		rc, _ := hello.Conn.(recordConn)
		c := rc.inConn
		cfg, mode := base, s.clientAuth
		if userHook != nil {
			uc, err := userHook(hello)
			if err != nil {
				c.recordReason(err)
				return nil, err
			}
			if uc != nil {
				if cfg, mode, err = applyInbound(uc, s.Inbound); err != nil {
					c.recordReason(err)
					return nil, err
				}
			}
		}
		if err := checkHello(hello, cfg); err != nil {
			// Record the reason for the log, but let crypto/tls refuse:
			// cfg cannot complete this handshake (no common version or
			// TLS 1.2 suite), and crypto/tls then sends the alert the
			// protocol names, protocol_version (70, RFC 8446 §4.2.1,
			// RFC 5246 Appendix E) or handshake_failure (40, RFC 5246
			// §7.4.1.3). An error returned from here would be sent as
			// internal_error (80), which blames the server.
			c.recordReason(err)
		}
		cc := cfg.Clone()
		cc.GetConfigForClient = nil
		userVerify := cfg.VerifyConnection
		cc.VerifyConnection = func(cs tls.ConnectionState) error {
			verified, err := s.verifyInbound(cs, mode, cfg.ClientCAs)
			if err == nil && userVerify != nil {
				err = userVerify(cs)
			}
			c.recordState(cs, verified, err)
			return err
		}
		return cc, nil
	}
}

// checkHello explains, with a reason an operator can act on, why a client's
// offer cannot meet the policy. It does not refuse: crypto/tls refuses the
// same offers with the right alert, which names no reason, so the reason
// is recorded for the log.
func checkHello(hello *tls.ClientHelloInfo, cfg *tls.Config) error {
	maxOffered := uint16(0)
	for _, v := range hello.SupportedVersions {
		maxOffered = max(maxOffered, v)
	}
	if maxOffered != 0 && maxOffered < cfg.MinVersion {
		names := make([]string, 0, len(hello.SupportedVersions))
		for _, v := range hello.SupportedVersions {
			names = append(names, tls.VersionName(v))
		}
		return &weakTLSError{fmt.Errorf("client offers only %s; minimum is %s (RFC 8996, RFC 9325 §3.1.1)",
			strings.Join(names, ", "), tls.VersionName(cfg.MinVersion))}
	}
	if maxOffered < tls.VersionTLS13 && maxOffered != 0 {
		if !slices.ContainsFunc(hello.CipherSuites, func(id uint16) bool { return slices.Contains(cfg.CipherSuites, id) }) {
			return &weakTLSError{fmt.Errorf("no cipher suite in common: client offers %d suites, none allowed by the inbound policy (%d-bit floor, AEAD ECDHE)",
				len(hello.CipherSuites), CipherBits(cfg.CipherSuites[0]))}
		}
	}
	return nil
}

// weakTLSError marks a handshake refused because the client's TLS is below
// the inbound policy's version or cipher floor (RefusalWeakTLS).
type weakTLSError struct{ err error }

func (e *weakTLSError) Error() string { return e.err.Error() }
func (e *weakTLSError) Unwrap() error { return e.err }

// verifyInbound enforces the cipher floor and the client certificate policy
// mode (with roots cas) on a completed handshake and reports whether the
// client certificate verified for client authentication (RFC 5280 §6).
func (s *Server) verifyInbound(cs tls.ConnectionState, mode certstore.ClientAuthPolicy, cas *x509.CertPool) (bool, error) {
	floor := s.Inbound.EffectiveMinCipherBits()
	if b := CipherBits(cs.CipherSuite); b < floor {
		return false, &weakTLSError{fmt.Errorf("cipher %s has %d-bit keys, below the %d-bit minimum", tls.CipherSuiteName(cs.CipherSuite), b, floor)}
	}
	if len(cs.PeerCertificates) == 0 {
		if mode.RequiresCertificate() {
			return false, errors.New("client certificate required but none was sent")
		}
		return false, nil
	}
	leaf := cs.PeerCertificates[0]
	if cas == nil {
		return false, nil
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         cas,
		Intermediates: inter,
		CurrentTime:   s.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		if mode.VerifiesCertificate() {
			return false, fmt.Errorf("client certificate %q not verified: %w", leaf.Subject.String(), err)
		}
		return false, nil
	}
	return true, nil
}

// handshakeRecord is what is known about the current handshake.
type handshakeRecord struct {
	started  time.Time
	reason   error // policy refusal, from our hooks
	ioErr    error // first read error during the handshake
	state    *tls.ConnectionState
	verified bool
	logged   bool
	failed   bool // the handshake failed (Observer)
}

func (c *inConn) recordReason(err error) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.hs.reason == nil {
		c.hs.reason = err
	}
	c.mu.Unlock()
}

func (c *inConn) recordState(cs tls.ConnectionState, verified bool, err error) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.hs.state = &cs
	c.hs.verified = verified && err == nil
	if err != nil && c.hs.reason == nil {
		c.hs.reason = err
	}
	c.mu.Unlock()
}

// tlsInfo returns the summary of the established TLS session, or nil.
func (c *inConn) tlsInfo(cs tls.ConnectionState, ok bool) *TLSInfo {
	if !ok {
		return nil
	}
	c.mu.Lock()
	verified := c.hs.verified
	c.mu.Unlock()
	return NewTLSInfo(cs, verified)
}

func (c *inConn) logHandshakeSuccess() {
	c.mu.Lock()
	if c.hs.logged {
		c.mu.Unlock()
		return
	}
	c.hs.logged = true
	hs := c.hs
	c.mu.Unlock()
	if !c.srv.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []any{"peer", c.peer, "kind", c.srv.Kind.String(), "result", "ok", "duration", time.Since(hs.started)}
	if hs.state != nil {
		ti := NewTLSInfo(*hs.state, hs.verified)
		attrs = append(attrs, "tls_version", ti.VersionName(), "cipher", ti.CipherName(), "bits", ti.Bits(),
			"curve", ti.CurveID.String(), "sni", ti.ServerName, "resumed", ti.Resumed,
			"client_cert", ti.PeerSubject, "verified", ti.Verified)
	}
	c.srv.log.Info("smtp tls handshake", attrs...)
}

// logHandshakeFailure logs a failed handshake once, with the most specific
// reason known: a policy refusal, then err (implicit TLS), then the I/O error.
func (c *inConn) logHandshakeFailure(err error) {
	c.mu.Lock()
	if c.hs.logged {
		c.mu.Unlock()
		return
	}
	c.hs.logged = true
	c.hs.failed = true
	hs := c.hs
	c.mu.Unlock()
	if _, weak := errors.AsType[*weakTLSError](hs.reason); weak {
		c.srv.observeRefusal(RefusalWeakTLS)
	}
	reason := hs.reason
	if reason == nil {
		reason = err
	}
	if reason == nil {
		reason = hs.ioErr
	}
	if reason == nil {
		reason = errors.New("handshake failed (no further detail from the TLS stack)")
	}
	var ne net.Error
	if c.evicted.Load() {
		reason = errEvicted // whatever the TLS stack made of the close
	} else if errors.As(reason, &ne) && ne.Timeout() {
		reason = fmt.Errorf("handshake timed out after %s: %w", c.srv.Timeouts.tlsHandshake(), reason)
	}
	attrs := []any{"peer", c.peer, "kind", c.srv.Kind.String(), "result", "failed", "error", reason.Error(), "duration", time.Since(hs.started)}
	if hs.state != nil {
		ti := NewTLSInfo(*hs.state, false)
		attrs = append(attrs, "tls_version", ti.VersionName(), "cipher", ti.CipherName(), "client_cert", ti.PeerSubject, "verified", false)
	}
	c.srv.log.Warn("smtp tls handshake", attrs...)
}
