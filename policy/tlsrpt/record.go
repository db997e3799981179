package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/mailtls/mailtls/internal/txtrecord"
)

// Record errors.
var (
	// ErrRecordSyntax: the "_smtp._tls" TXT record is invalid (RFC 8460
	// §3); treat the domain as not wanting reports.
	ErrRecordSyntax = errors.New("tlsrpt: invalid TXT record")
	// ErrNoRecord: no "_smtp._tls" record starting "v=TLSRPTv1": the domain
	// wants no reports.
	ErrNoRecord = errors.New("tlsrpt: no TLS-RPT TXT record")
	// ErrMultipleRecords: more than one TLS-RPT record; RFC 8460 §3 says
	// to treat the domain as not implementing TLS-RPT.
	ErrMultipleRecords = errors.New("tlsrpt: multiple TLS-RPT TXT records")
	// ErrDNS: the TXT lookup failed temporarily; try again later.
	ErrDNS = errors.New("tlsrpt: DNS lookup failed")
)

// Extension is an unknown key=value field of a record, kept for logging
// (RFC 8460 §3 requires unknown fields to be ignored).
type Extension struct {
	Key   string
	Value string
}

// Record is a parsed "_smtp._tls.<domain>" TXT record (RFC 8460 §3), e.g.
// "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/".
type Record struct {
	// RUA lists the aggregate report URIs in order, as written (percent
	// escapes kept). At least one.
	RUA []string
	// Extensions holds unknown fields.
	Extensions []Extension
}

// String returns the record in canonical TXT form.
func (r Record) String() string {
	var b strings.Builder
	b.WriteString("v=TLSRPTv1; rua=" + strings.Join(r.RUA, ","))
	for _, e := range r.Extensions {
		b.WriteString("; " + e.Key + "=" + e.Value)
	}
	return b.String()
}

// MailtoAddresses returns the addresses of the record's "mailto:" URIs
// (RFC 8460 §3, §5.3), percent-decoded, without "?" header fields. The
// queue sends the BuildMail message to each.
func (r Record) MailtoAddresses() []string {
	var l []string
	for _, s := range r.RUA {
		u, err := url.Parse(s)
		if err != nil || !strings.EqualFold(u.Scheme, "mailto") || u.Opaque == "" {
			continue
		}
		addr, err := url.PathUnescape(u.Opaque)
		if err != nil || !strings.Contains(addr, "@") {
			continue
		}
		l = append(l, addr)
	}
	return l
}

// HTTPSURLs returns the record's "https:" URIs (RFC 8460 §3, §5.4), for
// NewHTTPRequest.
func (r Record) HTTPSURLs() []string {
	var l []string
	for _, s := range r.RUA {
		u, err := url.Parse(s)
		if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" {
			continue
		}
		l = append(l, s)
	}
	return l
}

// recordFormat is the "_smtp._tls" TXT record format (RFC 8460 §3) and this
// package's errors for it.
func recordFormat() txtrecord.Format {
	return txtrecord.Format{
		Version:            "v=TLSRPTv1",
		ListFields:         []string{"rua"},
		ErrSyntax:          ErrRecordSyntax,
		ErrNoRecord:        ErrNoRecord,
		ErrMultipleRecords: ErrMultipleRecords,
		ErrDNS:             ErrDNS,
	}
}

// ParseRecord parses a TLS-RPT TXT record strictly, per RFC 8460 §3:
//
//	tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//	field-delim      = *WSP ";" *WSP
//	tlsrpt-version   = %s"v=TLSRPTv1"
//	tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//	tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
//
// rua is required; a second rua field adds its URIs. Each URI must parse
// and have a scheme; "," ";" "!" and spaces inside a URI must be
// percent-encoded. URIs with schemes other than mailto and https are kept
// but ignored by MailtoAddresses and HTTPSURLs.
func ParseRecord(txt string) (*Record, error) {
	fail := func(format string, args ...any) (*Record, error) {
		return nil, fmt.Errorf("%w: %s", ErrRecordSyntax, fmt.Sprintf(format, args...))
	}
	var r Record
	for f, err := range recordFormat().Fields(txt) {
		if err != nil {
			return nil, err
		}
		if f.Name == "rua" {
			if err := checkURI(f.Value); err != nil {
				return fail("rua: %v", err)
			}
			r.RUA = append(r.RUA, f.Value)
			continue
		}
		// tlsrpt-extension
		if !txtrecord.IsExtValue(f.Value) {
			return fail("invalid value for %q", f.Name)
		}
		r.Extensions = append(r.Extensions, Extension{Key: f.Name, Value: f.Value})
	}
	if len(r.RUA) == 0 {
		return fail("missing rua")
	}
	return &r, nil
}

func checkURI(s string) error {
	if s == "" {
		return errors.New("empty URI")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '!' {
			return fmt.Errorf("URI %q: character %q must be percent-encoded", s, c)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URI %q: %v", s, err)
	}
	if u.Scheme == "" {
		return fmt.Errorf("URI %q has no scheme", s)
	}
	return nil
}

// TXTResolver is the DNS seam: *net.Resolver and go-mockdns's Resolver
// satisfy it. Not-found must be a *net.DNSError with IsNotFound set (or an
// empty list).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// LookupRecord looks up "_smtp._tls.<domain>" (RFC 8460 §3) through
// resolver (nil means net.DefaultResolver). Records not starting
// "v=TLSRPTv1" are discarded; none left is ErrNoRecord, more than one
// ErrMultipleRecords, an invalid one ErrRecordSyntax, a temporary failure
// ErrDNS.
func LookupRecord(ctx context.Context, resolver TXTResolver, domain string) (*Record, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if !isDomain(d) {
		return nil, fmt.Errorf("tlsrpt: invalid domain %q", domain)
	}
	txt, err := recordFormat().Lookup(ctx, resolver, "_smtp._tls."+d+".")
	if err != nil {
		return nil, err
	}
	return ParseRecord(txt)
}

// isDomain reports whether s is an ASCII host name: LDH labels, with "_"
// also allowed in a label.
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
