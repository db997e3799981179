package queue

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// TestWithConnector runs the queue with the real transport.Connector over
// loopback: one recipient's domain has a TLS-capable server, the other's
// only plaintext, both under an Encrypt policy that bounces on failure. The
// first is delivered over TLS; the second gets nothing at all on the wire
// past EHLO, and the sender's server receives the failed DSN with a null
// reverse-path.
func TestWithConnector(t *testing.T) {
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.partner.test", Cert: transporttest.GoodCert, DSN: true})
	legacy := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.legacy.test"})
	origin := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "mx.origin.test", Cert: transporttest.GoodCert, DSN: true})
	encrypt := policy.Fixed{Level: policy.Encrypt, OnFailure: policy.Bounce}
	logs := &logBuffer{}
	conn := &transport.Connector{
		Hostname: "relay.example.org",
		Routes: []transport.Route{
			{Domain: "partner.test", NextHop: partner.Addr, Policy: encrypt},
			{Domain: "legacy.test", NextHop: legacy.Addr, Policy: encrypt},
			{Domain: "origin.test", NextHop: origin.Addr, Policy: encrypt},
		},
		Timeouts: transport.ConnectorTimeouts{Connect: 5 * time.Second, Greeting: 5 * time.Second, Command: 5 * time.Second, Data: 5 * time.Second},
	}
	defer conn.Close()
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	q := &Queue{Store: st, Deliverer: conn, Hostname: "relay.example.org", PollInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	defer stop()

	env := &transport.Envelope{From: "alice@origin.test", Recipients: []transport.Recipient{
		{Address: "bob@partner.test"}, {Address: "carol@legacy.test"}}}
	if _, err := q.Enqueue(ctx, env, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return len(origin.Messages()) == 1 && len(partner.Messages()) == 1 })
	waitUntil(t, func() bool { msgs, _ := st.List(ctx); return len(msgs) == 0 })
	stop() // Run waits for its workers: every log line is written

	pm := partner.Messages()[0]
	if pm.TLS == nil || pm.TLS.Version != tls.VersionTLS13 {
		t.Errorf("partner delivery TLS = %+v", pm.TLS)
	}
	if !bytes.Contains(pm.Data, []byte("Hello Bob.")) {
		t.Errorf("partner got %q", pm.Data)
	}
	if len(legacy.Messages()) != 0 || transporttest.Contains(legacy.Seen(), "MAIL FROM") {
		t.Errorf("legacy server saw the envelope in plaintext:\n%s", legacy.Seen())
	}
	dsn := origin.Messages()[0]
	if dsn.Envelope.From != "" || len(dsn.Envelope.Recipients) != 1 || dsn.Envelope.Recipients[0].Address != "alice@origin.test" {
		t.Errorf("DSN envelope: from %q to %+v", dsn.Envelope.From, dsn.Envelope.Recipients)
	}
	rep, err := ndr.Parse(bytes.NewReader(dsn.Data))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("DSN recipients: %+v", rep.Recipients)
	}
	rr := rep.Recipients[0]
	if rr.Action != ndr.ActionFailed || !strings.Contains(rr.FinalRecipient, "carol@legacy.test") || !strings.HasPrefix(rr.Status, "5.7.") {
		t.Errorf("DSN recipient group: %+v", rr)
	}
	out := logs.String()
	for _, want := range []string{"rcpt=bob@partner.test", "tls_version=TLSv1.3", "cipher=TLS_", "policy=", "result=delivered",
		"rcpt=carol@legacy.test", "result=failed", "tls_failure=starttls-not-supported"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// A Connector that cannot deliver anything (no usable Hostname, a route
// without a domain) keeps Run from starting, with the configuration
// error, instead of deferring every message until it expires. The same
// holds for Local.
func TestRunValidatesDeliverer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deliverer  *transport.Connector
		local      bool
		wantSubstr string
	}{
		{"localhost", &transport.Connector{Hostname: "localhost"}, false, "localhost"},
		{"empty route domain", &transport.Connector{Hostname: "relay.example.org", Routes: []transport.Route{{NextHop: "[smarthost.example]:587"}}}, false, "Domain is empty"},
		{"local deliverer", &transport.Connector{Hostname: "mail"}, true, "fully qualified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.q.Deliverer = tc.deliverer
			if tc.local {
				h.q.Deliverer = h.fake
				h.q.Local = tc.deliverer
			}
			id := h.enqueue("sender@example.org", transport.Recipient{Address: "rcpt@example.test"})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := h.q.Run(ctx)
			if !errors.Is(err, transport.ErrConfig) || !strings.Contains(err.Error(), tc.wantSubstr) {
				t.Fatalf("Run = %v, want a transport.ErrConfig saying %q", err, tc.wantSubstr)
			}
			if _, err := h.store.Get(context.Background(), id); err != nil {
				t.Errorf("message gone after the refused start: %v", err)
			}
		})
	}
}
