package transport

import (
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
)

// FuzzRouteNextHop checks that route next hops parse without panics and
// that accepted ones round-trip through the "[host]:port" key.
func FuzzRouteNextHop(f *testing.F) {
	for _, s := range []string{"smtp.example.net", "smtp.example.net:587", "[smtp.example.net]:587", "[2001:db8::1]:25",
		"192.0.2.1", "2001:db8::1", "[x", "host:0", "host:99999", ":25", "[]:25", "[h]x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseNextHop(s)
		if err != nil {
			return
		}
		if h.host == "" || h.port <= 0 || h.port > 65535 {
			t.Fatalf("accepted %q as %+v", s, h)
		}
		h2, err := parseNextHop(h.key())
		if err != nil || h2 != h {
			t.Fatalf("%q: key %q reparsed as %+v, %v", s, h.key(), h2, err)
		}
	})
}

// FuzzUTF8AddrXtext checks that the RFC 6533 utf-8-addr-xtext encoding
// of ORCPT never holds "+", "=", space, CR or LF.
func FuzzUTF8AddrXtext(f *testing.F) {
	f.Add("rfc822;user@example.com")
	f.Add("a+b=c d\x00é")
	f.Fuzz(func(t *testing.T, s string) {
		u := utf8AddrXtext(s)
		if strings.ContainsAny(u, "+= \r\n") {
			t.Fatalf("utf8AddrXtext(%q) = %q", s, u)
		}
	})
}

func TestMatchRoute(t *testing.T) {
	routes := []Route{{Domain: "*"}, {Domain: ".example.com"}, {Domain: "mail.example.com"}, {Domain: ".sub.example.com"}}
	for d, want := range map[string]int{"mail.example.com": 2, "a.example.com": 1, "x.sub.example.com": 3, "example.com": 0,
		"other.org": 0, "MAIL.Example.COM.": 2} {
		if got := matchRoute(routes, d); got != want {
			t.Errorf("%s: route %d, want %d", d, got, want)
		}
	}
	if got := matchRoute(routes[1:], "other.org"); got != -1 {
		t.Errorf("no default route: got %d", got)
	}
}

func TestRequirementAllowsMX(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{{"mx1.example.com", true}, {"example.com", false}, {"a.mx.example.com", false}, {"mail.example.net", true}, {"MX2.EXAMPLE.COM.", true}, {"mail.example.net.evil", false}} {
		if got := (policy.Requirement{MXPatterns: []string{"*.example.com", "mail.example.net"}}).AllowsMX(tc.host); got != tc.ok {
			t.Errorf("%s: %v", tc.host, got)
		}
	}
	if !(policy.Requirement{}).AllowsMX("any.example") {
		t.Error("a requirement without MX patterns refused a host")
	}
}
