package transport_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// attemptLines parses the JSON "delivery attempt" lines of buf.
func attemptLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, l)
		}
		if m["msg"] == "delivery attempt" {
			out = append(out, m)
		}
	}
	return out
}

// oneAttemptLine delivers env with c logging JSON and returns its one
// "delivery attempt" line.
func oneAttemptLine(t *testing.T, c *transport.Connector, env *transport.Envelope) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	c.Logger = slogJSON(&buf)
	deliver(t, c, env)
	lines := attemptLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("%d attempt lines, want 1:\n%s", len(lines), buf.String())
	}
	return lines[0]
}

// wantFields asserts that line has each key with the given value (a
// string, bool or float64 as encoding/json decodes them); a nil value
// only requires the key.
func wantFields(t *testing.T, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := line[k]
		if !ok {
			t.Errorf("attempt line lacks %q: %v", k, line)
			continue
		}
		if v != nil && got != v {
			t.Errorf("attempt line %s = %#v, want %#v", k, got, v)
		}
	}
}

// TestAttemptLogLineFields: every delivery attempt logs one line with the
// queue id, the recipient domain, the MX, the TLS version and cipher,
// whether the certificate was verified, the policy level and source and
// the outcome, whether the attempt succeeded or failed (the keys logAttempt
// documents).
func TestAttemptLogLineFields(t *testing.T) {
	t.Run("delivered over verified TLS", func(t *testing.T) {
		srv := transporttest.NewTLSServer(t)
		e := newEnv(t)
		e.single(srv.Addr)
		c := e.connector(fixed(policy.Verify), srv)
		line := oneAttemptLine(t, c, envelope("user@example.test"))
		wantFields(t, line, map[string]any{
			"queue_id": "test-1", "rcpt_domain": "example.test", "mx": "mx.example.test", "ip": "192.0.2.10",
			"tls_version": "TLSv1.3", "cipher": nil, "verified": true,
			"policy_level": "verify", "policy_source": "default", "outcome": "delivered", "code": float64(250),
		})
		if c, _ := line["cipher"].(string); !strings.HasPrefix(c, "TLS_") {
			t.Errorf("cipher = %q", c)
		}
	})
	t.Run("deferred before MAIL", func(t *testing.T) {
		srv := transporttest.NewPlainServer(t)
		e := newEnv(t)
		e.single(srv.Addr)
		c := e.connector(fixed(policy.Encrypt), srv)
		line := oneAttemptLine(t, c, envelope("user@example.test"))
		wantFields(t, line, map[string]any{
			"queue_id": "test-1", "rcpt_domain": "example.test", "mx": "mx.example.test",
			"tls_version": "none", "cipher": "", "verified": false,
			"policy_level": "encrypt", "policy_source": "default", "outcome": "deferred",
			"code": float64(451), "enhanced": "4.7.4", "tls_failure": "starttls-not-supported",
		})
	})
	t.Run("fixed next hop names the recipient domain", func(t *testing.T) {
		srv := transporttest.NewTLSServer(t)
		e := newEnv(t)
		c := e.connector(fixed(policy.Encrypt), srv)
		c.Routes = []transport.Route{{Domain: "partner.example", NextHop: srv.Addr}}
		line := oneAttemptLine(t, c, envelope("user@partner.example"))
		wantFields(t, line, map[string]any{
			"queue_id": "test-1", "rcpt_domain": "partner.example", "mx": "127.0.0.1",
			"verified": false, "policy_level": "encrypt", "outcome": "delivered",
		})
	})
}
