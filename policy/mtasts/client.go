package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// Discovery errors. They reach callers wrapped in a *NoPolicyError (see
// Client.Get) or directly from LookupRecord and FetchPolicy.
var (
	// ErrNoRecord: no "_mta-sts" TXT record (NXDOMAIN, no TXT, or no record
	// starting "v=STSv1"). A valid cached policy still applies.
	ErrNoRecord = errors.New("mtasts: no MTA-STS TXT record")
	// ErrMultipleRecords: more than one MTA-STS TXT record; RFC 8461 §3.1
	// says to treat the domain as having no policy. A valid cached policy
	// still applies.
	ErrMultipleRecords = errors.New("mtasts: multiple MTA-STS TXT records")
	// ErrDNS: the TXT lookup failed temporarily. A valid cached policy still
	// applies.
	ErrDNS = errors.New("mtasts: DNS lookup failed")
	// ErrPolicyFetch: the policy could not be fetched over HTTPS (network
	// error, timeout, HTTP status other than 200, redirect). TLS-RPT result
	// type "sts-policy-fetch-error" (RFC 8460 §4.3.2.2).
	ErrPolicyFetch = errors.New("mtasts: policy fetch failed")
	// ErrWebPKI: the policy host's certificate is not valid in the WebPKI
	// (RFC 8461 §3.3). TLS-RPT result type "sts-webpki-invalid".
	ErrWebPKI = errors.New("mtasts: policy host certificate not valid")
	// ErrPolicyTooLarge: the policy body exceeds MaxPolicySize. Reported as
	// "sts-policy-invalid".
	ErrPolicyTooLarge = errors.New("mtasts: policy body too large")
	// ErrContentType: the policy was not served as text/plain (RFC 8461
	// §3.2). Also matches ErrPolicySyntax.
	ErrContentType = errors.New("mtasts: policy media type is not text/plain")
	// ErrModeNone: the domain publishes mode "none": it has withdrawn its
	// policy (RFC 8461 §8.3).
	ErrModeNone = errors.New("mtasts: policy mode is none")
)

// NoPolicyError says that a domain has no usable MTA-STS policy, and why
// (it matches policy.ErrNoPolicy with errors.Is). Deliver as the rest of the
// configuration says (static table, DANE, default level), as RFC 8461 §3.3
// and §5 require. The reason is in Err (ErrNoRecord, ErrMultipleRecords, ErrRecordSyntax, ErrDNS,
// ErrPolicyFetch, ErrWebPKI, ErrPolicySyntax, ErrPolicyTooLarge or
// ErrModeNone, possibly wrapped). Callers proceed as if the domain did not
// implement MTA-STS; a fetch failure is worth a TLS-RPT report
// (TLSRPTResultType).
type NoPolicyError struct {
	Domain string
	// Published is true when a valid MTA-STS TXT record was found: the
	// domain publishes a policy that could not be used, or publishes mode
	// none.
	Published bool
	Err       error
}

// Error says which domain has no policy and why.
func (e *NoPolicyError) Error() string {
	return fmt.Sprintf("mtasts: no policy for %s: %v", e.Domain, e.Err)
}

// Unwrap returns the reason.
func (e *NoPolicyError) Unwrap() error { return e.Err }

// Is reports whether target is policy.ErrNoPolicy: every *NoPolicyError
// matches it, so policy.Strictest treats the domain as having no MTA-STS
// opinion.
func (e *NoPolicyError) Is(target error) bool { return target == policy.ErrNoPolicy }

// TLSRPTResult implements policy.DiscoveryError, so that policy.Strictest
// and policy.Standard report a published policy that could not be used
// (RFC 8460 §4.3.2.2): policy type "sts" and TLSRPTResultType(e.Err), which
// is "" (nothing to report) for no record, a DNS failure or mode none.
func (e *NoPolicyError) TLSRPTResult() (policyType string, resultType policy.FailureType) {
	return "sts", TLSRPTResultType(e.Err)
}

