package dane

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// Verification errors. Verify wraps exactly one of them; match with
// errors.Is, and map to a TLS-RPT result type with ResultType. All of them
// mean the server is not authenticated: the connection must be abandoned and
// the message deferred or sent to another MX host (RFC 7672 §2.2), never sent
// over it.
var (
	// ErrNoMatch: no usable TLSA record matched the presented certificate
	// chain (RFC 7672 §3.1). TLS-RPT "validation-failure".
	ErrNoMatch = errors.New("dane: no TLSA record matches the server certificate chain")
	// ErrHostMismatch: a DANE-TA(2) record matched and the chain verified,
	// but the leaf certificate names none of the reference identifiers (RFC
	// 7672 §3.2.2). TLS-RPT "certificate-host-mismatch".
	ErrHostMismatch = errors.New("dane: certificate does not match the TLSA base domain or MX host name")
	// ErrExpired: a DANE-TA(2) record matched but a certificate in the chain
	// to it is expired or not yet valid (RFC 7672 §3.1.2). TLS-RPT
	// "certificate-expired".
	ErrExpired = errors.New("dane: certificate chain to the DANE-TA trust anchor is expired or not yet valid")
	// ErrNotTrusted: a DANE-TA(2) record matched a certificate but the chain
	// from the leaf to it does not verify. TLS-RPT "certificate-not-trusted".
	ErrNotTrusted = errors.New("dane: certificate chain does not verify to the DANE-TA trust anchor")
	// ErrNoCertificate: the server presented no certificate. TLS-RPT
	// "validation-failure".
	ErrNoCertificate = errors.New("dane: server presented no certificate")
	// ErrNoUsableRecords: Verify was given no usable record. This is a caller
	// error, not a server failure: with only unusable records the level is
	// "encrypt" and nothing is verified (RFC 7672 §2.2). Verify fails closed
	// rather than accept any certificate. TLS-RPT "tlsa-invalid".
	ErrNoUsableRecords = errors.New("dane: no usable TLSA records to verify against")
)

// Match reports whether cert matches the certificate association of r
// (RFC 6698 §2.1.2-2.1.3), ignoring r's usage. Unknown selectors and matching
// types never match.
func Match(cert *x509.Certificate, r policy.TLSA) bool {
	if cert == nil {
		return false
	}
	data, err := Association(cert, r.Selector, r.MatchingType)
	return err == nil && bytes.Equal(data, r.Data)
}

// Verify checks the server certificate chain of a TLS connection against
// DNSSEC-authenticated TLSA records, as RFC 7672 §3 requires of an SMTP
// client. Records that are not Usable are skipped. The connection is
// authenticated when any usable record passes:
//
//   - DANE-EE(3) (RFC 7672 §3.1.1): the leaf certificate, or its public key
//     for selector SPKI(1), matches the record. Names, validity dates, the
//     rest of the chain and key usage are ignored, as RFC 7672 §3.1.1 and RFC
//     7671 §5.1 require: the record itself is the authentication.
//   - DANE-TA(2) (RFC 7672 §3.1.2): some certificate the server presented
//     (leaf, intermediate or root) matches the record; the chain from the
//     leaf up to that certificate verifies with crypto/x509 using it as the
//     only root, with every certificate valid at now; and the leaf names one
//     of names (RFC 7672 §3.2.2-3.2.3). A trust anchor that the server did
//     not include in its chain is not found: RFC 7671 §5.2.2 requires servers
//     to send it, and a bare public key (selector SPKI(1), matching Full(0))
//     is not used as an anchor on its own.
//
// names are the reference identifiers for DANE-TA: the TLSA base domain
// first, then the MX host name and, when the MX RRset was secure, the
// next-hop domain (Host.Names gives them). They are compared
// case-insensitively without a trailing dot against the certificate's DNS
// subjectAltNames, a leading "*." in the certificate matching exactly one
// label (RFC 7672 §3.2.3); the subject common name is consulted only when the
// certificate has no DNS subjectAltName.
//
// On failure the error wraps one of ErrNoMatch, ErrHostMismatch, ErrExpired,
// ErrNotTrusted, ErrNoCertificate or ErrNoUsableRecords; when several
// DANE-TA records matched and failed differently the most specific failure
// (host mismatch, then expiry, then trust) is reported.
func Verify(cs tls.ConnectionState, records []policy.TLSA, names []string, now time.Time) error {
	return VerifyChain(cs.PeerCertificates, records, names, now)
}

