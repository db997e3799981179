package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/policy"
)

// TLSA parameter values (RFC 6698 §2.1; mnemonics from RFC 7218 §2).
const (
	UsagePKIXTA uint8 = 0 // PKIX-TA: unusable for SMTP (RFC 7672 §3.1.3)
	UsagePKIXEE uint8 = 1 // PKIX-EE: unusable for SMTP (RFC 7672 §3.1.3)
	UsageDANETA uint8 = 2 // DANE-TA: trust anchor, names and dates checked (RFC 7672 §3.1.2)
	UsageDANEEE uint8 = 3 // DANE-EE: the server's own key, names and dates ignored (RFC 7672 §3.1.1)

	SelectorCert uint8 = 0 // Cert: the full DER certificate
	SelectorSPKI uint8 = 1 // SPKI: the DER SubjectPublicKeyInfo

	MatchFull   uint8 = 0 // Full: the selected content itself
	MatchSHA256 uint8 = 1 // SHA2-256 of the selected content
	MatchSHA512 uint8 = 2 // SHA2-512 of the selected content
)

// ErrBadTLSA is wrapped by ParseTLSA and FromDNS when a record cannot be read.
// It says nothing about whether a well-formed record is usable; see Usable.
var ErrBadTLSA = errors.New("dane: malformed TLSA record")

// Usable reports whether t is usable for SMTP under RFC 7672 §3.1.3: usage
// DANE-TA(2) or DANE-EE(3), selector Cert(0) or SPKI(1), matching type
// Full(0), SHA2-256(1) or SHA2-512(2), and association data of the length the
// matching type implies (32 or 64 bytes for digests, non-empty for Full; RFC
// 7671 §5.1 and RFC 6698 §2.1.3). PKIX-TA(0) and PKIX-EE(1) are unusable for
// SMTP because MX hosts do not use the WebPKI (RFC 7672 §3.1.3), and unknown
// values are unusable by definition (RFC 6698 §4.1).
func Usable(t policy.TLSA) bool {
	if t.Usage != UsageDANETA && t.Usage != UsageDANEEE {
		return false
	}
	if t.Selector != SelectorCert && t.Selector != SelectorSPKI {
		return false
	}
	switch t.MatchingType {
	case MatchFull:
		return len(t.Data) > 0
	case MatchSHA256:
		return len(t.Data) == sha256.Size
	case MatchSHA512:
		return len(t.Data) == sha512.Size
	}
	return false
}

// Split separates records into the usable and the unusable ones (see Usable),
// keeping their order. An RRset whose records are all unusable is, per RFC
// 7672 §2.2, treated as if no records were published except that TLS remains
// mandatory: the caller must use "encrypt", never plaintext.
func Split(records []policy.TLSA) (usable, unusable []policy.TLSA) {
	for _, r := range records {
		if Usable(r) {
			usable = append(usable, r)
		} else {
			unusable = append(unusable, r)
		}
	}
	return usable, unusable
}

// FromDNS converts a miekg/dns TLSA resource record (RFC 6698 §2.1) into a
// policy.TLSA. It fails only when the certificate association field is not
// valid hex; unknown parameter values are kept (they are unusable, not
// malformed, RFC 6698 §4.1).
func FromDNS(rr *dns.TLSA) (policy.TLSA, error) {
	if rr == nil {
		return policy.TLSA{}, fmt.Errorf("%w: nil record", ErrBadTLSA)
	}
	data, err := hex.DecodeString(rr.Certificate)
	if err != nil {
		return policy.TLSA{}, fmt.Errorf("%w: certificate association data: %v", ErrBadTLSA, err)
	}
	return policy.TLSA{Usage: rr.Usage, Selector: rr.Selector, MatchingType: rr.MatchingType, Data: data}, nil
}

// ToDNS builds the TLSA resource record for t owned by name (for example
// "_25._tcp.mx.example.") with the given TTL: the inverse of FromDNS, for
// operators publishing records and for tests.
func ToDNS(name string, ttl uint32, t policy.TLSA) *dns.TLSA {
	return &dns.TLSA{
		Hdr:          dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: ttl},
		Usage:        t.Usage,
		Selector:     t.Selector,
		MatchingType: t.MatchingType,
		Certificate:  hex.EncodeToString(t.Data),
	}
}

