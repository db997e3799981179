package certstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ErrACMEConfig means an autocert.Manager or ACMEOptions cannot be used
// safely: no Manager, no HostPolicy (autocert would then ask the CA for a
// certificate for any name a client sends, and exhaust the CA's rate limits),
// no host names, no cache directory, or a host name the http-01 and
// tls-alpn-01 challenges cannot prove (a wildcard, an IP address, a single
// label). Fix the options; nothing was contacted.
var ErrACMEConfig = errors.New("unusable ACME configuration")

// ACMEOptions describes an autocert.Manager built by NewACMEManager: one
// ACME (RFC 8555) account at one CA, certificates for a fixed list of host
// names, everything kept in a directory so restarts reuse them. The zero
// value is incomplete on purpose (Hosts and CacheDir are required) and
// accepts no terms of service.
type ACMEOptions struct {
	// Hosts are the names the Manager may obtain certificates for, each its
	// own certificate (autocert.HostWhitelist: exact names, compared after
	// IDNA mapping, so case does not matter). Typically the MX host names
	// of the server. Required: an empty list is an ErrACMEConfig error,
	// because an unrestricted Manager requests a certificate for whatever
	// name a client puts in its SNI. Wildcards, IP addresses and single-label
	// names are rejected: autocert proves control with http-01 (RFC 8555,
	// Section 8.3) or tls-alpn-01 (RFC 8737), and wildcards need dns-01
	// (RFC 8555, Section 7.1.3), which autocert does not do.
	Hosts []string
	// CacheDir is the directory (autocert.DirCache, created with mode 0700)
	// holding the account key, each certificate with its private key, and
	// the challenge tokens in flight. Required: without a persistent cache
	// every restart requests new certificates and soon hits the CA's rate
	// limits. Several processes may share it.
	CacheDir string
	// Email is the contact address registered with the account (RFC 8555,
	// Section 7.3; the CA writes there about expiry and revocation). Empty
	// registers no contact.
	Email string
	// AcceptTOS agrees to the CA's terms of service when the account is
	// registered (RFC 8555, Section 7.3, termsOfServiceAgreed). false, the
	// zero value, declines them, and a CA that has terms (Let's Encrypt
	// has) then refuses the account, so no certificate is obtained: setting
	// it is the operator's explicit agreement.
	AcceptTOS bool
	// DirectoryURL is the CA's ACME directory (RFC 8555, Section 7.1.1).
	// Empty means autocert.DefaultACMEDirectory, Let's Encrypt's production
	// service; use the CA's staging directory while testing.
	DirectoryURL string
	// RenewBefore is how long before notAfter a certificate is renewed. Zero
	// means autocert's default: the lesser of 30 days and a third of the
	// certificate's lifetime.
	RenewBefore time.Duration
	// HTTPClient carries the requests to the CA (a proxy, a test transport).
	// nil means http.DefaultClient.
	HTTPClient *http.Client
}

// NewACMEManager returns an autocert.Manager for o, for use with
// Store.ACMETLSConfig. It validates o and contacts nothing: the account is
// registered and certificates are obtained on the first TLS handshake that
// asks for one of o.Hosts (or earlier, by the renewal timers autocert starts
// for certificates it finds in the cache). The error is an *Error wrapping
// ErrACMEConfig.
//
// The CA must be able to reach the host to prove control of each name; see
// Store.ACMETLSConfig for what that means for a mail server.
func NewACMEManager(o ACMEOptions) (*autocert.Manager, error) {
	if len(o.Hosts) == 0 {
		return nil, acmeConfigError("ACMEOptions.Hosts is empty; autocert would request a certificate for any name a client sends")
	}
	for _, h := range o.Hosts {
		if err := checkACMEHost(h); err != nil {
			return nil, err
		}
	}
	if o.CacheDir == "" {
		return nil, acmeConfigError("ACMEOptions.CacheDir is empty; certificates would be requested again on every restart")
	}
	m := &autocert.Manager{
		Prompt:      func(string) bool { return o.AcceptTOS },
		Cache:       autocert.DirCache(o.CacheDir),
		HostPolicy:  autocert.HostWhitelist(o.Hosts...),
		RenewBefore: o.RenewBefore,
		Email:       o.Email,
	}
	if o.DirectoryURL != "" || o.HTTPClient != nil {
		m.Client = &acme.Client{DirectoryURL: o.DirectoryURL, HTTPClient: o.HTTPClient}
		if m.Client.DirectoryURL == "" {
			m.Client.DirectoryURL = autocert.DefaultACMEDirectory
		}
	}
	return m, nil
}

func checkACMEHost(h string) error {
	n := normalize(h)
	switch {
	case n == "":
		return acmeConfigError("empty host name in ACMEOptions.Hosts")
	case strings.Contains(n, "*"):
		return acmeConfigError(fmt.Sprintf("host %q: wildcard certificates need the dns-01 challenge (RFC 8555, Section 7.1.3), which autocert does not do", h))
	case net.ParseIP(n) != nil:
		return acmeConfigError(fmt.Sprintf("host %q: an IP address, not a DNS name", h))
	case !strings.Contains(n, "."):
		return acmeConfigError(fmt.Sprintf("host %q: a single-label name; autocert refuses those", h))
	}
	return nil
}