var _ policy.DiscoveryError = (*NoPolicyError)(nil)

// TLSRPTResultType returns the RFC 8460 §4.3.2.2 result type for a policy
// discovery failure: "sts-webpki-invalid", "sts-policy-invalid",
// "sts-policy-fetch-error", or "" when err is not such a failure (no record,
// DNS failure, mode none).
func TLSRPTResultType(err error) policy.FailureType {
	switch {
	case errors.Is(err, ErrWebPKI):
		return policy.FailureSTSWebPKIInvalid
	case errors.Is(err, ErrPolicySyntax), errors.Is(err, ErrPolicyTooLarge):
		return policy.FailureSTSPolicyInvalid
	case errors.Is(err, ErrPolicyFetch):
		return policy.FailureSTSPolicyFetch
	}
	return policy.FailureNone
}

// MaxPolicySize is the largest policy body accepted, 64 KiB (RFC 8461 §3.3:
// "a suggested maximum policy size 64 kilobytes").
const MaxPolicySize = 64 * 1024

// TXTResolver is the DNS seam: *net.Resolver and go-mockdns's Resolver
// satisfy it. A not-found result must be a *net.DNSError with IsNotFound set
// (or an empty list).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Client discovers, caches and applies MTA-STS policies (RFC 8461). It
// implements policy.Policy.
//
// The zero value is usable: the system resolver, the system WebPKI roots, a
// one-minute fetch timeout and an in-memory cache. A Client must not be
// copied or have its fields changed after first use; it is safe for
// concurrent use. Concurrent lookups of the same uncached domain may each
// fetch the policy.
type Client struct {
	// Resolver looks up "_mta-sts.<domain>" TXT records and, when it also
	// has LookupIPAddr (it is a policy.Resolver, as *net.Resolver,
	// go-mockdns's Resolver and *dane.Resolver are) and DialContext is nil,
	// the address of the policy host, so that one resolver answers every
	// lookup of discovery. Nil means the resolver of the delivery in
	// progress when a Connector passed one in the context
	// (transport.Connector.DNS, see policy.WithResolver), else
	// net.DefaultResolver. Refresh and Run have no delivery in progress:
	// set Resolver for them to use the same resolver.
	Resolver TXTResolver
	// HTTPClient fetches policies. Nil means a client built from RootCAs and
	// DialContext that verifies the certificate against the WebPKI, uses no
	// proxy, keeps no connections open and has no cookie jar. When set, it
	// is copied and its CheckRedirect and Jar replaced so that redirects are
	// never followed (RFC 8461 §3.3); its Transport must verify certificates.
	HTTPClient *http.Client
	// RootCAs are the trust anchors for policy hosts when HTTPClient is nil.
	// Nil means the host's root CA set (the WebPKI).
	RootCAs *x509.CertPool
	// DialContext dials policy hosts by name ("mta-sts.<domain>:443") when
	// HTTPClient is nil, resolving them itself. Nil means a net.Dialer that
	// connects to the addresses the resolver (see Resolver) gives for the
	// policy host, trying them in order. Tests map
	// "mta-sts.<domain>:443" to a loopback server.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Cache holds policies across lookups. Nil means a MemoryCache private to
	// this Client. Use a *DirCache to survive restarts.
	Cache Cache
	// FetchTimeout bounds one policy fetch. Zero means one minute, the
	// timeout RFC 8461 §3.3 suggests.
	FetchTimeout time.Duration
	// RetryAfterFailure is how long a failed fetch for a domain and record
	// id is remembered before Lookup tries again, so that a broken policy
	// host is not hit once per message (RFC 8461 §3.3: "five minutes or
	// longer per version ID"). Zero means 5 minutes; negative disables.
	RetryAfterFailure time.Duration
	// RefreshInterval is how often Run calls Refresh. Zero means one hour.
	RefreshInterval time.Duration
	// RefreshAge is the age after which Refresh refetches a cached policy
	// (it also does so once half of max_age has passed, if that comes
	// first). Zero means 24 hours, the frequency RFC 8461 §3.3 suggests.
	RefreshAge time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Logger receives one line per discovery (domain, policy, mode, id,
	// result). Nil discards.
	Logger *slog.Logger

	once     sync.Once
	http     *http.Client
	memCache *MemoryCache

	mu       sync.Mutex
	failures map[string]failure // domain → last fetch failure
}

type failure struct {
	at  time.Time
	id  string
	err error
}

var _ policy.Policy = (*Client)(nil)

func (c *Client) init() {
	c.once.Do(func() {
		c.memCache = &MemoryCache{}
		if c.HTTPClient != nil {
			hc := *c.HTTPClient
			hc.CheckRedirect = refuseRedirect
			hc.Jar = nil
			c.http = &hc
			return
		}
		dial := c.DialContext
		if dial == nil {
			dial = c.dialPolicyHost
		}
		tr := &http.Transport{
			DialContext: dial,
			// Certificate and name are verified by crypto/tls against
			// RootCAs: a policy is only as trustworthy as the WebPKI
			// certificate it is served with (RFC 8461 §3.3, §10.2).
			TLSClientConfig:        &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    15 * time.Second,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		}
		c.http = &http.Client{Transport: tr, CheckRedirect: refuseRedirect}
	})
}

// txtResolver is Resolver, else the delivery's resolver in ctx
// (policy.WithResolver), else nil (net.DefaultResolver).
func (c *Client) txtResolver(ctx context.Context) TXTResolver {
	if c.Resolver != nil {
		return c.Resolver
	}
	if r := policy.ResolverFrom(ctx); r != nil {
		return r
	}
	return nil
}

// addrResolver is the resolver for the policy host's address: Resolver if
// it can look up addresses, else the delivery's resolver in ctx, else nil
// (the system's).
func (c *Client) addrResolver(ctx context.Context) policy.Resolver {
	if c.Resolver != nil {
		r, _ := c.Resolver.(policy.Resolver)
		return r
	}
	return policy.ResolverFrom(ctx)
}

// dialPolicyHost dials addr ("mta-sts.<domain>:443"), resolving its host
// through addrResolver, so that the policy host is looked up by the same
// resolver as the TXT record (RFC 8461 §3.3 fetch).
func (c *Client) dialPolicyHost(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second}
	r := c.addrResolver(ctx)
	host, port, err := net.SplitHostPort(addr)
	if r == nil || err != nil || net.ParseIP(host) != nil {
		return d.DialContext(ctx, network, addr)
	}
	ips, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return nil, errors.Join(errs...)
}