var (
	usageNames    = map[string]uint8{"PKIX-TA": 0, "PKIX-EE": 1, "DANE-TA": 2, "DANE-EE": 3, "PRIVCERT": 255}
	selectorNames = map[string]uint8{"CERT": 0, "SPKI": 1, "PRIVSEL": 255}
	matchingNames = map[string]uint8{"FULL": 0, "SHA2-256": 1, "SHA2-512": 2, "PRIVMATCH": 255}
)

func parseParam(s string, names map[string]uint8) (uint8, error) {
	if v, ok := names[strings.ToUpper(s)]; ok {
		return v, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("%w: parameter %q is neither 0-255 nor a known mnemonic", ErrBadTLSA, s)
	}
	return uint8(n), nil
}

// ParseTLSA parses the presentation form of a TLSA record's RDATA (RFC 6698
// §2.2): usage, selector and matching type, each a decimal number 0-255 or
// its RFC 7218 mnemonic ("DANE-EE", "SPKI", "SHA2-256", case-insensitive),
// followed by the certificate association data in hex, which may be split by
// white space as in zone files. For example
//
//	3 1 1 2bb5...e4a7
//	DANE-TA Cert SHA2-512 <128 hex digits>
//
// The owner name, TTL, class and type of a full zone-file line are not
// accepted: configuration names the host separately. ParseTLSA does not
// judge usability (see Usable); "0 0 1 ..." parses.
func ParseTLSA(s string) (policy.TLSA, error) {
	f := strings.Fields(s)
	if len(f) < 4 {
		return policy.TLSA{}, fmt.Errorf("%w: want \"usage selector matching-type hex-data\", got %d fields", ErrBadTLSA, len(f))
	}
	var t policy.TLSA
	var err error
	if t.Usage, err = parseParam(f[0], usageNames); err != nil {
		return policy.TLSA{}, err
	}
	if t.Selector, err = parseParam(f[1], selectorNames); err != nil {
		return policy.TLSA{}, err
	}
	if t.MatchingType, err = parseParam(f[2], matchingNames); err != nil {
		return policy.TLSA{}, err
	}
	h := strings.Join(f[3:], "")
	if t.Data, err = hex.DecodeString(h); err != nil {
		return policy.TLSA{}, fmt.Errorf("%w: certificate association data: %v", ErrBadTLSA, err)
	}
	if len(t.Data) == 0 {
		return policy.TLSA{}, fmt.Errorf("%w: empty certificate association data", ErrBadTLSA)
	}
	return t, nil
}

// FormatTLSA returns the presentation form of t's RDATA, "3 1 1 <hex>", which
// ParseTLSA reads back.
func FormatTLSA(t policy.TLSA) string {
	return fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, hex.EncodeToString(t.Data))
}

// Association computes the certificate association data of cert for the
// given selector and matching type (RFC 6698 §2.1.2, §2.1.3): what a TLSA
// record for cert must carry. Operators use it to publish records; the
// verifier uses it to match them.
func Association(cert *x509.Certificate, selector, matchingType uint8) ([]byte, error) {
	var content []byte
	switch selector {
	case SelectorCert:
		content = cert.Raw
	case SelectorSPKI:
		content = cert.RawSubjectPublicKeyInfo
	default:
		return nil, fmt.Errorf("dane: unknown TLSA selector %d", selector)
	}
	switch matchingType {
	case MatchFull:
		return append([]byte(nil), content...), nil
	case MatchSHA256:
		h := sha256.Sum256(content)
		return h[:], nil
	case MatchSHA512:
		h := sha512.Sum512(content)
		return h[:], nil
	}
	return nil, fmt.Errorf("dane: unknown TLSA matching type %d", matchingType)
}

// Record returns the TLSA record with the given usage, selector and matching
// type that matches cert. It fails only for an unknown selector or matching
// type.
func Record(cert *x509.Certificate, usage, selector, matchingType uint8) (policy.TLSA, error) {
	data, err := Association(cert, selector, matchingType)
	if err != nil {
		return policy.TLSA{}, err
	}
	return policy.TLSA{Usage: usage, Selector: selector, MatchingType: matchingType, Data: data}, nil
}
