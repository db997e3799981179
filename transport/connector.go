package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
)

// Resolver is the DNS the Connector uses for MX and address lookups.
// *net.Resolver satisfies it, and so does go-mockdns's *mockdns.Resolver.
// Implementations must be safe for concurrent use and honour ctx.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Dialer opens TCP connections. *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

var (
	_ Resolver = (*net.Resolver)(nil)
	_ Dialer   = (*net.Dialer)(nil)
)

// ConnectorTimeouts bound each step of an outbound SMTP session (the
// Server's are ServerTimeouts). A zero field takes the
// default shown, from RFC 5321 §4.5.3.2 where it names one.
type ConnectorTimeouts struct {
	Connect  time.Duration // TCP connect; 30s
	Greeting time.Duration // the 220 greeting; 5m (§4.5.3.2.1)
	Command  time.Duration // EHLO, STARTTLS and TLS handshake, AUTH, MAIL, RCPT, DATA, RSET; 5m
	Data     time.Duration // sending the body and the reply to the final dot; 10m (§4.5.3.2.6)
}

func (t ConnectorTimeouts) connect() time.Duration  { return orDefault(t.Connect, 30*time.Second) }
func (t ConnectorTimeouts) greeting() time.Duration { return orDefault(t.Greeting, 5*time.Minute) }
func (t ConnectorTimeouts) command() time.Duration  { return orDefault(t.Command, 5*time.Minute) }
func (t ConnectorTimeouts) data() time.Duration     { return orDefault(t.Data, 10*time.Minute) }

// PoolConfig controls reuse of idle connections between Deliver calls.
// The zero value disables pooling: every Deliver opens and closes its own
// connections.
type PoolConfig struct {
	// MaxIdle is the number of idle connections kept per next-hop address
	// and policy. Zero disables pooling. A pooled connection is only reused
	// for a message whose route, policy and EHLO name are the same as the
	// ones it was opened under, and is checked with RSET (RFC 5321
	// §4.1.1.5) first; one that does not answer 250 is closed and a new one
	// opened.
	MaxIdle int
	// IdleTimeout is how long an idle connection is kept before QUIT.
	// Zero means 30 seconds, well under the 5 minutes a server waits
	// (RFC 5321 §4.5.3.2.7).
	IdleTimeout time.Duration
}

