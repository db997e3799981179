package main

import (
	"crypto"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
)

// Config is the relay's whole configuration, as the command line gives it.
// It is plain data: parseFlags fills and validates it, newRelay uses it.
type Config struct {
	DataDir  string // -data: certificates, Maildirs, queue, caches
	QueueDSN string // -queue: a PostgreSQL queue shared by several relays
	Spool    string // -spool: the local queue's layout, "log", "dir" or "" (auto)
	Hostname string // -hostname: greeting, Received, EHLO, Reporting-MTA

	SMTPAddr        string // -smtp: MX-style listener (STARTTLS offered); "" disables it
	SubmissionAddr  string // -submission: STARTTLS then AUTH required; "" disables it
	SubmissionsAddr string // -submissions: implicit TLS, AUTH required (RFC 8314); "" disables it

	CertFile, KeyFile string // -cert/-key; empty: self-signed under DataDir
	RequireTLS        bool   // -require-tls: 530 before STARTTLS on the MX listener too
	MinTLS            uint16 // -min-tls: inbound minimum version
	UsersFile         string // -users: user:bcrypt-hash lines
	RecipientsFile    string // -recipients: more local recipients, one a line

	LocalDomains  []string       // -local-domains: delivered to Maildirs under DataDir
	RelayNetworks []netip.Prefix // -relay-networks: clients allowed to relay without AUTH

	PolicyFile    string               // -policy: static TLS policy table
	DefaultTLS    policy.Level         // -default-tls: level when the table has no entry
	OnTLSFailure  policy.FailureAction // -on-tls-failure
	Routes        []RouteFlag          // -route domain=host:port (repeatable)
	Smarthost     string               // -smarthost host:port
	SmartUser     string               // -smarthost-user
	SmartPWFile   string               // -smarthost-password-file
	OutboundCA    string               // -outbound-ca: PEM roots for Verify/Secure instead of the system's
	MaxQueueAge   time.Duration        // -max-queue-age
	NDRLang       string               // -ndr-lang en|ja
	RetrySchedule []time.Duration      // -retry: comma-separated backoff schedule

	MTASTS        bool   // -mta-sts: RFC 8461 with a cache under DataDir
	Resolver      string // -resolver host:port: the one DNS server of outbound delivery; "": the system's
	DANEResolver  string // -dane-resolver host:port: -resolver, and RFC 7672 DANE through it
	TLSRPT        bool   // -tlsrpt: record RFC 8460 results under DataDir and send daily reports
	TLSRPTOrg     string // -tlsrpt-org: organization-name of the reports
	TLSRPTContact string // -tlsrpt-contact: contact-info of the reports

	DKIMDomain   string        // -dkim-domain: d= of the DKIM signature on DSNs and TLS-RPT report mail
	DKIMSelector string        // -dkim-selector: s= of that signature
	DKIMKeyFile  string        // -dkim-key: PEM private key file (RSA or Ed25519)
	DKIMSigner   crypto.Signer // loaded from DKIMKeyFile by parseFlags; nil: reports unsigned

	QueueMinFree     int64             // -queue-minfree: bytes kept free in the spool and Maildir root (452 4.3.1 at MAIL); 0: 1.5 × -max-message-size; <0: off
	SenderLoginCheck bool              // -sender-login-check: bind MAIL FROM to the login of an authenticated client
	SenderLoginsFile string            // -sender-logins: who may send as which address; empty: login@local domains
	CertWatch        time.Duration     // -cert-watch: how often the certificate files are checked for changes; 0: only on SIGHUP
	DrainTimeout     time.Duration     // -drain-timeout: how long SIGTERM/SIGINT waits for transactions in progress
	Limits           *transport.Server // the limit flags (Server.LimitFlags): a template copied into every listener

	LogLevel  string // -log-level debug|info|warn|error
	LogFormat string // -log-format text|json

	MetricsAddr string // -metrics: Prometheus /metrics and /healthz (metrics.go); "" disables it

	QueueLease time.Duration // -queue-lease: how long a relay holds a message of the -queue database without renewing (pgstore.Options.Lease)
}

