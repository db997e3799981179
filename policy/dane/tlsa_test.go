package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/policy"
)

var digest32 = strings.Repeat("ab", 32)

func TestParseTLSA(t *testing.T) {
	cases := []struct {
		in   string
		want policy.TLSA
	}{
		{"3 1 1 " + digest32, tl(3, 1, 1, bytes.Repeat([]byte{0xab}, 32))},
		{"  dane-ee  SPKI sha2-256\t" + digest32[:20] + "\n" + digest32[20:] + " ", tl(3, 1, 1, bytes.Repeat([]byte{0xab}, 32))},
		{"DANE-TA Cert FULL 0102", tl(2, 0, 0, []byte{1, 2})},
		{"PKIX-TA 0 2 00", tl(0, 0, 2, []byte{0})},
		{"PrivCert PrivSel PrivMatch ff", tl(255, 255, 255, []byte{0xff})},
		{"255 9 200 AbCd", tl(255, 9, 200, []byte{0xab, 0xcd})},
	}
	for _, c := range cases {
		got, err := ParseTLSA(c.in)
		if err != nil {
			t.Errorf("ParseTLSA(%q): %v", c.in, err)
			continue
		}
		if got.Usage != c.want.Usage || got.Selector != c.want.Selector || got.MatchingType != c.want.MatchingType || !bytes.Equal(got.Data, c.want.Data) {
			t.Errorf("ParseTLSA(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	bad := []string{
		"",
		"3 1 1",          // no data
		"3 1 1 abc",      // odd hex
		"3 1 1 zz",       // not hex
		"256 1 1 ab",     // out of range
		"-1 1 1 ab",      // negative
		"DANE-XX 1 1 ab", // unknown mnemonic
		"3 SHA2-256 1 ab",
		"_25._tcp.mx.example. IN TLSA 3 1 1 ab", // full zone line is not accepted
	}
	for _, in := range bad {
		if got, err := ParseTLSA(in); !errors.Is(err, ErrBadTLSA) {
			t.Errorf("ParseTLSA(%q) = %+v, %v; want ErrBadTLSA", in, got, err)
		}
	}
}

func TestUsable(t *testing.T) {
	d32, d64 := make([]byte, sha256.Size), make([]byte, sha512.Size)
	cases := []struct {
		r    policy.TLSA
		want bool
	}{
		{tl(3, 1, 1, d32), true},
		{tl(3, 0, 2, d64), true},
		{tl(2, 0, 0, []byte{0x30}), true},
		{tl(2, 1, 1, d32), true},
		{tl(0, 0, 1, d32), false}, // PKIX-TA
		{tl(1, 1, 1, d32), false}, // PKIX-EE
		{tl(4, 1, 1, d32), false}, // unknown usage
		{tl(3, 2, 1, d32), false}, // unknown selector
		{tl(3, 1, 3, d32), false}, // unknown matching type
		{tl(3, 1, 1, d64), false}, // SHA-256 with 64 bytes
		{tl(3, 1, 2, d32), false}, // SHA-512 with 32 bytes
		{tl(3, 1, 0, nil), false}, // Full with no data
	}
	for _, c := range cases {
		if got := Usable(c.r); got != c.want {
			t.Errorf("Usable(%d %d %d, %d bytes) = %v", c.r.Usage, c.r.Selector, c.r.MatchingType, len(c.r.Data), got)
		}
	}
	var all []policy.TLSA
	for _, c := range cases {
		all = append(all, c.r)
	}
	u, n := Split(all)
	if len(u) != 4 || len(n) != 8 || u[0].Usage != 3 || n[0].Usage != 0 {
		t.Errorf("Split: %d usable, %d unusable", len(u), len(n))
	}
}

func TestDNSConversionAndAssociation(t *testing.T) {
	l, err := certtest.SelfSigned("mx.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range allParams {
		r, err := Record(l.X509, UsageDANEEE, pr.sel, pr.mt)
		if err != nil {
			t.Fatal(err)
		}
		if !Usable(r) || !Match(l.X509, r) {
			t.Errorf("3 %d %d: usable=%v match=%v", pr.sel, pr.mt, Usable(r), Match(l.X509, r))
		}
		rr := ToDNS("_25._tcp.mx.example.com", 300, r)
		if rr.Hdr.Name != "_25._tcp.mx.example.com." || rr.Hdr.Rrtype != dns.TypeTLSA {
			t.Errorf("ToDNS header %+v", rr.Hdr)
		}
		// Through the presentation format of miekg/dns and back.
		parsed, err := dns.NewRR(rr.String())
		if err != nil {
			t.Fatal(err)
		}
		back, err := FromDNS(parsed.(*dns.TLSA))
		if err != nil || FormatTLSA(back) != FormatTLSA(r) {
			t.Errorf("round trip: %v %v", back, err)
		}
		// The RDATA part of miekg's presentation format is ours too.
		fields := strings.Fields(rr.String())
		ours, err := ParseTLSA(strings.Join(fields[len(fields)-4:], " "))
		if err != nil || FormatTLSA(ours) != FormatTLSA(r) {
			t.Errorf("ParseTLSA of miekg text: %v %v", ours, err)
		}
	}
	if _, err := Association(l.X509, 2, 1); err == nil {
		t.Error("unknown selector accepted")
	}
	if _, err := Association(l.X509, 1, 3); err == nil {
		t.Error("unknown matching type accepted")
	}
	if _, err := FromDNS(&dns.TLSA{Certificate: "xyz"}); !errors.Is(err, ErrBadTLSA) {
		t.Errorf("FromDNS bad hex: %v", err)
	}
	if _, err := FromDNS(nil); !errors.Is(err, ErrBadTLSA) {
		t.Errorf("FromDNS nil: %v", err)
	}
	if Match(nil, tl(3, 1, 1, make([]byte, 32))) {
		t.Error("nil certificate matched")
	}
}

func TestResultTypeUnknown(t *testing.T) {
	if ResultType(nil) != "" || ResultType(errors.New("other")) != "" {
		t.Error("ResultType of nil or foreign error not empty")
	}
}

func tl(usage, selector, matchingType uint8, data []byte) policy.TLSA {
	return policy.TLSA{Usage: usage, Selector: selector, MatchingType: matchingType, Data: data}
}