// Connector delivers messages to their next hops under a TLS policy: the
// outbound half of an MTA (RFC 5321 §5 for routing, RFC 3207 for STARTTLS).
// Where the policy requires TLS (Encrypt and above), a missing STARTTLS, a
// refused STARTTLS, a failed handshake, a refused certificate or a TLS
// version below the minimum ends the attempt before MAIL FROM: no envelope
// address and no body byte is ever written to an unprotected socket.
//
// Implemented: MX selection with null MX (RFC 7505) and implicit MX
// (RFC 5321 §5.1); MTA-STS MX patterns (RFC 8461 §4.1, from the
// Requirement); the Postfix levels none, may, encrypt, verify, secure;
// EHLO re-issued after STARTTLS (RFC 3207 §4.2); SIZE (RFC 1870),
// 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531, no downgrade), DSN parameters
// and "relayed" (RFC 3461), REQUIRETLS and TLS-Required: No (RFC 8689),
// AUTH PLAIN over verified TLS only (RFC 4954, RFC 4616); implicit TLS to fixed
// next hops (RFC 8314 §3); TLS failures named with TLS-RPT result types
// (RFC 8460 §4.3); DANE per MX host (RFC 7672, with the DANE field);
// TLS-RPT results per attempt (RFC 8460 §4.3, with the TLSRPT field); MTA-STS
// testing mode checked and reported, not enforced (RFC 8461 §5), with an MX
// outside its patterns reported as a validation failure; one resolver for
// every DNS lookup of a delivery (the DNS field), each query sent once per
// Deliver call; the mail transaction in one flight with PIPELINING (RFC
// 2920) and the body after BDAT with CHUNKING (RFC 3030), never before the
// hop's TLS requirement is met. Not implemented: BINARYMIME (RFC 3030
// §3), 8-bit to 7-bit downgrade, LMTP.
//
// Every zero field is safe and strict: a nil Policy requires Verify
// everywhere, and an empty Hostname is this host's name when it is fully
// qualified (else Validate and Deliver refuse to run). Call Validate once
// at start (transport/queue's Queue.Run does).
// A Connector is safe for concurrent use; it must not be copied or modified
// after first use. Close releases pooled connections.
type Connector struct {
	// Hostname is the name sent in EHLO (RFC 5321 §4.1.1.1), before and
	// after STARTTLS, and must be this host's public, fully-qualified name.
	// An IP address is sent as an address literal (RFC 5321 §4.1.3).
	// "localhost" and names without a dot are refused, because real MTAs
	// reject or penalise them. Empty means this host's name (os.Hostname)
	// if it is fully qualified, as for Server.Hostname (Postfix's
	// myhostname); if it is not, Validate and Deliver fail with ErrConfig.
	Hostname string

	// Policy gives the TLS requirement per destination. Nil means Verify
	// for every destination (source "default"). A lookup error defers the
	// recipients; it never downgrades. For recipients routed to a fixed
	// next hop it is asked for the next hop and for the recipient domain,
	// and the strictest answer applies (see Route.Policy).
	Policy policy.Policy

	// Routes maps recipient domains to next hops; see Route. Recipients
	// without a matching route go to their domain's MX hosts. Recipients
	// of several domains routed to one next hop share a transaction when
	// their requirements are the same.
	Routes []Route

	// DNS is the one resolver for every DNS lookup of a delivery: MX and
	// address records (RFC 5321 §5.1), TLSA records and the DNSSEC-aware MX
	// and address lookups of DANE (RFC 7672 §2.2, when DANE is set and
	// DANE.Resolver is nil), and, handed to Policy.Lookup in the context
	// (policy.WithResolver), the lookups of the policies that have no
	// resolver of their own: the MTA-STS TXT record and the policy host's
	// address of an mtasts.Client (RFC 8461 §3.1, §3.3), and a
	// dane.Policy's queries. Point it at a validating resolver on this host
	// (DANE believes the AD bit only on loopback, see dane.Trust) to have
	// every lookup answered by it. Resolver, DANE.Resolver and the
	// mtasts.Client's own Resolver, when set, take precedence for their
	// lookups (test seams). Nil: Resolver, else the system resolver, for MX
	// and addresses; each policy its own resolver.
	DNS *dane.Resolver

	// Resolver looks up the MX and address records that DANE does not
	// (all of them when DANE is nil). Nil means DNS, else
	// net.DefaultResolver. go-mockdns's *mockdns.Resolver fits, for tests.
	Resolver Resolver

	// Dialer opens connections. Nil means a net.Dialer with
	// Timeouts.Connect.
	Dialer Dialer

	// RootCAs verifies server certificates at Verify and Secure. Nil means
	// the host's root CA set.
	RootCAs *x509.CertPool

	// Port is the port dialled on MX hosts. Zero means 25. Fixed next hops
	// carry their own port.
	Port int

	// MaxAddresses bounds the number of addresses tried per destination and
	// Deliver call (Postfix's smtp_mx_address_limit). Zero means 5.
	MaxAddresses int

	// Timeouts bound each step; zero fields take RFC 5321 defaults.
	Timeouts ConnectorTimeouts

	// DisablePipelining sends one command per round trip even to servers
	// that offer PIPELINING (RFC 2920) and CHUNKING (RFC 3030). By default
	// the mail transaction of a TLS-ready session is one flight: MAIL,
	// every RCPT and DATA, or with CHUNKING "BDAT n LAST" and the body
	// (one round trip per message).
	DisablePipelining bool

	// Pool enables reuse of idle connections. The zero value disables it.
	Pool PoolConfig

	// SessionCache caches TLS sessions for resumption (RFC 8446 §2.2).
	// Nil means a per-Connector LRU cache of 128 sessions.
	SessionCache tls.ClientSessionCache

	// DANE, when set, makes delivery DANE-aware (RFC 7672): MX hosts and
	// their addresses are resolved through its DNSSEC-aware resolver
	// (DANE.Resolver, or DNS when that is nil) (the
	// authenticated MX set counts for REQUIRETLS, RFC 8689 §4.2.1), and
	// each host is checked against its own TLSA records, with SNI set to
	// its TLSA base domain (RFC 7672 §8.1). Hosts with usable records need
	// TLS and a matching certificate; hosts with only unusable records need
	// TLS; hosts without records keep the Policy's level ("dane" falls back
	// as in Postfix), except under dane-only, where they are not used. A
	// failed DNSSEC lookup makes the host unusable and defers, never
	// downgrades. DANE takes over from MTA-STS and from weaker levels but
	// not from a Verify or Secure level of the Policy's own (static,
	// default, route) or an override (see policy.Standard). Fixed next
	// hops use it only on the policy's port (25).
	// Nil: the DANE member of Policy when Policy has one that is a
	// *dane.Policy (policy.DANEMember: policy.Standard, policy.Outbound),
	// so that DANE is configured once; else MX and addresses come from
	// Resolver and DANE is not applied, and a Policy answer carrying TLSA
	// records fails closed (ErrDANE).
	DANE *dane.Policy

	// TLSRPT, when set, receives one TLS-RPT result per delivery attempt
	// to an MX host (RFC 8460 §4.3): success, or the failure type with the
	// sending and receiving IP and MX host name, under the policy type of
	// the policy applied ("tlsa" when the host was checked with DANE, "sts"
	// when an MTA-STS policy applied, "no-policy-found" otherwise) with its
	// policy-string and mx-host patterns. A *tlsrpt.FileStore fits. Nil
	// records nothing.
	TLSRPT TLSReporter

	// Logger receives one line per delivery attempt. Nil discards.
	Logger *slog.Logger

	// Observer, when set, receives one event per recipient result and one
	// per connection attempt that met a TLS failure (see Observer), for
	// metrics. Nil, the zero value, observes nothing at no cost.
	Observer Observer

	// Now returns the current time, for certificate validity and result
	// timestamps. Nil means time.Now.
	Now func() time.Time

	// Shuffle randomises MX hosts of equal preference (RFC 5321 §5.1). Nil
	// means math/rand/v2.Shuffle. Tests set it to a no-op for determinism.
	Shuffle func(n int, swap func(i, j int))

	once   sync.Once
	cache  tls.ClientSessionCache
	pool   *connPool
	osName string // os.Hostname, for an empty Hostname
}