// RouteFlag is one -route domain=host:port.
type RouteFlag struct {
	Domain  string
	NextHop string
}

// repeated collects a repeatable string flag.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(s string) error { *r = append(*r, s); return nil }

// parseFlags parses args (without the program name) into a validated
// Config. Errors name the flag and the offending value. Usage text goes to
// out when -h is given.
func parseFlags(args []string, out io.Writer) (*Config, error) {
	c, rest, err := parseCommandFlags("relay", args, out, nil)
	if err == nil && len(rest) > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are flags)", rest[0])
	}
	return c, err
}

// parseCommandFlags is parseFlags for a subcommand (name is "relay check"):
// extra registers the subcommand's own flags, and the arguments that are
// not flags are returned, in order; flags may come before and after them.
func parseCommandFlags(name string, args []string, out io.Writer, extra func(*flag.FlagSet)) (*Config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	host, _ := os.Hostname()
	if host == "" || strings.EqualFold(host, "localhost") {
		host = "relay.invalid"
	}
	var (
		c                             Config
		minTLS, localDomains, relayNs string
		defaultTLS, onFailure, retry  string
		routes                        repeated
	)
	fs.StringVar(&c.DataDir, "data", "relay-data", "data `directory`: certificates, Maildirs (mail/), queue (queue/), caches")
	fs.StringVar(&c.QueueDSN, "queue", "", "PostgreSQL `URL` (postgres://…) of a queue shared by several relays (transport/queue/pgstore); the database must exist; empty: the queue under -data")
	fs.StringVar(&c.Spool, "spool", "", "the local queue's `layout`: log (queue.LogStore under -data/log) or dir (queue.DirStore under -data/queue); empty: dir if -data/queue exists (a spool from before the log), else log")
	fs.DurationVar(&c.QueueLease, "queue-lease", pgstore.DefaultLease, "with -queue, how long this relay holds a message without renewing it; a relay that dies or stalls longer loses its messages to the others")
	fs.StringVar(&c.Hostname, "hostname", host, "this host's public `name` (greeting, Received, EHLO, DSNs); not localhost")
	fs.StringVar(&c.SMTPAddr, "smtp", "127.0.0.1:2525", "MX-style listener `address` (STARTTLS offered); empty disables it")
	fs.StringVar(&c.SubmissionAddr, "submission", "127.0.0.1:2587", "submission listener `address` (STARTTLS then AUTH required, RFC 6409); empty disables it")
	fs.StringVar(&c.SubmissionsAddr, "submissions", "127.0.0.1:2465", "implicit-TLS submission listener `address` (RFC 8314); empty disables it")
	fs.StringVar(&c.CertFile, "cert", "", "certificate chain PEM `file`; empty: a self-signed certificate under -data")
	fs.StringVar(&c.KeyFile, "key", "", "private key PEM `file` (with -cert)")
	fs.BoolVar(&c.RequireTLS, "require-tls", false, "refuse mail before STARTTLS on the -smtp listener too (530 5.7.0); submission always requires TLS")
	fs.StringVar(&minTLS, "min-tls", "1.2", "lowest inbound TLS `version`: 1.2 or 1.3")
	fs.StringVar(&c.UsersFile, "users", "", "`file` of user:bcrypt-hash lines for AUTH; without it every AUTH fails")
	fs.StringVar(&c.RecipientsFile, "recipients", "", "`file` of local recipients besides the -users logins and postmaster, one a line: an address, or a bare name valid in every local domain; other local recipients get 550 5.1.1")
	fs.StringVar(&localDomains, "local-domains", "localhost", "comma-separated `domains` delivered to Maildirs under -data/mail")
	fs.StringVar(&relayNs, "relay-networks", "", "comma-separated `CIDRs` allowed to relay without AUTH (default none)")
	fs.StringVar(&c.PolicyFile, "policy", "", "static TLS policy table `file` (Postfix smtp_tls_policy_maps syntax)")
	fs.StringVar(&defaultTLS, "default-tls", "verify", "outbound TLS `level` where the policy table has no entry: none, may, encrypt, verify, secure")
	fs.StringVar(&onFailure, "on-tls-failure", "defer", "`action` when a TLS requirement is not met: defer (retry until -max-queue-age) or bounce (DSN at once, every requirement)")
	fs.Var(&routes, "route", "send mail for a domain (\".example.com\" for its subdomains, \"*\" for all) to a fixed next hop: `domain=host:port`; repeatable")
	fs.StringVar(&c.Smarthost, "smarthost", "", "send all other outbound mail through this `host:port`")
	fs.StringVar(&c.SmartUser, "smarthost-user", "", "AUTH `user` for -smarthost (sent only over TLS)")
	fs.StringVar(&c.SmartPWFile, "smarthost-password-file", "", "`file` holding the -smarthost-user password")
	fs.StringVar(&c.OutboundCA, "outbound-ca", "", "PEM `file` of CA certificates that verify next hops instead of the system roots")
	fs.DurationVar(&c.MaxQueueAge, "max-queue-age", 5*24*time.Hour, "how long a deferred message is retried before it bounces")
	fs.StringVar(&retry, "retry", "", "comma-separated retry `schedule` (e.g. 1m,5m,30m); empty: the queue's default")
	fs.StringVar(&c.NDRLang, "ndr-lang", "en", "`language` of the human part of DSNs: en or ja")
	fs.BoolVar(&c.MTASTS, "mta-sts", false, "honour MTA-STS (RFC 8461), policy cache under -data/mta-sts")
	fs.StringVar(&c.Resolver, "resolver", "", "send every DNS query of outbound delivery (MX, addresses, TLSA, MTA-STS record and policy host, TLS-RPT record) to this resolver `host:port`; empty: the system's")
	fs.StringVar(&c.DANEResolver, "dane-resolver", "", "-resolver `host:port` that also enables DANE (RFC 7672): a DNSSEC-validating resolver, trusted only on loopback")
	fs.BoolVar(&c.TLSRPT, "tlsrpt", false, "record TLS-RPT (RFC 8460) results under -data/tlsrpt and send daily reports to the domains that ask")
	fs.StringVar(&c.TLSRPTOrg, "tlsrpt-org", "", "organization-name in TLS-RPT reports (default: -hostname)")
	fs.StringVar(&c.TLSRPTContact, "tlsrpt-contact", "", "contact-info in TLS-RPT reports (default: postmaster@ -hostname)")
	fs.StringVar(&c.DKIMDomain, "dkim-domain", "", "DKIM-sign the delivery status notifications and TLS-RPT report mail this relay originates (RFC 6376; RFC 8460 §5.3) for this signing `domain` (d=); needs -dkim-selector and -dkim-key")
	fs.StringVar(&c.DKIMSelector, "dkim-selector", "", "DKIM `selector` (s=): the public key is published at selector._domainkey.domain")
	fs.StringVar(&c.DKIMKeyFile, "dkim-key", "", "PEM private key `file` for DKIM signing: RSA (PKCS #1 or #8, at least 1024 bits) or Ed25519 (PKCS #8)")
	fs.Int64Var(&c.QueueMinFree, "queue-minfree", 0, "`bytes` that must stay free in the queue's spool and the Maildir root, plus the client's SIZE=, or MAIL gets 452 4.3.1 (Postfix queue_minfree); 0: 1.5 × -max-message-size; negative: no check")
	fs.BoolVar(&c.SenderLoginCheck, "sender-login-check", true, "refuse (553 5.7.1) a MAIL FROM the authenticated user does not own, on every listener (Postfix reject_sender_login_mismatch); false: any sender")
	fs.StringVar(&c.SenderLoginsFile, "sender-logins", "", "`file` of \"address-or-@domain login[,login...]\" lines saying who may send as what (Postfix smtpd_sender_login_maps); empty: a login \"alice\" may send as alice@ each local domain, a login that is an address as itself")
	fs.DurationVar(&c.CertWatch, "cert-watch", time.Minute, "how often to check -cert/-key (or the self-signed pair) for changes and reload them; 0: only on SIGHUP")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM or SIGINT, how long to wait for transactions in progress to end before closing their connections")
	c.Limits = &transport.Server{}
	c.Limits.LimitFlags(fs)
	fs.StringVar(&c.LogLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log `format`: text (slog key=value) or json (one JSON object a line)")
	registerMetricsFlag(fs, &c.MetricsAddr)
	if extra != nil {
		extra(fs)
	}
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest, args = append(rest, fs.Arg(0)), fs.Args()[1:]
	}

	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.DataDir == "" {
		bad("-data: must not be empty")
	} else if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	c.Hostname = strings.TrimSuffix(strings.TrimSpace(c.Hostname), ".")
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n[]@") {
		bad("-hostname: %q is not a host name", c.Hostname)
	} else if strings.EqualFold(c.Hostname, "localhost") {
		bad("-hostname: must be this host's public name, not localhost (next hops reject EHLO localhost)")
	}
	for _, a := range []struct{ flag, v string }{{"-smtp", c.SMTPAddr}, {"-submission", c.SubmissionAddr}, {"-submissions", c.SubmissionsAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad("%s: %q is not host:port: %v", a.flag, a.v, err)
		}
	}
	if c.SMTPAddr == "" && c.SubmissionAddr == "" && c.SubmissionsAddr == "" {
		bad("-smtp, -submission and -submissions are all empty: nothing to listen on")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("-cert and -key must be given together")
	}
	switch minTLS {
	case "1.2", "TLSv1.2":
		c.MinTLS = tls.VersionTLS12
	case "1.3", "TLSv1.3":
		c.MinTLS = tls.VersionTLS13
	default:
		bad("-min-tls: %q: want 1.2 or 1.3 (older versions are refused, RFC 8996)", minTLS)
	}
	for d := range strings.SplitSeq(localDomains, ",") {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" {
			continue
		}
		if strings.ContainsAny(d, " @[]/") {
			bad("-local-domains: %q is not a domain", d)
			continue
		}
		c.LocalDomains = append(c.LocalDomains, d)
	}
	for n := range strings.SplitSeq(relayNs, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			if a, aerr := netip.ParseAddr(n); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				bad("-relay-networks: %q is not a CIDR (e.g. 192.0.2.0/24): %v", n, err)
				continue
			}
		}
		c.RelayNetworks = append(c.RelayNetworks, p.Masked())
	}
	lvl, err := policy.ParseLevel(defaultTLS)
	switch {
	case err != nil:
		bad("-default-tls: %v", err)
	case lvl == policy.DANE || lvl == policy.DANEOnly:
		bad("-default-tls: %s needs DANE; use -dane-resolver and a level none, may, encrypt, verify or secure here", lvl)
	default:
		c.DefaultTLS = lvl
	}
	switch onFailure {
	case "defer":
		c.OnTLSFailure = policy.Defer
	case "bounce":
		c.OnTLSFailure = policy.Bounce
	default:
		bad("-on-tls-failure: %q: want bounce or defer", onFailure)
	}
	for _, r := range routes {
		d, hop, ok := strings.Cut(r, "=")
		d = strings.ToLower(strings.TrimSpace(d))
		hop = strings.TrimSpace(hop)
		if !ok || d == "" || hop == "" {
			bad("-route: %q: want domain=host:port", r)
			continue
		}
		if err := checkHostPort(hop); err != nil {
			bad("-route %s: %v", r, err)
			continue
		}
		c.Routes = append(c.Routes, RouteFlag{Domain: d, NextHop: hop})
	}
	if c.Smarthost != "" {
		if err := checkHostPort(c.Smarthost); err != nil {
			bad("-smarthost: %v", err)
		}
	}
	if (c.SmartUser == "") != (c.SmartPWFile == "") {
		bad("-smarthost-user and -smarthost-password-file must be given together")
	}
	if c.SmartUser != "" && c.Smarthost == "" {
		bad("-smarthost-user needs -smarthost")
	}
	if c.MaxQueueAge <= 0 {
		bad("-max-queue-age: must be positive")
	}
	for s := range strings.SplitSeq(retry, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			bad("-retry: %q is not a positive duration", s)
			continue
		}
		c.RetrySchedule = append(c.RetrySchedule, d)
	}
	switch c.NDRLang {
	case "en", "ja":
	default:
		bad("-ndr-lang: %q: want en or ja", c.NDRLang)
	}
	if c.Resolver != "" {
		if err := checkHostPort(c.Resolver); err != nil {
			bad("-resolver: %v", err)
		}
	}
	switch {
	case c.DANEResolver == "":
	case checkHostPort(c.DANEResolver) != nil:
		bad("-dane-resolver: %v", checkHostPort(c.DANEResolver))
	case c.Resolver != "" && c.Resolver != c.DANEResolver:
		bad("-dane-resolver %s and -resolver %s: one resolver answers every lookup; give the same address or only -dane-resolver", c.DANEResolver, c.Resolver)
	default:
		c.Resolver = c.DANEResolver
	}
	if c.TLSRPTOrg == "" {
		c.TLSRPTOrg = c.Hostname
	}
	if c.TLSRPTContact == "" {
		c.TLSRPTContact = "postmaster@" + c.Hostname
	}
	c.DKIMDomain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(c.DKIMDomain), "."))
	c.DKIMSelector = strings.TrimSpace(c.DKIMSelector)
	switch set := c.DKIMDomain != "" || c.DKIMSelector != "" || c.DKIMKeyFile != ""; {
	case !set:
	case c.DKIMDomain == "" || c.DKIMSelector == "" || c.DKIMKeyFile == "":
		bad("-dkim-domain, -dkim-selector and -dkim-key: give all three or none")
	default:
		if !certstore.ValidDKIMName(c.DKIMDomain) {
			bad("-dkim-domain: %q is not a domain name", c.DKIMDomain)
		}
		if !certstore.ValidDKIMName(c.DKIMSelector) {
			bad("-dkim-selector: %q is not a selector (dot-separated letters, digits, hyphens; RFC 6376 §3.1)", c.DKIMSelector)
		}
		k, err := certstore.LoadDKIMKey(c.DKIMKeyFile)
		if err != nil {
			bad("-dkim-key: %v", err)
		}
		c.DKIMSigner = k
	}
	if c.SenderLoginsFile != "" && !c.SenderLoginCheck {
		bad("-sender-logins is given but -sender-login-check=false: the table would not be used")
	}
	if c.CertWatch < 0 {
		bad("-cert-watch: must not be negative (0 turns the polling off)")
	}
	if c.DrainTimeout <= 0 {
		bad("-drain-timeout: must be positive")
	}
	if err := c.Limits.CheckLimitFlags(); err != nil {
		errs = append(errs, err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("-log-level: %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("-log-format: %q: want text or json", c.LogFormat)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return &c, rest, nil
}

// checkHostPort accepts host:port and [host]:port with a numeric port.
func checkHostPort(s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", s, err)
	}
	if h == "" {
		return fmt.Errorf("%q has no host", s)
	}
	var n int
	if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n <= 0 || n > 65535 || fmt.Sprint(n) != p {
		return fmt.Errorf("%q: bad port %q", s, p)
	}
	return nil
}

// isLocal reports whether domain is one of the local domains.
func (c *Config) isLocal(domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range c.LocalDomains {
		if d == domain {
			return true
		}
	}
	return false
}

// dkimOptions returns the DKIM signing options of -dkim-*, or nil if they
// are not given. BuildMail copies them and adds the header fields RFC 8460
// §5.3 wants signed.
func (c *Config) dkimOptions() *dkim.SignOptions {
	if c.DKIMSigner == nil {
		return nil
	}
	return &dkim.SignOptions{Domain: c.DKIMDomain, Selector: c.DKIMSelector, Signer: c.DKIMSigner}
}

// minFree is the free space -queue-minfree asks for: its value, or for 0
// one and a half times -max-message-size (the margin Postfix keeps without
// queue_minfree); negative means no check.
func (c *Config) minFree() int64 {
	if c.QueueMinFree == 0 {
		return c.Limits.MaxMessageBytes * 3 / 2
	}
	return c.QueueMinFree
}
