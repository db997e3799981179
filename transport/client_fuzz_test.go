package transport

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"
	"testing"
)

// FuzzClientReply feeds arbitrary server output to the reply reader, the EHLO
// parser and the enhanced-code splitter: none may panic, and what they
// accept must be consistent.
func FuzzClientReply(f *testing.F) {
	f.Add("250-mx.example.test\r\n250-STARTTLS\r\n250-SIZE 1000\r\n250 DSN\r\n")
	f.Add("220 mx ESMTP\r\n")
	f.Add("250\r\n")                                   // bare code
	f.Add("250-a\r\n251 b\r\n")                        // code changes mid-reply
	f.Add("550 5.1.1 no such user\r\n")                // enhanced code
	f.Add("450-4.2.1 busy\r\n450 4.2.1 try later\r\n") // enhanced code on every line
	f.Add("2500 x\r\n")                                // bad separator
	f.Add("-12 x\r\n")                                 // sign in the code
	f.Add("250-x\r\n250-  \r\n250 -bad\r\n")           // empty and invalid keywords
	f.Fuzz(func(t *testing.T, in string) {
		r, err := readReply(textproto.NewReader(bufio.NewReader(strings.NewReader(in))))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 {
			t.Fatalf("accepted reply %+v", r)
		}
		ext := parseEHLO(r.Lines)
		for k := range ext {
			if k != strings.ToUpper(k) || !validKeyword(k) {
				t.Fatalf("bad keyword %q", k)
			}
		}
		e := r.asError("X")
		if e.Code != r.Code {
			t.Fatalf("code changed")
		}
		if ec := e.EnhancedCode; ec != (EnhancedCode{}) {
			if _, err := ParseEnhancedCode(ec.String()); err != nil {
				t.Fatalf("accepted bad enhanced code %v", ec)
			}
		}
	})
}

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

// FuzzClientXtext checks that xtext output is pure printable ASCII without "+"
// or "=" other than as escapes (RFC 3461 §4).
func FuzzClientXtext(f *testing.F) {
	f.Add("rfc822;user@example.com")
	f.Add("a+b=c d\x00é")
	f.Fuzz(func(t *testing.T, s string) {
		x := xtext(s)
		for i := 0; i < len(x); i++ {
			c := x[i]
			if c < '!' || c > '~' || c == '=' {
				t.Fatalf("xtext(%q) = %q has %q", s, x, c)
			}
			if c == '+' && (i+2 >= len(x) || !isHex(x[i+1]) || !isHex(x[i+2])) {
				t.Fatalf("xtext(%q) = %q: bad escape", s, x)
			}
		}
		u := utf8AddrXtext(s)
		if strings.ContainsAny(u, "+= \r\n") {
			t.Fatalf("utf8AddrXtext(%q) = %q", s, u)
		}
	})
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func TestParseEHLO(t *testing.T) {
	ext := parseEHLO([]string{"mx.example.test greets you", "STARTTLS", "size 35882577", "AUTH PLAIN LOGIN", "8BITMIME", "-bad", ""})
	want := map[string]string{"STARTTLS": "", "SIZE": "35882577", "AUTH": "PLAIN LOGIN", "8BITMIME": ""}
	if len(ext) != len(want) {
		t.Fatalf("got %v", ext)
	}
	for k, v := range want {
		if got, ok := ext[k]; !ok || got != v {
			t.Errorf("%s = %q, %v", k, got, ok)
		}
	}
	// The greeting line is never an extension, even if it says STARTTLS.
	if _, ok := parseEHLO([]string{"STARTTLS"})["STARTTLS"]; ok {
		t.Error("greeting line parsed as an extension")
	}
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

func TestMatchMXPatterns(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{{"mx1.example.com", true}, {"example.com", false}, {"a.mx.example.com", false}, {"mail.example.net", true}, {"MX2.EXAMPLE.COM.", true}, {"mail.example.net.evil", false}} {
		if got := matchMXPatterns(tc.host, []string{"*.example.com", "mail.example.net"}); got != tc.ok {
			t.Errorf("%s: %v", tc.host, got)
		}
	}
}

// referenceData is dataWriter's output computed on the whole message at
// once: every CRLF, bare CR and bare LF becomes CRLF, the last line is
// ended, lines starting with "." get one more, then "." CRLF.
func referenceData(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	msg = strings.ReplaceAll(msg, "\r", "\n")
	if msg != "" && !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(msg, "\n") {
		if l == "" {
			continue
		}
		if l[0] == '.' {
			b.WriteByte('.')
		}
		b.WriteString(strings.TrimSuffix(l, "\n") + "\r\n")
	}
	b.WriteString(".\r\n")
	return b.String()
}

// writeChunked writes msg through a dataWriter in pieces whose lengths
// come from cuts (each byte a length, 0 meaning 1), then closes it.
func writeChunked(t *testing.T, msg string, cuts []byte) string {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16)
	w := &dataWriter{w: bw}
	for i := 0; msg != ""; i++ {
		n := len(msg)
		if len(cuts) > 0 {
			n = min(max(int(cuts[i%len(cuts)]), 1), len(msg))
		}
		if k, err := w.Write([]byte(msg[:n])); k != n || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		msg = msg[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// The DATA writer normalises line ends and dot-stuffs the same whatever the
// sizes of the writes (a CR ending one write and an LF starting the next
// are one CRLF).
func TestDataWriterChunks(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a\r.\rb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{".\rc", "..\r\nc\r\n.\r\n"},
		{"\r\n.\r\n", "\r\n..\r\n.\r\n"},
		{"x\r", "x\r\n.\r\n"},
		{"x\r\r\n", "x\r\n\r\n.\r\n"},
		{"x\n\r", "x\r\n\r\n.\r\n"},
		{"..", "...\r\n.\r\n"},
	}
	for _, tt := range tests {
		for _, cuts := range [][]byte{nil, {1}, {2}, {3, 1}} {
			if got := writeChunked(t, tt.in, cuts); got != tt.want {
				t.Errorf("%q in pieces %v: got %q, want %q", tt.in, cuts, got, tt.want)
			}
		}
		if ref := referenceData(tt.in); ref != tt.want {
			t.Errorf("reference(%q) = %q, want %q", tt.in, ref, tt.want)
		}
	}
}

// FuzzDataWriter compares the streaming DATA writer, fed in arbitrary
// pieces, with referenceData on the whole message.
func FuzzDataWriter(f *testing.F) {
	f.Add("a\r.\rb\r\n", []byte{1})       // the bare CR around a dot
	f.Add(".\rc\r\n", []byte{1, 2})       // dot CR at the start of a line
	f.Add("x\r\ny", []byte{2})            // CRLF split between writes
	f.Add("\r\r\n\n\r.", []byte{})        // every kind of line end
	f.Add("..\r\n.\r\n.", []byte{3, 250}) // stuffing
	f.Fuzz(func(t *testing.T, msg string, cuts []byte) {
		if got, want := writeChunked(t, msg, cuts), referenceData(msg); got != want {
			t.Fatalf("writer %q, reference %q", got, want)
		}
	})
}
