package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
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

// serverTLS is the one TLS configuration all targets start from.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := certstore.LoadFiles(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return certstore.ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }, certstore.TLSOptions{})
}

// serveMain runs one target on a loopback port: it prints "listening ADDR",
// serves until stdin reaches EOF (the parent closed it or died) or ctx ends,
// then prints "accepted N" (messages its handler took) and returns.
func serveMain(ctx context.Context, cfg *config, stdin io.Reader, stdout io.Writer) error {
	tlsCfg, err := serverTLS(cfg.certFile, cfg.keyFile)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	var serve func() error
	var shutdown func()
	switch cfg.serve {
	case "gosmtp":
		s := smtp.NewServer(bareBackend{&accepted})
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
	case "queue":
		dir, err := os.MkdirTemp(cfg.spool, "smtpload-spool-")
		if err != nil {
			l.Close()
			return err
		}
		defer os.RemoveAll(dir)
		store, err := queue.OpenDirStore(dir)
		if err != nil {
			l.Close()
			return err
		}
		defer store.Close()
		q := &queue.Queue{
			Store:     store,
			Hostname:  hostname,
			Deliverer: queue.DeliverFunc(discardDelivery),
		}
		qctx, qcancel := context.WithCancel(context.Background())
		qdone := make(chan struct{})
		go func() { defer close(qdone); q.Run(qctx) }()
		s := &transport.Server{
			Hostname:  hostname,
			TLSConfig: tlsCfg,
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

	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, stdin); close(eof) }()
	var serr error
	select {
	case <-eof:
	case <-ctx.Done():
		serr = ctx.Err()
	case err := <-errc:
		serr = fmt.Errorf("%s: serve: %w", cfg.serve, err)
	}
	shutdown()
	fmt.Fprintf(stdout, "accepted %d\n", accepted.Load())
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

// bareBackend is the baseline: a go-smtp session that discards the body.
type bareBackend struct{ accepted *atomic.Int64 }

func (b bareBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return bareSession(b), nil }

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