func acmeConfigError(msg string) error {
	return &Error{Op: "config", Err: fmt.Errorf("%w: %s", ErrACMEConfig, msg)}
}

// ACME returns a tls.Config GetCertificate function that serves certificates
// obtained by ACME (RFC 8555) through m, and the Store's certificates
// otherwise:
//
//   - A client that sends no server name (RFC 6066, Section 3), as most MTAs
//     on port 25 do, gets the Store's default certificate. autocert alone
//     fails those handshakes. The Store's default is chosen rather than the
//     last certificate ACME obtained because it is the one the operator
//     named, it exists before the first issuance, and it does not change
//     with the order of handshakes (with several ACME names, "the last one"
//     is arbitrary). Clients that verify names mostly send them (DANE
//     requires SNI, RFC 7672, Section 8.1), but a verifying client without
//     SNI checks the default against the MX name, so the default should be
//     valid for the server's main MX name. To make an ACME certificate the
//     default, point a Source at autocert's cache file for that name, which
//     holds key and chain in one PEM file (Source{CertFile:
//     filepath.Join(cacheDir, "mx.example.com"), Default: true}), and run
//     Store.Watch so renewals are picked up; the file must exist (one
//     issuance done) before the Store loads.
//   - A name m.HostPolicy accepts gets its ACME certificate: from m's memory
//     or Cache, or obtained from the CA during that handshake (which then
//     waits, up to the five minutes autocert allows, for the first
//     certificate of each name). If autocert fails (the CA is unreachable,
//     the challenge failed), the Store's certificate for the name, or its
//     default, is served instead, so a mail server never loses a STARTTLS
//     client to an ACME problem; the failure is logged at warning level.
//   - A name outside m.HostPolicy (a scanner's guess, an old MX name) gets
//     the Store's certificate for that name, or its default; logged at
//     debug level.
//   - A tls-alpn-01 validation connection from the CA (RFC 8737, Section 3:
//     SNI and the single ALPN protocol "acme-tls/1") is answered by autocert
//     alone, with the challenge certificate or a failed handshake, never
//     with a Store certificate.
//
// m must have a HostPolicy (autocert.HostWhitelist, or build m with
// NewACMEManager); a nil m or HostPolicy is an ErrACMEConfig error. m must
// not be modified afterwards. This is Store.Fallback with the tls-alpn-01
// rule and the logging above.
func (s *Store) ACME(m *autocert.Manager) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if m == nil {
		return nil, acmeConfigError("nil autocert.Manager")
	}
	if m.HostPolicy == nil {
		return nil, acmeConfigError("autocert.Manager has no HostPolicy; it would request a certificate for any name a client sends")
	}
	policy := m.HostPolicy
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" {
			return s.GetCertificate(hello)
		}
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
			return m.GetCertificate(hello) // RFC 8737, Section 3: the challenge certificate or nothing
		}
		c, err := m.GetCertificate(hello)
		if err == nil && c != nil {
			return c, nil
		}
		ctx := hello.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		// Only on failure: ask the policy again to tell an ACME problem
		// (worth a warning) from a name that was never ACME's business.
		if policy(ctx, normalize(hello.ServerName)) == nil {
			s.log().Warn("certstore: ACME certificate unavailable, using the store", "sni", hello.ServerName, "err", err)
		} else {
			s.log().Debug("certstore: name outside the ACME host policy, using the store", "sni", hello.ServerName)
		}
		return s.GetCertificate(hello)
	}, nil
}

// ACMETLSConfig is Store.TLSConfig with certificates from Store.ACME(m): a
// server *tls.Config with the RFC 9325 defaults of TLSOptions, for the mail
// ports (25 with STARTTLS, 465, 587).
//
// It deliberately does not use m.TLSConfig(), which returns a bare Config
// (no minimum version, no cipher suite policy) with NextProtos "h2",
// "http/1.1" and "acme-tls/1". NextProtos stays nil here, because a mail
// port speaks neither HTTP nor the tls-alpn-01 challenge. That matters for
// how the CA validates each name: tls-alpn-01 (RFC 8737, Section 3) and
// http-01 (RFC 8555, Section 8.3) are checked by the CA connecting to port
// 443 and port 80 of the name, never to port 25 or 465, so an SMTP listener
// cannot answer either. The host application must give the CA one of those
// ports, served by the same m (or by another Manager sharing its CacheDir,
// where challenge tokens are kept):
//
//   - http-01 on port 80:
//     go http.ListenAndServe(":80", m.HTTPHandler(nil)).
//     Calling m.HTTPHandler is also what enables http-01 in autocert; its
//     nil fallback redirects other requests to https.
//   - tls-alpn-01 on port 443:
//     ln, _ := tls.Listen("tcp", ":443", m.TLSConfig()), then serve HTTPS
//     (or nothing) on ln; a web server already on 443 may do this instead.
//
// With neither, certificates already in the cache are served until they
// expire, but none is obtained or renewed: handshakes for new names fall back
// to the Store as described on Store.ACME, and renewals fail (autocert
// retries them).
func (s *Store) ACMETLSConfig(m *autocert.Manager, o TLSOptions) (*tls.Config, error) {
	get, err := s.ACME(m)
	if err != nil {
		return nil, err
	}
	return ServerTLSConfig(get, o)
}