// Close closes idle pooled connections (with QUIT) and stops pooling.
// Deliver calls after Close still work, without pooling.
func (c *Connector) Close() error {
	c.init()
	c.pool.close()
	return nil
}

func (c *Connector) init() {
	c.once.Do(func() {
		c.cache = c.SessionCache
		if c.cache == nil {
			c.cache = tls.NewLRUClientSessionCache(128)
		}
		c.pool = &connPool{m: make(map[string][]*pooledConn)}
		if strings.TrimSpace(c.Hostname) == "" {
			c.osName = osHostname()
		}
	})
}

func (c *Connector) sessionCache() tls.ClientSessionCache { c.init(); return c.cache }

// ehloName is Hostname, or an address literal (RFC 5321 §4.1.3) when
// Hostname is an IP address.
func (c *Connector) ehloName() string {
	h := c.hostname()
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
		if ip.To4() != nil {
			return "[" + ip.String() + "]"
		}
		return "[IPv6:" + ip.String() + "]"
	}
	return h
}

func (c *Connector) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Connector) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Connector) resolver() Resolver {
	if c.Resolver != nil {
		return c.Resolver
	}
	if c.DNS != nil {
		return dnsResolver{c.DNS}
	}
	return net.DefaultResolver
}

// lookupContext prepares ctx for the lookups of one Deliver call: a fresh
// dane.Memo, so that the policy lookup and the Connector's own lookups
// send each DNS query once, and DNS as the delivery's resolver for the
// Policy's members (policy.WithResolver).
func (c *Connector) lookupContext(ctx context.Context) context.Context {
	ctx = dane.WithMemo(ctx, &dane.Memo{})
	if c.DNS != nil {
		ctx = policy.WithResolver(ctx, c.DNS)
	}
	return ctx
}

// dnsResolver serves the Connector's MX and address lookups from a
// dane.Resolver (Connector.DNS), with net.Resolver's conventions.
type dnsResolver struct{ r *dane.Resolver }

func (d dnsResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	res, err := d.r.LookupMX(ctx, name)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, UnwrapErr: err}
	}
	switch {
	case res.Null:
		return []*net.MX{{Host: ".", Pref: 0}}, nil
	case res.NXDomain || res.Implicit:
		// The Connector applies the implicit MX rule itself.
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	out := make([]*net.MX, len(res.Hosts))
	for i, h := range res.Hosts {
		out[i] = &net.MX{Host: h.Host + ".", Pref: h.Pref}
	}
	return out, nil
}

