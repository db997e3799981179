package main

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
)

// FuzzParseFlags feeds arbitrary command lines to the flag parser: it must
// never panic, and whatever it accepts must satisfy the invariants the rest
// of the program relies on.
func FuzzParseFlags(f *testing.F) {
	f.Add("-require-tls -min-tls 1.3")                                    // the common hardening
	f.Add("-route example.com=[192.0.2.1]:25 -route .example.net=mx:587") // routes
	f.Add("-relay-networks 10.0.0.0/8,2001:db8::/32,192.0.2.7")           // CIDRs and bare IPs
	f.Add("-smarthost smtp.example:587 -smarthost-user u -smarthost-password-file /nonexistent")
	f.Add("-hostname localhost.")   // refused
	f.Add("-default-tls dane-only") // refused
	f.Add("-retry 1m,,5m -max-queue-age 1h -ndr-lang ja")
	f.Add("-smtp  -submission  -submissions ") // all disabled
	f.Fuzz(func(t *testing.T, line string) {
		cfg, err := parseFlags(strings.Split(line, " "), io.Discard)
		if err != nil {
			return
		}
		if cfg.MinTLS != tls.VersionTLS12 && cfg.MinTLS != tls.VersionTLS13 {
			t.Fatalf("accepted min TLS %x", cfg.MinTLS)
		}
		if cfg.Hostname == "" || strings.EqualFold(cfg.Hostname, "localhost") {
			t.Fatalf("accepted hostname %q", cfg.Hostname)
		}
		if cfg.SMTPAddr == "" && cfg.SubmissionAddr == "" && cfg.SubmissionsAddr == "" {
			t.Fatal("accepted a configuration with no listener")
		}
		for _, r := range cfg.Routes {
			if r.Domain == "" || checkHostPort(r.NextHop) != nil {
				t.Fatalf("accepted route %+v", r)
			}
		}
		if cfg.MaxQueueAge <= 0 {
			t.Fatalf("accepted max queue age %v", cfg.MaxQueueAge)
		}
	})
}
