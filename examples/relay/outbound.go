package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/transport"
)

// newOutboundPolicy is the TLS policy of every outbound hop
// (policy.Outbound): the -policy table (nil for none), -default-tls and
// -on-tls-failure where the table has no entry, and the published-policy
// lookups -mta-sts and -dane-resolver enable (nil when off).
func newOutboundPolicy(cfg *Config, table *policy.Table, sts *mtasts.Client, d *dane.Policy, log *slog.Logger) *policy.Outbound {
	p := &policy.Outbound{
		Table:         table,
		Default:       policy.Fixed{Level: cfg.DefaultTLS, OnFailure: cfg.OnTLSFailure, InsecurePlaintext: cfg.DefaultTLS == policy.None},
		DefaultReason: "-default-tls " + cfg.DefaultTLS.String(),
		Logger:        log,
	}
	if sts != nil { // not a typed nil in the interface
		p.MTASTS = sts
	}
	if d != nil {
		p.DANE = d
	}
	return p
}

// buildRoutes turns -route and -smarthost into transport routes; their TLS
// requirement is the Connector's (policy.Outbound.LookupLocal).
func buildRoutes(cfg *Config) ([]transport.Route, error) {
	var out []transport.Route
	for _, r := range cfg.Routes {
		out = append(out, transport.Route{Domain: r.Domain, NextHop: r.NextHop})
	}
	if cfg.Smarthost != "" {
		r := transport.Route{Domain: "*", NextHop: cfg.Smarthost}
		if cfg.SmartUser != "" {
			pw, err := os.ReadFile(cfg.SmartPWFile)
			if err != nil {
				return nil, fmt.Errorf("-smarthost-password-file: %w", err)
			}
			r.Auth = &transport.Credentials{Username: cfg.SmartUser, Password: strings.TrimRight(string(pw), "\r\n")}
		}
		out = append(out, r)
	}
	return out, nil
}

// loadRoots reads -outbound-ca.
func loadRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-outbound-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("-outbound-ca: %s holds no PEM certificate", path)
	}
	return pool, nil
}