// refuseRedirect stops at the first response: RFC 8461 §3.3, "HTTP 3xx
// redirects MUST NOT be followed". The 3xx response then fails the status
// check.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Client) cache() Cache {
	c.init()
	if c.Cache != nil {
		return c.Cache
	}
	return c.memCache
}

// normalizeDomain lower-cases domain, strips a trailing dot and checks that
// it is an ASCII host name.
func normalizeDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	if !isDomain(d) || net.ParseIP(d) != nil {
		return "", fmt.Errorf("mtasts: invalid domain %q", domain)
	}
	return d, nil
}

// LookupRecord looks up and parses the "_mta-sts.<domain>" TXT record
// (RFC 8461 §3.1). Records not starting "v=STSv1" are discarded; if the
// remaining number is not one, or the one is invalid, the result is
// ErrMultipleRecords, ErrNoRecord or an error wrapping ErrRecordSyntax. A
// temporary failure wraps ErrDNS.
func (c *Client) LookupRecord(ctx context.Context, domain string) (*Record, error) {
	d, err := normalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	// A nil resolver stays nil here, which Lookup takes as net.DefaultResolver.
	txt, err := recordFormat().Lookup(ctx, c.txtResolver(ctx), "_mta-sts."+d+".")
	if err != nil {
		return nil, err
	}
	return ParseRecord(txt)
}

