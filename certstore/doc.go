// Package certstore holds the X.509 certificates and keys of a mail server
// and builds its server *tls.Config with the defaults of RFC 9325 (BCP 195,
// "Recommendations for Secure Use of TLS and DTLS").
//
// It knows nothing about SMTP. It provides:
//
//   - Loading PEM certificate chains and keys (RSA of at least 2048 bits,
//     ECDSA, Ed25519; PKCS#8, PKCS#1 and SEC1 key encodings) with checks
//     that fail early and say which file is wrong and why: the key must
//     match the certificate, every certificate must be within its validity
//     period (RFC 5280, Section 4.1.2.5), and each certificate in the file
//     must be signed by the next (RFC 5280, Section 6; RFC 8446, Section
//     4.4.2), optionally up to given roots. See Loader and Error.
//   - A Store of several certificates chosen by the server name the client
//     sends (Server Name Indication, RFC 6066, Section 3), exactly or by a
//     single-label wildcard, with a default certificate for clients that
//     send no name, which is what most MTAs do on port 25.
//   - Reload, which swaps the whole set atomically for new handshakes while
//     established connections carry on, and keeps the old set if the new
//     files are bad; Watch, which polls the files and reloads on change.
//   - Expiring, a report of certificates close to their notAfter date.
//   - ClientCertificate, the certificate a route presents for outbound
//     mutual TLS.
//   - GenerateSelfSigned and friends (ECDSA P-256) for development and tests.
//   - TLSConfig: TLS 1.2 minimum (or 1.3 only), ECDHE+AEAD suites only for
//     TLS 1.2, Go's default key exchanges kept (X25519MLKEM768, X25519,
//     P-256), session tickets on, and a client certificate policy
//     (ClientAuthPolicy; RFC 8446, Section 4.3.2). TLSOptions is the one
//     place a server's minimum version and client certificate policy are
//     chosen; a consumer of the built Config reads them back from it
//     (EffectiveMinVersion, ClientAuthPolicyOf), as transport.Server does.
//   - ACME (RFC 8555) through golang.org/x/crypto/acme/autocert:
//     NewACMEManager builds an autocert.Manager restricted to given host
//     names with a persistent cache, and Store.ACMETLSConfig (or Store.ACME
//     for the GetCertificate function alone) serves its certificates for
//     those names while clients that send no SNI, names outside the
//     Manager's HostPolicy, and ACME failures get the Store's certificates.
//     The mail ports keep the RFC 9325 configuration above, without ALPN, so
//     the CA's http-01 (port 80) or tls-alpn-01 (RFC 8737, port 443)
//     challenge must be served by the host application; see
//     Store.ACMETLSConfig.
//
// The same certificates serve every mail port: port 25 with STARTTLS (RFC
// 3207) and implicit-TLS submission on port 465 (RFC 8314, Section 3.3),
// which is why the no-SNI default matters and why the configuration is
// built in one place.
//
// Not done here: ACME's dns-01 challenge, and so wildcard ACME
// certificates, are not available (autocert does not do them), nor
// certificates for IP addresses (RFC 8738); ACME certificates are not
// listed by Expiring, since autocert renews them itself. OCSP stapling
// (RFC 6066, Section 8) is not done, nor revocation checking of loaded
// certificates, nor encrypted private keys, nor hardware keys: Validate,
// and so every Source, accepts only *rsa.PrivateKey, *ecdsa.PrivateKey and
// ed25519.PrivateKey, so that key strength can be checked (another
// crypto.Signer is an ErrUnsupportedKey error). Certificate Transparency
// and DANE TLSA records (RFC 7672) for these certificates are the
// operator's business; the policy package checks DANE for outbound mail.
package certstore
