package ndr

import (
	"errors"
	"testing"
)

func TestXtext(t *testing.T) {
	for enc, dec := range map[string]string{
		"":                       "",
		"rfc822;bob@example.com": "rfc822;bob@example.com",
		"a+2Bb+3Dc":              "a+b=c",
		"x+20y":                  "x y",
		"+E3+81+82":              "あ",
	} {
		got, err := DecodeXtext(enc)
		if err != nil || got != dec {
			t.Errorf("DecodeXtext(%q) = %q, %v; want %q", enc, got, err, dec)
		}
		if back := EncodeXtext(dec); back != enc {
			t.Errorf("EncodeXtext(%q) = %q, want %q", dec, back, enc)
		}
	}
	for _, bad := range []string{"+", "+2", "+2b", "+GG", "a=b", "a b", "é"} {
		if _, err := DecodeXtext(bad); !errors.Is(err, ErrBadXtext) {
			t.Errorf("DecodeXtext(%q) error = %v, want ErrBadXtext", bad, err)
		}
	}
}

// FuzzXtext: decoding never panics, and encoding then decoding is the
// identity.
func FuzzXtext(f *testing.F) {
	f.Add("rfc822;a+2Bb@example.com") // encoded plus sign
	f.Add("+")                        // truncated escape
	f.Add("\x00\xff=+ ")              // octets that must be escaped
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = DecodeXtext(s)
		got, err := DecodeXtext(EncodeXtext(s))
		if err != nil || got != s {
			t.Fatalf("round trip of %q: %q, %v", s, got, err)
		}
	})
}