func (d dnsResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return d.r.LookupIPAddr(ctx, host)
}

func (c *Connector) dialer() Dialer {
	if c.Dialer != nil {
		return c.Dialer
	}
	return &net.Dialer{Timeout: c.Timeouts.connect()}
}

func (c *Connector) port() int {
	if c.Port > 0 {
		return c.Port
	}
	return 25
}

func (c *Connector) maxAddresses() int {
	if c.MaxAddresses > 0 {
		return c.MaxAddresses
	}
	return 5
}

// group is the recipients that share one next hop and one transaction.
type group struct {
	domain   string   // recipient domain (MX routes) or "" for shared fixed hops
	routeIdx int      // -1: no route
	hop      *nextHop // fixed next hop, nil for MX
	idx      []int    // indices into env.Recipients
	// decided: req and reqErr are the group's policy lookup (splitHops).
	decided bool
	req     policy.Requirement
	reqErr  error
}

func (g *group) route(c *Connector) *Route {
	if g.routeIdx < 0 {
		return nil
	}
	return &c.Routes[g.routeIdx]
}

// Deliver sends one message to every recipient of env and returns one
// RecipientResult per recipient, in envelope order.
//
// Recipients are grouped by next hop: all recipients of one domain (or
// all recipients routed to one fixed next hop) share one SMTP transaction
// (RFC 5321 §3.3). Hosts are tried in MX preference order (RFC 5321 §5.1)
// until one completes the transaction or refuses it permanently. body is
// read from offset 0 for size bytes on each attempt, so it may be a file;
// it should hold the message with CRLF line endings: a bare CR or bare LF
// is sent as CRLF (RFC 5321 §2.3.8; Postfix's smtp_forbid_bare_newline =
// normalize), and lines are dot-stuffed here (RFC 5321 §4.5.2).
//
// The error is non-nil only for unusable arguments or configuration
// (no recipients; any error of Validate, wrapping ErrConfig); network, policy and
// remote failures are reported per recipient in the Result. Cancelling ctx
// aborts the attempt in progress; unfinished recipients are deferred.
func (c *Connector) Deliver(ctx context.Context, env *Envelope, body io.ReaderAt, size int64) (*Result, error) {
	if err := c.validate(env, body, size); err != nil {
		return nil, err
	}
	c.init()
	ctx = c.lookupContext(ctx)
	groups, err := c.groups(env)
	if err != nil {
		return nil, err
	}
	groups = c.splitHops(ctx, env, groups)
	res := &Result{Recipients: make([]RecipientResult, len(env.Recipients))}
	for i, r := range env.Recipients {
		res.Recipients[i].Recipient = r
	}
	for _, g := range groups {
		var start time.Time
		attempts := len(res.Attempts)
		if c.Observer != nil {
			start = time.Now()
		}
		c.deliverGroup(ctx, env, body, size, g, res, nil)
		if c.Observer != nil {
			c.observeGroup(g, res, time.Since(start))
			c.observeAttempts(g, res, res.Attempts[attempts:])
		}
	}
	return res, nil
}

func (c *Connector) validate(env *Envelope, body io.ReaderAt, size int64) error {
	if err := c.Validate(); err != nil {
		return err
	}
	switch {
	case env == nil:
		return errors.New("transport: nil Envelope")
	case len(env.Recipients) == 0:
		return errors.New("transport: Envelope has no recipients")
	case body == nil || size < 0:
		return errors.New("transport: no message body")
	case strings.ContainsAny(env.From, "\r\n<> "):
		return fmt.Errorf("transport: malformed reverse-path %q", env.From)
	}
	return nil
}

// groups splits the recipients by next hop, keeping first-appearance order.
func (c *Connector) groups(env *Envelope) ([]*group, error) {
	var out []*group
	byKey := map[string]*group{}
	for i, r := range env.Recipients {
		domain := recipientDomain(r.Address)
		ri := -1
		if domain != "" {
			ri = matchRoute(c.Routes, domain)
		}
		var hop *nextHop
		key := "mx:" + domain
		if ri >= 0 && c.Routes[ri].NextHop != "" {
			h, err := parseNextHop(c.Routes[ri].NextHop)
			if err != nil {
				return nil, err
			}
			hop = &h
			key = fmt.Sprintf("hop:%d", ri)
		}
		g, ok := byKey[key]
		if !ok {
			g = &group{domain: domain, routeIdx: ri, hop: hop}
			byKey[key] = g
			out = append(out, g)
		}
		g.idx = append(g.idx, i)
	}
	return out, nil
}

