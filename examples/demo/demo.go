package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// The demo's cast. Every name is under .example (RFC 2606); every socket
// is on 127.0.0.1.
const (
	relayHost   = "relay.demo.example"
	localDomain = "demo.example"
	sender      = "alice@" + localDomain
	password    = "demo-password"
	partnerRcpt = "bob@partner.example"
	legacyRcpt  = "carol@legacy.example"

	// policyText is the relay's static TLS policy (Postfix
	// smtp_tls_policy_maps syntax, see policy.ParseTable).
	policyText = `# TLS policy of the demo relay
partner.example   verify                        # PKIX chain + MX host name
legacy.example    encrypt   on-failure=bounce   # TLS mandatory; return the mail at once if impossible
`
)

// demoTimeout bounds the whole run: the demo finishes by itself.
const demoTimeout = 20 * time.Second

// outcome is what the demo learned, for printing and for the test.
type outcome struct {
	submitAddr, partnerAddr, legacyAddr string
	submitTLS                           tls.ConnectionState
	results                             map[string]transport.RecipientResult // by recipient
	legacyWire                          string
	partnerGot                          []*transporttest.Message
	dsn                                 []byte
}

// runDemo starts a partner MX with STARTTLS and a certificate from an
// in-memory demo CA, a legacy MX without STARTTLS, and a relay (transport
// Server for implicit-TLS submission with AUTH, a durable queue, a
// Connector under a static TLS policy) wired to them through a fake DNS;
// submits one message to each; waits for the delivery, the refusal and the
// DSN; and prints what happened to out. Library logs go to logOut.
func runDemo(ctx context.Context, out, logOut io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(logOut, nil))
	o := &outcome{results: map[string]transport.RecipientResult{}}

	// The two destinations.
	ca, err := transporttest.NewCA("mailtls demo CA")
	if err != nil {
		return err
	}
	partner, err := transporttest.StartServer(transporttest.ServerConfig{
		Hostname: "mx.partner.example", Cert: transporttest.GoodCert, CA: ca, DSN: true})
	if err != nil {
		return err
	}
	defer partner.Close()
	legacy, err := transporttest.StartServer(transporttest.ServerConfig{Hostname: "mx.legacy.example"}) // no STARTTLS
	if err != nil {
		return err
	}
	defer legacy.Close()
	o.partnerAddr, o.legacyAddr = partner.Addr, legacy.Addr
	dns := newDemoNet(
		host{domain: "partner.example", mx: "mx.partner.example", ip: "192.0.2.10", loopback: partner.Addr},
		host{domain: "legacy.example", mx: "mx.legacy.example", ip: "192.0.2.20", loopback: legacy.Addr},
	)

	// The relay: outbound.
	table, err := policy.ParseTable(strings.NewReader(policyText), "demo-policy")
	if err != nil {
		return err
	}
	connector := &transport.Connector{
		Hostname: relayHost,
		Policy:   table,
		Resolver: dns.dns,
		Dialer:   dns.dialer,
		RootCAs:  ca.Pool, // the demo CA stands in for the WebPKI
		Logger:   log,
	}
	defer connector.Close()
	spool, err := os.MkdirTemp("", "mailtls-demo-spool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(spool)
	store, err := queue.OpenDirStore(spool)
	if err != nil {
		return err
	}
	watch := &observer{conn: connector, results: make(chan transport.RecipientResult, 4), inbox: make(chan []byte, 4)}
	q := &queue.Queue{
		Store:     store,
		Deliverer: watch,
		Hostname:  relayHost,
		Backoff:   []time.Duration{time.Minute},
		Logger:    log,
	}

	// The relay: inbound, implicit TLS (RFC 8314) with AUTH.
	leaf, err := ca.Issue(transporttest.LeafOptions{DNSNames: []string{relayHost}})
	if err != nil {
		return err
	}
	certs, err := certstore.New(certstore.Source{Name: "relay", Certificate: &leaf.TLS})
	if err != nil {
		return err
	}
	tlsCfg, err := certs.TLSConfig(certstore.TLSOptions{})
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	users, err := transport.ParseBcryptTable("demo users", strings.NewReader("alice:"+string(hash)+"\n"))
	if err != nil {
		return err
	}
	srv := &transport.Server{
		Hostname:      relayHost,
		Kind:          transport.KindSubmissions,
		TLSConfig:     tlsCfg,
		Handler:       q,
		Authenticator: users,
		Logger:        log,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	o.submitAddr = l.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(l) }()
	qctx, stopQueue := context.WithCancel(context.Background())
	go func() { defer wg.Done(); q.Run(qctx) }()
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		srv.Shutdown(sctx)
		stopQueue()
		wg.Wait()
	}()

	// Alice submits two messages.
	if err := submit(o, ca, []string{partnerRcpt, legacyRcpt}); err != nil {
		return fmt.Errorf("submission: %w", err)
	}

	// Two delivery results and one DSN come back.
	for len(o.results) < 2 || o.dsn == nil {
		select {
		case r := <-watch.results:
			o.results[r.Recipient.Address] = r
		case m := <-watch.inbox:
			o.dsn = m
		case <-ctx.Done():
			return fmt.Errorf("demo did not finish in %s (results %d, DSN %v): %w", demoTimeout, len(o.results), o.dsn != nil, ctx.Err())
		}
	}
	o.legacyWire = string(legacy.Seen())
	o.partnerGot = partner.Messages()
	return report(out, o)
}

// submit sends one message per recipient as alice over implicit TLS with
// AUTH PLAIN, verifying the relay's certificate against the demo CA.
func submit(o *outcome, ca *transporttest.CA, rcpts []string) error {
	c, err := smtp.DialTLS(o.submitAddr, &tls.Config{RootCAs: ca.Pool, ServerName: relayHost})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("laptop." + localDomain); err != nil {
		return err
	}
	o.submitTLS, _ = c.TLSConnectionState()
	if err := c.Auth(sasl.NewPlainClient("", "alice", password)); err != nil {
		return err
	}
	for i, rcpt := range rcpts {
		if err := c.Mail(sender, nil); err != nil {
			return err
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "From: Alice <%s>\r\nTo: <%s>\r\nSubject: demo message %d\r\nMessage-ID: <demo-%d@%s>\r\n\r\nHello from the mailtls demo.\r\n",
			sender, rcpt, i+1, i+1, localDomain)
		if err := w.Close(); err != nil {
			return err
		}
	}
	return c.Quit()
}

// observer is the queue's Deliverer: mail for the local domain (the DSN to
// alice) lands in an in-memory inbox; everything else goes through the
// Connector, and each recipient's result is reported for printing.
type observer struct {
	conn    *transport.Connector
	results chan transport.RecipientResult
	inbox   chan []byte
}

func (w *observer) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	if len(env.Recipients) > 0 && strings.HasSuffix(strings.ToLower(env.Recipients[0].Address), "@"+localDomain) {
		b := make([]byte, size)
		if _, err := body.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		select {
		case w.inbox <- b:
		default: // the demo has what it needs
		}
		res := &transport.Result{}
		for _, r := range env.Recipients {
			res.Recipients = append(res.Recipients, transport.RecipientResult{Recipient: r, Status: transport.Delivered,
				Reply: &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "delivered to the demo inbox"},
				Time:  time.Now()})
		}
		return res, nil
	}
	res, err := w.conn.Deliver(ctx, env, body, size)
	if err == nil {
		for _, r := range res.Recipients {
			select {
			case w.results <- r:
			default:
			}
		}
	}
	return res, err
}
