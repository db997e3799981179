package queue

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// TestAttemptLogLinesJSON: under the queue, every delivery attempt logs one
// JSON line from the Connector (per connection) and one from the queue
// (per recipient), each with the queue id, the recipient domain, the MX,
// the TLS version and cipher, whether the certificate was verified, the
// policy level and source, and the outcome (issue 12 item 4).
func TestAttemptLogLinesJSON(t *testing.T) {
	tlsSrv := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.partner.test", Cert: transporttest.GoodCert})
	plain := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.legacy.test"})
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	conn := &transport.Connector{
		Hostname: "relay.example.org",
		Routes: []transport.Route{
			{Domain: "partner.test", NextHop: tlsSrv.Addr, Policy: policy.Fixed{Level: policy.Encrypt}},
			{Domain: "legacy.test", NextHop: plain.Addr, Policy: policy.Fixed{Level: policy.Encrypt}},
		},
		Logger:   log,
		Timeouts: transport.ConnectorTimeouts{Connect: 5 * time.Second, Greeting: 5 * time.Second, Command: 5 * time.Second, Data: 5 * time.Second},
	}
	defer conn.Close()
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q := &Queue{Store: st, Deliverer: conn, Hostname: "relay.example.org", PollInterval: 5 * time.Millisecond, Logger: log,
		Backoff: []time.Duration{time.Hour}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	env := &transport.Envelope{From: "alice@origin.test", Recipients: []transport.Recipient{
		{Address: "bob@partner.test"}, {Address: "carol@legacy.test"}}}
	id, err := q.Enqueue(ctx, env, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return strings.Count(logs.String(), `"msg":"delivery attempt"`) >= 4 })
	cancel()
	<-done

	type line = map[string]any
	conns, rcpts := map[string]line{}, map[string]line{}
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m line
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, l)
		}
		if m["msg"] != "delivery attempt" {
			continue
		}
		d, _ := m["rcpt_domain"].(string)
		if _, ok := m["rcpt"]; ok {
			rcpts[d] = m
		} else {
			conns[d] = m
		}
	}
	for _, who := range []map[string]line{conns, rcpts} {
		for d, want := range map[string]line{
			"partner.test": {"queue_id": id, "mx": "127.0.0.1", "tls_version": "TLSv1.3", "verified": false,
				"policy_level": "encrypt", "policy_source": "route"},
			"legacy.test": {"queue_id": id, "mx": "127.0.0.1", "tls_version": "none", "cipher": "", "verified": false,
				"policy_level": "encrypt", "policy_source": "route", "tls_failure": "starttls-not-supported"},
		} {
			m, ok := who[d]
			if !ok {
				t.Errorf("no attempt line for %s in:\n%s", d, logs.String())
				continue
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s line: %s = %#v, want %#v (%v)", d, k, m[k], v, m)
				}
			}
		}
	}
	if c, _ := conns["partner.test"]["cipher"].(string); !strings.HasPrefix(c, "TLS_") {
		t.Errorf("partner cipher %q", c)
	}
	if c, _ := rcpts["partner.test"]["cipher"].(string); !strings.HasPrefix(c, "TLS_") {
		t.Errorf("partner cipher %q", c)
	}
	for d, o := range map[string]string{"partner.test": "delivered", "legacy.test": "deferred"} {
		if conns[d]["outcome"] != o {
			t.Errorf("%s connector outcome %v, want %s", d, conns[d]["outcome"], o)
		}
	}
	for d, o := range map[string]string{"partner.test": "delivered", "legacy.test": "deferred"} {
		if rcpts[d]["result"] != o {
			t.Errorf("%s queue result %v, want %s", d, rcpts[d]["result"], o)
		}
	}
}