// FetchPolicy fetches and parses the policy for domain from
// "https://mta-sts.<domain>/.well-known/mta-sts.txt" (RFC 8461 §3.3). The
// certificate must be valid for "mta-sts.<domain>" in the WebPKI (else
// ErrWebPKI), redirects are not followed, any status but 200 is an error
// (ErrPolicyFetch), the media type must be text/plain (ErrContentType), the
// body may not exceed MaxPolicySize (ErrPolicyTooLarge), and the fetch is
// bounded by FetchTimeout. It returns the parsed policy and its text.
func (c *Client) FetchPolicy(ctx context.Context, domain string) (*Policy, string, error) {
	d, err := normalizeDomain(domain)
	if err != nil {
		return nil, "", err
	}
	c.init()
	timeout := c.FetchTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	url := "https://mta-sts." + d + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrPolicyFetch, err)
	}
	req.Header.Set("User-Agent", "mailtls-mtasts")
	resp, err := c.http.Do(req)
	if err != nil {
		if isCertError(err) {
			return nil, "", fmt.Errorf("%w: %v", ErrWebPKI, err)
		}
		return nil, "", fmt.Errorf("%w: %v", ErrPolicyFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Includes 3xx: redirects are refused (§3.3).
		return nil, "", fmt.Errorf("%w: HTTP status %q, want 200", ErrPolicyFetch, resp.Status)
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "text/plain" {
		return nil, "", fmt.Errorf("%w: %w: %q", ErrPolicySyntax, ErrContentType, ct)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, "", fmt.Errorf("%w: reading body: %v", ErrPolicyFetch, err)
	}
	if len(body) > MaxPolicySize {
		return nil, "", fmt.Errorf("%w: more than %d bytes", ErrPolicyTooLarge, MaxPolicySize)
	}
	text := string(body)
	p, err := ParsePolicy(text)
	if err != nil {
		return nil, text, err
	}
	return p, text, nil
}

func isCertError(err error) bool {
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// Get returns the policy that applies to domain now (RFC 8461 §5.1), using
// the cache and discovering as needed:
//
//   - the TXT record is looked up; if it names the id of a valid cached
//     policy, the cached policy is used without fetching;
//   - otherwise the policy is fetched and, on success, cached (even in mode
//     none, which replaces an older policy, §8.3);
//   - if the TXT lookup fails or finds no usable record, or the fetch fails,
//     a valid cached policy is still used (§3.3, §5.1, §10.2);
//   - with no valid cached policy the result is a *NoPolicyError.
//
// The returned entry may be in mode none; Lookup turns that into a
// *NoPolicyError. Only a cancelled ctx or an invalid domain yields another
// error.
func (c *Client) Get(ctx context.Context, domain string) (*Entry, error) {
	d, err := normalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	log := c.logger().With("domain", d)
	start := c.now()
	cache := c.cache()
	cached, haveCached, err := cache.Get(ctx, d)
	if err != nil {
		log.Warn("mta-sts cache read failed", "error", err)
		haveCached = false
	}
	if haveCached && !cached.Valid(start) {
		haveCached = false
	}
	useCached := func(reason error) (*Entry, error) {
		log.Debug("mta-sts using cached policy", "id", cached.RecordID, "mode", cached.Policy.Mode,
			"expires", cached.Expires, "reason", errString(reason))
		cached.DiscoveryErr = reason
		return &cached, nil
	}

	rec, err := c.LookupRecord(ctx, d)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if haveCached {
			return useCached(err)
		}
		// Info, not Debug: "no MTA-STS" decides how the domain is
		// delivered to (RFC 8461 §5), so an operator sees it.
		log.Info("mta-sts no policy", "result", errString(err))
		return nil, &NoPolicyError{Domain: d, Err: err}
	}
	if haveCached && cached.RecordID == rec.ID {
		return useCached(nil)
	}
	if f, ok := c.recentFailure(d, rec.ID, start); ok {
		if haveCached {
			return useCached(f)
		}
		return nil, &NoPolicyError{Domain: d, Published: true, Err: f}
	}
	e, err := c.fetch(ctx, d, rec.ID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.rememberFailure(d, rec.ID, err)
		log.Warn("mta-sts policy fetch failed", "id", rec.ID, "result", TLSRPTResultType(err),
			"error", err, "cached", haveCached)
		if haveCached {
			return useCached(err)
		}
		return nil, &NoPolicyError{Domain: d, Published: true, Err: err}
	}
	log.Info("mta-sts policy fetched", "id", e.RecordID, "mode", e.Policy.Mode,
		"max_age", e.Policy.MaxAge, "mx", strings.Join(e.Policy.MX, ","), "duration", c.now().Sub(start))
	return e, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// fetch fetches the policy and stores it in the cache.
func (c *Client) fetch(ctx context.Context, d, id string) (*Entry, error) {
	p, text, err := c.FetchPolicy(ctx, d)
	if err != nil {
		return nil, err
	}
	now := c.now()
	e := Entry{
		Domain:   d,
		RecordID: id,
		Text:     text,
		Policy:   *p,
		Fetched:  now,
		Expires:  now.Add(time.Duration(p.MaxAge) * time.Second),
	}
	if err := c.cache().Put(ctx, e); err != nil {
		// The policy is still good for this lookup.
		c.logger().Warn("mta-sts cache write failed", "domain", d, "error", err)
	}
	c.mu.Lock()
	delete(c.failures, d)
	c.mu.Unlock()
	return &e, nil
}

func (c *Client) retryAfter() time.Duration {
	if c.RetryAfterFailure == 0 {
		return 5 * time.Minute
	}
	return c.RetryAfterFailure
}

func (c *Client) recentFailure(d, id string, now time.Time) (error, bool) {
	if c.retryAfter() < 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failures[d]
	if !ok || f.id != id || now.Sub(f.at) >= c.retryAfter() || now.Before(f.at) {
		return nil, false
	}
	return f.err, true
}

func (c *Client) rememberFailure(d, id string, err error) {
	if c.retryAfter() < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures == nil {
		c.failures = map[string]failure{}
	}
	c.failures[d] = failure{at: c.now(), id: id, err: err}
}

// Lookup implements policy.Policy (RFC 8461 §5). For a policy in mode
// enforce or testing it returns a Requirement with Level policy.Verify,
// MXPatterns set to the policy's mx patterns, Mode Enforce or Testing,
// MXAuthenticated true only for enforce (RFC 8689 §4.2 accepts an enforced
// MTA-STS policy as MX authentication), PolicyString the policy text line
// by line (TLS-RPT's policy-string, RFC 8460 §4.3), OnFailure Defer, Source
// policy.SourceMTASTS, and a Reason "mta-sts id=<id> max_age=<seconds>
// mode=<mode>".
//
// When the policy is a valid cached one kept because discovery of a new
// one failed with a TLS-RPT result type (Entry.DiscoveryErr, RFC 8461
// §5.1), DiscoveryFailures holds that failure with the cached policy's
// text and patterns, and Reason says so, so that the failure is reported
// (RFC 8460 §4.3.2.2) while the cached policy is applied.
//
// For mode none, or when no policy is available, it returns a zero
// Requirement and a *NoPolicyError (errors.Is(err, policy.ErrNoPolicy)): the domain
// publishes nothing that constrains delivery. Its TLSRPTResult names a
// fetch, validation or WebPKI failure for TLS-RPT, also that of a failed
// refresh of a cached mode none policy. Other errors are a cancelled ctx
// or an invalid domain; callers must then defer.
func (c *Client) Lookup(ctx context.Context, domain string) (policy.Requirement, error) {
	e, err := c.Get(ctx, domain)
	if err != nil {
		return policy.Requirement{}, err
	}
	rt := TLSRPTResultType(e.DiscoveryErr)
	if e.Policy.Mode == ModeNone {
		reason := ErrModeNone
		if rt != "" {
			// The domain published a new policy id that could not be
			// fetched: still worth a report.
			reason = fmt.Errorf("%w (cached; refresh failed: %w)", ErrModeNone, e.DiscoveryErr)
		}
		return policy.Requirement{}, &NoPolicyError{Domain: e.Domain, Published: true, Err: reason}
	}
	mode := policy.Enforce
	if e.Policy.Mode == ModeTesting {
		mode = policy.Testing
	}
	req := policy.Requirement{
		Domain:          e.Domain,
		Level:           policy.Verify,
		MXPatterns:      append([]string(nil), e.Policy.MX...),
		MXAuthenticated: mode == policy.Enforce,
		Mode:            mode,
		OnFailure:       policy.Defer,
		Source:          policy.SourceMTASTS,
		PolicyString:    e.Lines(),
		Reason:          fmt.Sprintf("mta-sts id=%s max_age=%d mode=%s", e.RecordID, e.Policy.MaxAge, e.Policy.Mode),
	}
	if rt != "" {
		req.DiscoveryFailures = []policy.DiscoveryFailure{{
			PolicyType:   "sts",
			ResultType:   rt,
			Detail:       fmt.Sprintf("cached policy id=%s applied; refresh failed: %v", e.RecordID, e.DiscoveryErr),
			PolicyString: e.Lines(),
			MXPatterns:   append([]string(nil), e.Policy.MX...),
		}}
		req.Reason += " (cached; refresh failed: " + string(rt) + ")"
	}
	return req, nil
}

// Refresh proactively refreshes cached policies before they expire
// (RFC 8461 §3.3 and §10.2: refresh so that an attacker blocking discovery
// at the moment of expiry gains nothing; "a suggested refresh frequency is
// once per day"). Every cached entry older than RefreshAge or past half of
// its max_age is refetched: the TXT record is looked up and the policy
// fetched again, whatever the id, which renews its lifetime. On any failure
// the cached entry is kept and the failure logged at Warn level (Info for a
// policy in mode none, §3.3); an entry that has already expired and cannot
// be refreshed is deleted. Refresh returns the first cache error, or ctx's
// error.
func (c *Client) Refresh(ctx context.Context) error {
	cache := c.cache()
	domains, err := cache.Domains(ctx)
	if err != nil {
		return err
	}
	log := c.logger()
	var first error
	for _, d := range domains {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, ok, err := cache.Get(ctx, d)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if !ok {
			continue
		}
		now := c.now()
		due := e.Fetched.Add(e.Expires.Sub(e.Fetched) / 2)
		if byAge := e.Fetched.Add(c.refreshAge()); byAge.Before(due) {
			due = byAge
		}
		if now.Before(due) {
			continue
		}
		rec, err := c.LookupRecord(ctx, d)
		if err == nil {
			_, err = c.fetch(ctx, d, rec.ID)
		}
		if err == nil {
			log.Info("mta-sts policy refreshed", "domain", d, "id", rec.ID)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !e.Valid(now) {
			log.Info("mta-sts expired policy dropped", "domain", d, "error", err)
			if derr := cache.Delete(ctx, d); derr != nil && first == nil {
				first = derr
			}
			continue
		}
		lvl := slog.LevelWarn
		if e.Policy.Mode == ModeNone {
			lvl = slog.LevelInfo
		}
		log.Log(ctx, lvl, "mta-sts refresh failed, keeping cached policy", "domain", d, "id", e.RecordID,
			"mode", e.Policy.Mode, "expires", e.Expires, "result", TLSRPTResultType(err), "error", err)
	}
	return first
}

func (c *Client) refreshAge() time.Duration {
	if c.RefreshAge <= 0 {
		return 24 * time.Hour
	}
	return c.RefreshAge
}

// Run calls Refresh every RefreshInterval until ctx is done, then returns
// ctx's error. It is the Client's only background work; nothing runs unless
// the host calls Run.
func (c *Client) Run(ctx context.Context) error {
	iv := c.RefreshInterval
	if iv <= 0 {
		iv = time.Hour
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			c.logger().Warn("mta-sts refresh", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
