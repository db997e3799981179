package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// hostname is the name every target announces and the certificate carries.
const hostname = "mx.load.test"

// sinkHost is the name the relay target's Connector gives its next hop, the
// sink; the certificate carries it too, and sinkResolver maps it to the
// sink's loopback address.
const sinkHost = "sink.load.test"

// certNames are the names in the one certificate all servers use.
var certNames = []string{hostname, sinkHost}

// sinkResolver answers address lookups for sinkHost with 127.0.0.1 and
// nothing else, so that the relay target never resolves a real name.
type sinkResolver struct{}

func (sinkResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "no MX in smtpload", Name: name, IsNotFound: true}
}

func (sinkResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if host == sinkHost {
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
	}
	return nil, &net.DNSError{Err: "not the sink", Name: host, IsNotFound: true}
}

// serverTLS is the one TLS configuration all targets start from.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := certstore.LoadFiles(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return certstore.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }, certstore.TLSOptions{})
}

// serveMain runs one target on a loopback port: it prints "listening ADDR",
// answers each "count" line on stdin with "count N" (messages its handler
// took so far), serves until stdin reaches EOF (the parent closed it or
// died) or ctx ends, then prints "accepted N sessions S logged L"
// (connections a go-smtp child served, lines the relay logged; 0 for the
// others) and returns.
func serveMain(ctx context.Context, cfg *config, stdin io.Reader, stdout io.Writer) error {
	tlsCfg, err := serverTLS(cfg.certFile, cfg.keyFile)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var accepted, sessions atomic.Int64 // messages; connections (go-smtp children)
	var logged lineCounter              // the relay's log lines
	var serve func() error
	var shutdown func()
	switch cfg.serve {
	case "gosmtp", "sink":
		s := smtp.NewServer(bareBackend{&accepted, &sessions})
		s.Domain = hostname
		s.TLSConfig = tlsCfg
		s.MaxMessageBytes = transport.DefaultMaxMessageBytes
		s.MaxRecipients = transport.DefaultMaxRecipients
		s.ErrorLog = log.New(io.Discard, "", 0)
		serve = func() error { return s.Serve(l) }
		shutdown = func() { s.Close() }
	case "mailtls":
		s := &transport.Server{
			Hostname:  hostname,
			TLSConfig: tlsCfg,
			Handler: transport.HandlerFunc(func(_ context.Context, _ *transport.Envelope, r io.Reader) error {
				if _, err := io.Copy(io.Discard, r); err != nil {
					return err
				}
				accepted.Add(1)
				return nil
			}),
		}
		serve = func() error { return s.Serve(l) }
		shutdown = func() { s.Close() }
	case "queue", "relay":
		dir, err := os.MkdirTemp(cfg.spool, "smtpload-spool-")
		if err != nil {
			l.Close()
			return err
		}
		defer os.RemoveAll(dir)
		var store interface {
			queue.Store
			Close() error
		}
		if cfg.store == "dir" {
			store, err = queue.OpenDirStore(dir)
		} else {
			store, err = queue.OpenLogStore(dir, queue.LogStoreOptions{})
		}
		if err != nil {
			l.Close()
			return err
		}
		defer store.Close()
		var deliverer queue.Deliverer = queue.DeliverFunc(discardDelivery)
		// The relay logs as deployed, and as Postfix does in its targets:
		// at Info, every handshake, message accepted and delivery attempt,
		// to a file beside the spool, not in it (one write(2) a line,
		// like postlogd's).
		var logger *slog.Logger
		if cfg.serve == "relay" {
			f, err := os.CreateTemp(cfg.spool, "smtpload-relay-*.log")
			if err != nil {
				l.Close()
				return err
			}
			defer os.Remove(f.Name())
			defer f.Close()
			logged.w = f
			logger = slog.New(slog.NewTextHandler(&logged, nil))

			_, port, err := net.SplitHostPort(cfg.sink)
			if err != nil {
				l.Close()
				return fmt.Errorf("relay: -sink %q: %w", cfg.sink, err)
			}
			roots := x509.NewCertPool()
			pem, err := os.ReadFile(cfg.certFile)
			if err != nil || !roots.AppendCertsFromPEM(pem) {
				l.Close()
				return fmt.Errorf("relay: reading the sink's certificate: %v", err)
			}
			// Nil Policy: Verify for every destination, against the
			// sink's self-signed certificate as the only root.
			conn := &transport.Connector{
				Hostname: hostname,
				Routes:   []transport.Route{{Domain: "*", NextHop: net.JoinHostPort(sinkHost, port)}},
				Resolver: sinkResolver{},
				RootCAs:  roots,
				Pool:     transport.PoolConfig{MaxIdle: queue.DefaultConcurrency},
				Logger:   logger,
			}
			defer conn.Close()
			deliverer = conn
		}
		q := &queue.Queue{
			Store:     store,
			Hostname:  hostname,
			Deliverer: deliverer,
			Logger:    logger,
		}
		qctx, qcancel := context.WithCancel(context.Background())
		qdone := make(chan struct{})
		go func() { defer close(qdone); q.Run(qctx) }()
		s := &transport.Server{
			Hostname:  hostname,
			TLSConfig: tlsCfg,
			Logger:    logger,
			Handler: transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, r io.Reader) error {
				if err := q.ServeSMTP(ctx, env, r); err != nil {
					return err
				}
				accepted.Add(1)
				return nil
			}),
		}
		serve = func() error { return s.Serve(l) }
		shutdown = func() { s.Close(); qcancel(); <-qdone }
	}
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	fmt.Fprintf(stdout, "listening %s\n", l.Addr())

	// Only this goroutine writes to stdout from here on.
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var serr error
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			if l == "count" {
				fmt.Fprintf(stdout, "count %d\n", accepted.Load())
			}
		case <-ctx.Done():
			serr = ctx.Err()
			break wait
		case err := <-errc:
			serr = fmt.Errorf("%s: serve: %w", cfg.serve, err)
			break wait
		}
	}
	shutdown()
	fmt.Fprintf(stdout, "accepted %d sessions %d logged %d\n", accepted.Load(), sessions.Load(), logged.n.Load())
	return serr
}

// discardDelivery "delivers" every recipient at once, so that the queue
// target measures accepting and spooling, and its spool does not grow.
func discardDelivery(_ context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
	res := &transport.Result{}
	now := time.Now()
	for _, r := range env.Recipients {
		res.Recipients = append(res.Recipients, transport.RecipientResult{
			Recipient: r,
			Status:    transport.Delivered,
			Reply:     &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "discarded"},
			Time:      now,
		})
	}
	return res, nil
}

// lineCounter passes each log record to w and counts them: the handler
// writes one record a call.
type lineCounter struct {
	w io.Writer
	n atomic.Int64
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.w.Write(p)
}

// bareBackend is the baseline: a go-smtp session that discards the body.
type bareBackend struct{ accepted, sessions *atomic.Int64 }

// NewSession counts connections: go-smtp starts a session at every EHLO,
// once before STARTTLS and once after, so only the first is counted.
func (b bareBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if _, tls := c.TLSConnectionState(); !tls {
		b.sessions.Add(1)
	}
	return bareSession{b.accepted}, nil
}

type bareSession struct{ accepted *atomic.Int64 }

func (bareSession) Reset()                               {}
func (bareSession) Logout() error                        { return nil }
func (bareSession) Mail(string, *smtp.MailOptions) error { return nil }
func (bareSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s bareSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.accepted.Add(1)
	return nil
}

var errChildExited = errors.New("target process exited")