// recipientDomain returns the lower-cased domain of addr, "" if malformed.
func recipientDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.ContainsAny(addr, "\r\n<> ") {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// policyKey names the group in logs and results when its policy lookup
// failed: the recipient domain, else the fixed next hop as "[host]:port".
func (g *group) policyKey() string {
	if g.domain == "" && g.hop != nil {
		return g.hop.key()
	}
	return g.domain
}

// requirement looks up the policy for the group: hopRequirement for a
// fixed next hop; for MX delivery the route's policy, else the
// Connector's, else the strict default.
func (c *Connector) requirement(ctx context.Context, g *group) (policy.Requirement, error) {
	if g.decided {
		return g.req, g.reqErr
	}
	if g.hop != nil {
		return c.hopRequirement(ctx, g, g.domain)
	}
	key := g.domain
	strict := policy.Requirement{Domain: key, Level: policy.Verify, Source: policy.SourceDefault,
		Reason: "no policy configured: strict default"}
	// The route's policy first, then the Connector's; a policy without an
	// opinion (policy.ErrNoPolicy) passes to the next, and the last word is
	// the strict default. A policy that has no opinion because its
	// discovery failed (an MTA-STS policy host that is down, say) still
	// reports that failure for TLS-RPT (RFC 8460 §4.3.2.2).
	var failures []policy.DiscoveryFailure
	if r := g.route(c); r != nil && r.Policy != nil {
		req, err := r.Policy.Lookup(ctx, key)
		if err == nil {
			if req.Source == policy.SourceDefault {
				req.Source = policy.SourceRoute
			}
			return fillDomain(req, key), nil
		}
		if !errors.Is(err, policy.ErrNoPolicy) {
			return req, err
		}
		failures = policy.DiscoveryFailuresOf(err)
	}
	if c.Policy == nil {
		strict.DiscoveryFailures = failures
		return strict, nil
	}
	req, err := c.Policy.Lookup(ctx, key)
	if errors.Is(err, policy.ErrNoPolicy) {
		strict.Reason = "no policy entry for " + key + ": strict default"
		strict.DiscoveryFailures = append(failures, policy.DiscoveryFailuresOf(err)...)
		return strict, nil
	}
	if err != nil {
		return req, err
	}
	return fillDomain(req, key), nil
}

func fillDomain(req policy.Requirement, key string) policy.Requirement {
	if req.Domain == "" {
		req.Domain = key
	}
	return req
}

// localError builds an *Error for a failure detected locally. permanent
// chooses 5xx over 4xx.
func localError(permanent bool, subject, detail int, command, msg string, cause error) *Error {
	code, class := 451, 4
	if permanent {
		code, class = 554, 5
	}
	return &Error{Local: true, Code: code, EnhancedCode: EnhancedCode{class, subject, detail}, Message: msg, Command: command, Err: cause}
}

// tlsError builds the X.7.d error for a TLS failure; permanence follows the
// requirement's failure action.
func tlsError(req policy.Requirement, detail int, command, msg string, cause error) *Error {
	return localError(req.OnFailure == policy.Bounce, 7, detail, command, msg, cause)
}

// statusFor maps a reply code to a recipient status.
func statusFor(e *Error) Status {
	switch {
	case e == nil:
		return Deferred
	case e.Code >= 200 && e.Code < 300:
		return Delivered
	case e.Code >= 500:
		return Failed
	}
	return Deferred
}

// groupState carries one group's delivery through its attempts.
type groupState struct {
	env     *Envelope
	body    io.ReaderAt
	size    int64
	g       *group
	route   *Route
	req     policy.Requirement
	plan    policy.Plan // the group's TLS plan, from req and the message
	hop     policy.Hop  // for the host being tried (hostPlan)
	hopDANE *dane.Host  // with hop.Check CheckDANE: the host's records
	res     *Result
	dest    *dane.Destination // the DNSSEC-aware MX lookup, nil without Connector.DANE
	// refused are the MX hosts an enforced MTA-STS policy's patterns
	// refused (mxAllowed), reported when no host is left (RFC 8460 §4.3).
	refused []string
	// probe, when set, makes this a check (Connector.Check): every host is
	// examined up to MAIL FROM and no MAIL is sent (see checkProbe).
	probe *checkProbe
}

func (st *groupState) finish(idx int, status Status, reply *Error, mta RemoteMTA, ti *TLSInfo, ft policy.FailureType, now time.Time) {
	rr := &st.res.Recipients[idx]
	rr.Status = status
	rr.Reply = reply
	rr.RemoteMTA = mta
	rr.TLS = ti
	rr.Requirement = st.req
	rr.TLSFailure = ft
	rr.Time = now
}

func (st *groupState) finishAll(idx []int, e *Error, mta RemoteMTA, ti *TLSInfo, ft policy.FailureType, now time.Time) {
	for _, i := range idx {
		st.finish(i, statusFor(e), e, mta, ti, ft, now)
	}
}

// deliverGroup delivers one group; with probe set it checks it instead
// (Connector.Check): the same lookups, plans and sessions, ending each
// session with QUIT where delivery would send MAIL FROM.
func (c *Connector) deliverGroup(ctx context.Context, env *Envelope, body io.ReaderAt, size int64, g *group, res *Result, probe *checkProbe) {
	st := &groupState{env: env, body: body, size: size, g: g, route: g.route(c), res: res, probe: probe}
	var pending []int
	for _, i := range g.idx {
		if recipientDomain(env.Recipients[i].Address) == "" || strings.ContainsAny(env.Recipients[i].Address, "\r\n<> ") {
			st.finish(i, Failed, &Error{Local: true, Code: 553, EnhancedCode: EnhancedCode{5, 1, 3}, Command: "RCPT",
				Message: "malformed recipient address"}, RemoteMTA{}, nil, policy.FailureNone, c.now())
			continue
		}
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return
	}
	req, err := c.requirement(ctx, g)
	st.req = req
	if err != nil {
		st.req = fillDomain(req, g.policyKey())
		e := localError(false, 4, 3, "", "TLS policy lookup failed; deferring rather than downgrading",
			fmt.Errorf("%w: %w", ErrPolicyLookup, err))
		// A failed DNSSEC lookup of DANE's (bogus data, SERVFAIL) is a
		// TLS-RPT dnssec-invalid failure (RFC 8460 §4.3.2.1), for the MX
		// host it concerns when known.
		ft := dane.ResultType(err)
		var mta RemoteMTA
		if he := (*dane.HostError)(nil); errors.As(err, &he) {
			mta.Host = he.Host
		}
		st.finishAll(pending, e, mta, nil, ft, c.now())
		c.logAttempt(ctx, st, &attemptResult{err: e, failure: ft, mta: mta}, c.now(), 0)
		return
	}
	st.plan = policy.NewPlan(req, policy.Message{RequireTLS: env.RequireTLS, TLSRequiredNo: env.TLSRequiredNo}, c.danePolicy() != nil)
	st.hop = st.plan.Group
	if r := st.plan.Refused; r != nil {
		e := refusalError(req, r, nil)
		st.finishAll(pending, e, RemoteMTA{}, nil, r.Failure, c.now())
		c.logGroupFailure(ctx, st, e, r.Failure)
		return
	}
	if st.hop.Reason != "" {
		c.log().LogAttrs(ctx, slog.LevelInfo, "tls policy adjusted",
			slog.String("domain", req.Domain), slog.String("policy", policyAttr(req)),
			slog.String("reason", st.hop.Reason), slog.String("queue_id", env.ID))
	}
	c.log().LogAttrs(ctx, slog.LevelDebug, "tls policy", slog.String("domain", req.Domain),
		slog.String("decision", req.String()), slog.String("queue_id", env.ID))

	targets, terr := c.targets(ctx, st)
	if terr != nil {
		ft := dane.ResultType(terr)
		ar := &attemptResult{err: terr, failure: ft}
		if errors.Is(terr, ErrNoMX) && len(st.refused) > 0 {
			// Every MX host was refused by the enforced MTA-STS policy:
			// policy validation failed (RFC 8461 §4.1, §5).
			ar.failure, ar.refused = policy.FailureValidation, st.refused
		}
		st.finishAll(pending, terr, RemoteMTA{}, nil, ar.failure, c.now())
		c.logAttempt(ctx, st, ar, c.now(), 0)
		return
	}
	st.probe.targets(st, targets)
	if r := st.plan.CheckRequireTLS(st.dest != nil && st.dest.MXAuthentic, g.hop != nil, daneStates(targets)); r != nil {
		e := refusalError(req, r, nil)
		st.finishAll(pending, e, RemoteMTA{}, nil, policy.FailureNone, c.now())
		c.logGroupFailure(ctx, st, e, policy.FailureNone)
		return
	}
	// last is the latest failure; temp the latest temporary one. As in
	// Postfix, if any host failed temporarily the recipients are deferred,
	// not bounced, whatever the last host said.
	var last, temp *attemptResult
	tries := 0
outer:
	for _, t := range targets {
		st.probe.host(t)
		hp, far := c.hostPlan(ctx, st, t)
		if far != nil {
			last = far
			if far.err.Temporary() {
				temp = far
			}
			st.hop, st.hopDANE = st.plan.Group, nil
			c.logAttempt(ctx, st, far, c.now(), 0)
			continue
		}
		st.hop, st.hopDANE = hp, nil
		if hp.Check == policy.CheckDANE {
			st.hopDANE = t.dane
		}
		ips, rerr := t.addrs, (*Error)(nil)
		if !t.resolved {
			ips, rerr = c.resolveHost(ctx, t.host)
		} else if len(ips) == 0 {
			rerr = &Error{Local: true, Code: 550, EnhancedCode: EnhancedCode{5, 4, 4}, Message: "host " + t.host + " has no address", Err: ErrNoMX}
		}
		if rerr != nil {
			last = &attemptResult{err: rerr, retry: true, mta: RemoteMTA{Host: t.host, Port: t.port}}
			if rerr.Temporary() {
				temp = last
			}
			c.logAttempt(ctx, st, last, c.now(), 0)
			continue
		}
		for _, ip := range ips {
			if tries >= c.maxAddresses() || ctx.Err() != nil {
				break outer
			}
			tries++
			ar := c.attempt(ctx, st, t, ip, pending)
			last = ar
			if ar.retry && ar.err != nil && ar.err.Temporary() {
				temp = ar
			}
			pending = ar.pending
			if st.probe == nil && (len(pending) == 0 || !ar.retry) {
				break outer
			}
		}
	}
	if len(pending) == 0 {
		return
	}
	if last == nil {
		last = &attemptResult{err: localError(false, 4, 4, "", "no address could be tried", ctx.Err())}
	}
	if !last.err.Temporary() && last.retry && temp != nil {
		last = temp
	}
	e := last.err
	if ctx.Err() != nil && !e.Temporary() {
		e = localError(false, 4, 0, "", "delivery interrupted", ctx.Err())
	}
	st.finishAll(pending, e, last.mta, last.tls, last.failure, c.now())
}

// target is one host to try.
type target struct {
	host     string
	port     int
	addrs    []net.IP   // with resolved: the addresses (DNSSEC-aware lookup)
	resolved bool       // addrs is the answer; false: resolve with Resolver
	dane     *dane.Host // the host's DANE decision; nil without Connector.DANE
	// mxMismatch: the host matches none of the MTA-STS patterns and is
	// used because the policy is in testing mode (RFC 8461 §5).
	mxMismatch bool
	pref       uint16 // MX preference, for Check's report
	implicit   bool   // the domain itself, for want of MX records (RFC 5321 §5.1)
}

// sni is the name sent in SNI: the TLSA base domain under DANE (RFC 7672
// §8.1), else the host name.
func (t target) sni() string {
	if t.dane != nil {
		return t.dane.ServerName()
	}
	return t.host
}

// targets returns the hosts to try in order, or a final error.
func (c *Connector) targets(ctx context.Context, st *groupState) ([]target, *Error) {
	if h := st.g.hop; h != nil {
		if d := c.danePolicy(); d != nil {
			if t, ok := c.daneHopTarget(ctx, d, h); ok {
				return []target{t}, nil
			}
		}
		return []target{{host: h.host, port: h.port}}, nil
	}
	if d := c.danePolicy(); d != nil {
		return c.daneTargets(ctx, d, st)
	}
	domain := st.g.domain
	mxs, err := c.resolver().LookupMX(ctx, domain)
	if err != nil {
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			return nil, localError(false, 4, 3, "", "MX lookup for "+domain+" failed", err)
		}
		mxs = nil
	}
	var hosts []*net.MX
	nullMX := false
	for _, mx := range mxs {
		if mx == nil {
			continue
		}
		if h := strings.TrimSuffix(mx.Host, "."); h == "" {
			nullMX = true // RFC 7505 §3: a single MX with target "."
			continue
		}
		hosts = append(hosts, mx)
	}
	if nullMX && len(hosts) == 0 {
		return nil, &Error{Local: true, Code: 556, EnhancedCode: EnhancedCode{5, 1, 10}, Message: domain + " does not accept mail (null MX)",
			Err: ErrNullMX}
	}
	if len(hosts) == 0 {
		// RFC 5321 §5.1: no MX records: the domain itself is the implicit MX.
		// It is the selected MX host and must match the MTA-STS patterns
		// like any other (RFC 8461 §5): an attacker who forges "no MX"
		// must not steer delivery to a host the policy does not name.
		use, mismatch := c.mxAllowed(ctx, st, domain)
		if !use {
			return nil, tlsErrorSubject(st.req, 4, 4, "implicit MX "+domain+" does not match the policy's mx patterns",
				fmt.Errorf("%w: policy allows %v", ErrNoMX, st.req.MXPatterns))
		}
		return []target{{host: domain, port: c.port(), mxMismatch: mismatch, implicit: true}}, nil
	}
	sortMX(hosts, c.shuffle())
	var out []target
	for _, mx := range hosts {
		h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		use, mismatch := c.mxAllowed(ctx, st, h)
		if !use {
			continue
		}
		out = append(out, target{host: h, port: c.port(), mxMismatch: mismatch, pref: mx.Pref})
	}
	if len(out) == 0 {
		return nil, tlsErrorSubject(st.req, 4, 4, "no MX host of "+domain+" matches the policy's mx patterns",
			fmt.Errorf("%w: policy allows %v", ErrNoMX, st.req.MXPatterns))
	}
	return out, nil
}

