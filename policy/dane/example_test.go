package dane_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
)

// Records from configuration or from a zone file's RDATA are parsed with
// ParseTLSA; Usable tells whether RFC 7672 lets SMTP use them.
func ExampleParseTLSA() {
	for _, s := range []string{
		"3 1 1 " + strings.Repeat("0f", 32),
		"DANE-TA Cert SHA2-512 " + strings.Repeat("0f", 64),
		"PKIX-EE SPKI SHA2-256 " + strings.Repeat("0f", 32),
		"3 1 1 0f0f", // too short for SHA2-256
	} {
		r, err := dane.ParseTLSA(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("usage=%d selector=%d matching=%d bytes=%d usable=%v\n",
			r.Usage, r.Selector, r.MatchingType, len(r.Data), dane.Usable(r))
	}
	// Output:
	// usage=3 selector=1 matching=1 bytes=32 usable=true
	// usage=2 selector=0 matching=2 bytes=64 usable=true
	// usage=1 selector=1 matching=1 bytes=32 usable=false
	// usage=3 selector=1 matching=1 bytes=2 usable=false
}

// ResultType names the TLS-RPT result type (RFC 8460 §4.3) for a failure.
func ExampleResultType() {
	fmt.Println(dane.ResultType(dane.ErrNoMatch))
	fmt.Println(dane.ResultType(fmt.Errorf("mx1.example: %w", dane.ErrHostMismatch)))
	fmt.Println(dane.ResultType(&dane.LookupError{Name: "_25._tcp.mx1.example.", Type: "TLSA", Rcode: 2}))
	fmt.Println(dane.ResultType(dane.ErrDANERequired))
	// Output:
	// validation-failure
	// certificate-host-mismatch
	// dnssec-invalid
	// dane-required
}

// A Connector resolves the MX hosts through the DANE policy, skips hosts
// that cannot be used, and builds the STARTTLS configuration per host. The
// resolver is a validating resolver on this host (unbound, say).
func ExamplePolicy_LookupMX() {
	p := &dane.Policy{
		Resolver: &dane.Resolver{Addr: "127.0.0.1:53"},
		Logger:   slog.Default(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dest, err := p.LookupMX(ctx, "example.com")
	if err != nil {
		fmt.Println("defer:", err) // the MX lookup failed: retry later
		return
	}
	for _, h := range dest.Hosts {
		if h.Err != nil {
			// Lookup failure or dane-only without records: never deliver
			// to this host; report it.
			fmt.Println("skip", h.Name, dane.ResultType(h.Err), h.Err)
			continue
		}
		cfg, err := h.ClientConfig(&tls.Config{MinVersion: tls.VersionTLS12}, nil)
		if err != nil {
			continue
		}
		// Dial one of h.Addrs on port 25 and send EHLO. If h.RequiresTLS()
		// and STARTTLS is not offered, give up on this host; otherwise
		// tls.Client(conn, cfg).HandshakeContext(ctx) fails unless the
		// certificate matches h.TLSA (at DANE and DANEOnly).
		fmt.Println(h.Name, h.Level, "sni", cfg.ServerName, "tls required", h.RequiresTLS(), h.Addrs)
	}
}

// Policy implements policy.Policy, for composition with MTA-STS and static
// tables: the Requirement says whether DANE applies to the domain.
func ExamplePolicy_Lookup() {
	var p policy.Policy = &dane.Policy{Mandatory: true} // dane-only, resolver on 127.0.0.1:53
	req, err := p.Lookup(context.Background(), "example.com")
	if err != nil {
		fmt.Println("defer:", err)
		return
	}
	fmt.Println(req) // e.g. "example.com: dane-only (dane: MX mx.example.com: ...), on failure defer"
}

// A resolver across the network is believed only when explicitly trusted,
// because its AD bit could be forged on the way (RFC 7672 §1.3).
func ExampleResolver_Trusted() {
	fmt.Println((&dane.Resolver{}).Trusted())
	fmt.Println((&dane.Resolver{Addr: "[::1]:53"}).Trusted())
	fmt.Println((&dane.Resolver{Addr: "192.0.2.53:53"}).Trusted())
	fmt.Println((&dane.Resolver{Addr: "192.0.2.53:53", Trust: dane.TrustAlways}).Trusted())
	// Output:
	// true
	// true
	// false
	// true
}

// VerifyConnection plugs the DANE check into any tls.Config, for callers
// that hold TLSA records from elsewhere (a static table entry, say).
func ExampleVerifyConnection() {
	rec, _ := dane.ParseTLSA("3 1 1 " + strings.Repeat("0f", 32))
	cfg := &tls.Config{
		ServerName:         "mx.example.com", // the TLSA base domain (RFC 7672 §8.1)
		InsecureSkipVerify: true,             // DANE replaces WebPKI verification
		VerifyConnection:   dane.VerifyConnection([]policy.TLSA{rec}, []string{"mx.example.com"}, nil),
	}
	err := cfg.VerifyConnection(tls.ConnectionState{}) // no certificate presented
	fmt.Println(errors.Is(err, dane.ErrNoCertificate))
	// Output:
	// true
}