// VerifyChain is Verify for a certificate chain as presented by the server,
// leaf first.
func VerifyChain(chain []*x509.Certificate, records []policy.TLSA, names []string, now time.Time) error {
	if len(chain) == 0 || chain[0] == nil {
		return ErrNoCertificate
	}
	usable, _ := Split(records)
	if len(usable) == 0 {
		return ErrNoUsableRecords
	}
	leaf := chain[0]
	// DANE-EE first: cheapest, and a match ends the check.
	for _, r := range usable {
		if r.Usage == UsageDANEEE && Match(leaf, r) {
			return nil
		}
	}
	var best error
	rank := func(err error) int {
		switch {
		case errors.Is(err, ErrHostMismatch):
			return 3
		case errors.Is(err, ErrExpired):
			return 2
		case errors.Is(err, ErrNotTrusted):
			return 1
		}
		return 0
	}
	for _, r := range usable {
		if r.Usage != UsageDANETA {
			continue
		}
		for i, c := range chain {
			if c == nil || !Match(c, r) {
				continue
			}
			err := verifyTA(chain, i, names, now)
			if err == nil {
				return nil
			}
			if best == nil || rank(err) > rank(best) {
				best = err
			}
		}
	}
	if best != nil {
		return best
	}
	return ErrNoMatch
}

// verifyTA verifies chain[0] up to chain[anchor] with chain[anchor] as the
// only root, then checks the names.
func verifyTA(chain []*x509.Certificate, anchor int, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(chain[anchor])
	inter := x509.NewCertPool()
	for i, c := range chain[1:] {
		if i+1 != anchor && c != nil {
			inter.AddCert(c)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// RFC 7672 does not constrain extended key usage; MTA certificates
		// are often issued without serverAuth.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return fmt.Errorf("%w: %v", ErrNotTrusted, err)
	}
	if !MatchNames(chain[0], names) {
		return fmt.Errorf("%w: certificate names %v, want one of %v", ErrHostMismatch, certNames(chain[0]), names)
	}
	return nil
}

func certNames(c *x509.Certificate) []string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames
	}
	return []string{c.Subject.CommonName}
}

// MatchNames reports whether cert names one of names under the rules of RFC
// 7672 §3.2.3 described at Verify. An empty names never matches.
func MatchNames(cert *x509.Certificate, names []string) bool {
	for _, n := range names {
		n = normName(n)
		if n == "" {
			continue
		}
		for _, p := range certNames(cert) {
			if matchName(normName(p), n) {
				return true
			}
		}
	}
	return false
}

func normName(s string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), ".")) }

// matchName matches a presented identifier p (possibly "*.rest") against a
// reference identifier n, both normalised.
func matchName(p, n string) bool {
	if p == "" {
		return false
	}
	if p == n {
		return true
	}
	rest, ok := strings.CutPrefix(p, "*.")
	if !ok || rest == "" || strings.Contains(rest, "*") {
		return false
	}
	label, parent, ok := strings.Cut(n, ".")
	return ok && label != "" && parent == rest
}

// VerifyConnection returns a function for tls.Config.VerifyConnection that
// calls Verify with records, names and the time now returns (time.Now when
// now is nil). The tls.Config must set InsecureSkipVerify so that crypto/tls
// does not apply WebPKI verification first: DANE replaces it (RFC 7672 §3.1).
// Host.ClientConfig does both.
func VerifyConnection(records []policy.TLSA, names []string, now func() time.Time) func(tls.ConnectionState) error {
	records = append([]policy.TLSA(nil), records...)
	names = append([]string(nil), names...)
	return func(cs tls.ConnectionState) error {
		t := time.Now()
		if now != nil {
			t = now()
		}
		return Verify(cs, records, names, t)
	}
}

// ResultType maps an error from this package to the TLS-RPT result type
// (RFC 8460 §4.3) a report should carry, or "" for nil and for errors this
// package does not produce:
//
//	ErrNoMatch, ErrNoCertificate       validation-failure (no DANE-specific type exists)
//	ErrHostMismatch                    certificate-host-mismatch
//	ErrExpired                         certificate-expired
//	ErrNotTrusted                      certificate-not-trusted
//	ErrNoUsableRecords                 tlsa-invalid
//	ErrLookupFailed (SERVFAIL, bogus)  dnssec-invalid
//	ErrDANERequired                    dane-required
//
// An RRset of only unusable records is not an error at level "dane" (the
// delivery uses "encrypt"), but a report may still record it as
// "tlsa-invalid"; Host.Unusable tells the caller.
func ResultType(err error) policy.FailureType {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrHostMismatch):
		return policy.FailureCertificateHostMismatch
	case errors.Is(err, ErrExpired):
		return policy.FailureCertificateExpired
	case errors.Is(err, ErrNotTrusted):
		return policy.FailureCertificateNotTrusted
	case errors.Is(err, ErrNoMatch), errors.Is(err, ErrNoCertificate):
		return policy.FailureValidation
	case errors.Is(err, ErrNoUsableRecords):
		return policy.FailureTLSAInvalid
	case errors.Is(err, ErrLookupFailed):
		return policy.FailureDNSSECInvalid
	case errors.Is(err, ErrDANERequired):
		return policy.FailureDANERequired
	}
	return ""
}
