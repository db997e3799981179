package dane

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/policy"
)

// FuzzParseTLSA checks that ParseTLSA never panics, that whatever it accepts
// survives a FormatTLSA round trip unchanged, and that Usable agrees with
// the digest lengths.
func FuzzParseTLSA(f *testing.F) {
	f.Add("3 1 1 " + digest32)                    // the common DANE-EE SPKI SHA2-256
	f.Add("DANE-TA cert sha2-512 " + digest32)    // mnemonics, wrong digest length
	f.Add("2 0 0 30820122300d06092a864886f70d01") // DANE-TA Cert Full (start of a DER certificate)
	f.Add("3 1 1 ab cd\tef\n01")                  // hex split by white space
	f.Add("255 255 255 ff")                       // private-use values
	f.Add("3 1 1")                                // no data
	f.Add("3 1 1 abc")                            // odd-length hex
	f.Add("256 1 1 ab")                           // out of range
	f.Add("")                                     // empty
	f.Add("PRIVCERT privsel PrivMatch 00")        // mnemonic case
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseTLSA(s)
		if err != nil {
			if !errors.Is(err, ErrBadTLSA) {
				t.Fatalf("error %v does not wrap ErrBadTLSA", err)
			}
			return
		}
		again, err := ParseTLSA(FormatTLSA(r))
		if err != nil {
			t.Fatalf("FormatTLSA output %q does not parse: %v", FormatTLSA(r), err)
		}
		if again.Usage != r.Usage || again.Selector != r.Selector || again.MatchingType != r.MatchingType || !bytes.Equal(again.Data, r.Data) {
			t.Fatalf("round trip changed %+v into %+v", r, again)
		}
		if Usable(r) && r.MatchingType == MatchSHA256 && len(r.Data) != 32 {
			t.Fatalf("usable SHA2-256 record with %d bytes", len(r.Data))
		}
		rr, err := FromDNS(ToDNS("_25._tcp.x.", 0, r))
		if err != nil || FormatTLSA(rr) != FormatTLSA(r) {
			t.Fatalf("DNS round trip: %v %v", rr, err)
		}
	})
}

// FuzzQueryAnswer feeds arbitrary DNS messages to the resolver's answer
// handling (CNAME chain following, record extraction, MX and TLSA
// conversion) through the Exchange seam: no panic, and an answer is only
// authentic when AD was set.
func FuzzQueryAnswer(f *testing.F) {
	seed := func(build func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("_25._tcp.mx.example.", dns.TypeTLSA)
		m.Response = true
		build(m)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	// A secure TLSA answer.
	f.Add(seed(func(m *dns.Msg) {
		m.AuthenticatedData = true
		m.Answer = append(m.Answer, ToDNS("_25._tcp.mx.example.", 60, mustParse(f, "3 1 1 "+digest32)))
	}))
	// A CNAME loop.
	f.Add(seed(func(m *dns.Msg) {
		hdr := func(n string) dns.RR_Header {
			return dns.RR_Header{Name: n, Rrtype: dns.TypeCNAME, Class: dns.ClassINET}
		}
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr("_25._tcp.mx.example."), Target: "a.example."},
			&dns.CNAME{Hdr: hdr("a.example."), Target: "_25._tcp.mx.example."})
	}))
	// SERVFAIL.
	f.Add(seed(func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure }))
	// Garbage.
	f.Add([]byte{0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, wire []byte) {
		resp := new(dns.Msg)
		if resp.Unpack(wire) != nil {
			return
		}
		r := &Resolver{Addr: "127.0.0.1:53", Exchange: func(_ context.Context, _ string, m *dns.Msg, _ string) (*dns.Msg, error) {
			return resp, nil
		}}
		for _, qt := range []uint16{dns.TypeTLSA, dns.TypeMX} {
			name := "_25._tcp.mx.example."
			if qt == dns.TypeMX {
				name = "mx.example."
			}
			a, err := r.Query(context.Background(), name, qt)
			if err != nil {
				if !errors.Is(err, ErrLookupFailed) {
					t.Fatalf("error %v does not wrap ErrLookupFailed", err)
				}
				continue
			}
			if a.Authentic && !resp.AuthenticatedData {
				t.Fatal("authentic without AD")
			}
		}
		if _, err := r.LookupTLSA(context.Background(), "mx.example", 25); err != nil && !errors.Is(err, ErrLookupFailed) {
			t.Fatal(err)
		}
		if _, err := r.LookupMX(context.Background(), "mx.example"); err != nil && !errors.Is(err, ErrLookupFailed) {
			t.Fatal(err)
		}
	})
}

func mustParse(f *testing.F, s string) policy.TLSA {
	r, err := ParseTLSA(s)
	if err != nil {
		f.Fatal(err)
	}
	return r
}
