package transport

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestReceivedHeader checks the RFC 3848 protocol names, the address
// literal forms and the sanitising of client-supplied text.
func TestReceivedHeader(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))
	tls13 := &TLSInfo{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384}
	withCert := &TLSInfo{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, PeerSubject: "CN=partner (x)", Verified: true}
	for _, c := range []struct {
		name string
		env  Envelope
		want string
	}{
		{"plaintext", Envelope{Helo: "c.example", ClientAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}},
			"Received: from c.example ([192.0.2.7])\r\n\tby mx.test (mailtls) with ESMTP id ID;\r\n\tFri, 02 Jan 2026 03:04:05 +0100\r\n"},
		{"tls auth ipv6 one rcpt", Envelope{Helo: "[2001:db8::1]", ClientAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::1")}, TLS: tls13, AuthIdentity: "u",
			Recipients: []Recipient{{Address: "r@example.net"}}},
			"Received: from [2001:db8::1] ([IPv6:2001:db8::1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\tby mx.test (mailtls) with ESMTPSA id ID\r\n\tfor <r@example.net>;\r\n\tFri, 02 Jan 2026 03:04:05 +0100\r\n"},
		{"utf8 client cert two rcpts", Envelope{Helo: "bad helo\r(", TLS: withCert, SMTPUTF8: true, Recipients: []Recipient{{Address: "a@x"}, {Address: "b@x"}}},
			"Received: from bad_helo??\r\n\t(using TLSv1.2 with cipher TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (128/128 bits))\r\n\t(client certificate CN=partner_?x?, verified)\r\n\tby mx.test (mailtls) with UTF8SMTPS id ID;\r\n\tFri, 02 Jan 2026 03:04:05 +0100\r\n"},
	} {
		env := c.env
		env.ID, env.ReceivedAt = "ID", at
		if got := receivedHeader("mx.test", &env, ""); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
	}
	if got := receivedHeader("", &Envelope{ID: "I", ReceivedAt: at}, ""); !strings.HasPrefix(got, "Received: from unknown\r\n\tby localhost ") {
		t.Errorf("empty names: %q", got)
	}
}

// TestTLSRequiredHeader: "TLS-Required: No" in the header section sets
// Envelope.TLSRequiredNo (RFC 8689 §3), unless MAIL carried REQUIRETLS; the
// same text in the body does not.
func TestTLSRequiredHeader(t *testing.T) {
	for _, c := range []struct {
		msg        string
		requireTLS bool
		want       bool
	}{
		{"Subject: a\r\nTLS-Required: No\r\n\r\nbody\r\n", false, true},
		{"tls-required:   no  \r\n\r\n", false, true},
		{"TLS-Required:\r\n No\r\nSubject: folded\r\n\r\n", false, true},
		{"TLS-Required: No\r\n\r\n", true, false},
		{"TLS-Required: Yes\r\n\r\n", false, false},
		{"Subject: x\r\n\r\nTLS-Required: No\r\n", false, false},
		{"\r\nTLS-Required: No\r\n", false, false},
		{"X-TLS-Required: No\r\n\r\n", false, false},
		{"TLS-Required: No", false, true}, // header only, no body
	} {
		for _, step := range []int{1, 3, 4096} { // any read split
			env := &Envelope{RequireTLS: c.requireTLS}
			b := &bodyReader{r: &slowReader{s: c.msg, step: step}, env: env}
			if _, err := io.Copy(io.Discard, b); err != nil {
				t.Fatal(err)
			}
			if env.TLSRequiredNo != c.want {
				t.Errorf("%q (requiretls=%v, step %d): TLSRequiredNo=%v", c.msg, c.requireTLS, step, env.TLSRequiredNo)
			}
		}
	}
}

type slowReader struct {
	s    string
	step int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.s)
	r.s = r.s[n:]
	return n, nil
}
