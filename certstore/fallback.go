package certstore

import (
	"crypto/tls"
)

// Fallback returns a tls.Config GetCertificate function that asks primary
// first and the Store second, for any other certificate source. For ACME
// (RFC 8555) use Store.ACME or Store.ACMETLSConfig, which also keep
// autocert's tls-alpn-01 challenge answers away from the Store.
//
// A client that sends no server name (RFC 6066, Section 3), as most MTAs
// do, goes straight to the Store and gets its default certificate: autocert
// alone fails those handshakes. A client for which primary returns an error
// (a name outside autocert's HostPolicy, an ACME outage) also gets the
// Store's choice, so a mail server never loses a STARTTLS client to an ACME
// problem; the error is logged at debug level.
func (s *Store) Fallback(primary func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" || primary == nil {
			return s.GetCertificate(hello)
		}
		c, err := primary(hello)
		if err == nil && c != nil {
			return c, nil
		}
		s.log().Debug("certstore: primary certificate source failed, using the store", "sni", hello.ServerName, "err", err)
		return s.GetCertificate(hello)
	}
}