func tlsErrorSubject(req policy.Requirement, subject, detail int, msg string, cause error) *Error {
	return localError(req.OnFailure == policy.Bounce, subject, detail, "", msg, cause)
}

func (c *Connector) shuffle() func(int, func(i, j int)) {
	if c.Shuffle != nil {
		return c.Shuffle
	}
	return rand.Shuffle
}

// sortMX orders by preference and shuffles hosts of equal preference
// (RFC 5321 §5.1).
func sortMX(mxs []*net.MX, shuffle func(int, func(i, j int))) {
	// insertion sort: MX lists are short, and stability keeps the shuffle fair
	for i := 1; i < len(mxs); i++ {
		for j := i; j > 0 && mxs[j].Pref < mxs[j-1].Pref; j-- {
			mxs[j], mxs[j-1] = mxs[j-1], mxs[j]
		}
	}
	for i := 0; i < len(mxs); {
		j := i
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		if j-i > 1 {
			sub := mxs[i:j]
			shuffle(len(sub), func(a, b int) { sub[a], sub[b] = sub[b], sub[a] })
		}
		i = j
	}
}

// resolveHost returns the addresses of host, or the host itself if it is
// an IP literal.
func (c *Connector) resolveHost(ctx context.Context, host string) ([]net.IP, *Error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	addrs, err := c.resolver().LookupIPAddr(ctx, host)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, &Error{Local: true, Code: 550, EnhancedCode: EnhancedCode{5, 4, 4}, Message: "host " + host + " not found",
				Err: fmt.Errorf("%w: %w", ErrNoMX, err)}
		}
		return nil, localError(false, 4, 4, "", "address lookup for "+host+" failed", err)
	}
	if len(addrs) == 0 {
		return nil, &Error{Local: true, Code: 550, EnhancedCode: EnhancedCode{5, 4, 4}, Message: "host " + host + " has no address",
			Err: ErrNoMX}
	}
	ips := make([]net.IP, len(addrs))
	for i, a := range addrs {
		ips[i] = a.IP
	}
	return ips, nil
}

func policyAttr(req policy.Requirement) string {
	return req.Level.String() + "/" + string(req.Source)
}
