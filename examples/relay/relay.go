package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/policy/dane"
	"github.com/mailtls/mailtls/policy/mtasts"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/prommetrics"
	"github.com/mailtls/mailtls/transport/queue"
)

// Relay is the assembled program: three inbound listeners sharing one
// certificate store, the Maildir store for local domains, and the durable
// outbound queue delivering through a transport.Connector.
type Relay struct {
	cfg       *Config
	log       *slog.Logger
	certs     *certstore.Store
	servers   []*listener
	queue     *queue.Queue
	connector *transport.Connector
	mtasts    *mtasts.Client     // -mta-sts; nil if off
	dns       *dane.Resolver     // -resolver (or -dane-resolver); nil: the system's
	dane      *dane.Policy       // -dane-resolver; nil if off
	tlsrpt    tlsrpt.Store       // -tlsrpt; nil if off
	store     queue.Store        // the queue's store (shared with -queue)
	reporter  *tlsrpt.Reporter   // -tlsrpt daily reports; nil if off
	extras    []func() error     // closers of optional parts
	admin     net.Listener       // -data/admin.sock, for "relay queue"
	metrics   *metricsServer     // -metrics; nil if off
	health    prommetrics.Health // what /healthz reports
	table     *policy.Table      // -policy; nil without it

	runCancel context.CancelFunc
	wg        sync.WaitGroup
	errc      chan error
}

// listener is one transport.Server with its bound address.
type listener struct {
	name string // "smtp", "submission", "submissions"
	srv  *transport.Server
	l    net.Listener
}

// dataPaths are the sub-directories of -data.
func (c *Config) path(elem ...string) string {
	return filepath.Join(append([]string{c.DataDir}, elem...)...)
}

// newRelay builds everything cfg describes and opens the listeners, without
// serving yet. Errors say which flag or file is at fault.
func newRelay(cfg *Config, log *slog.Logger) (*Relay, error) {
	r := &Relay{cfg: cfg, log: log, errc: make(chan error, 8)}
	ok := false
	defer func() {
		if !ok {
			r.closeListeners()
		}
	}()
	for _, d := range []string{cfg.DataDir, cfg.path("mail")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("-data: %w", err)
		}
	}
	// Scratch copies of messages that a previous run of the relay was
	// receiving when it stopped were never acknowledged: the clients will
	// resend.
	if old, _ := filepath.Glob(filepath.Join(cfg.path("incoming"), "in-*.eml")); len(old) > 0 {
		for _, f := range old {
			os.Remove(f)
		}
		log.Info("removed unacknowledged partial messages", "count", len(old))
	}
	if err := r.setupCertificates(); err != nil {
		return nil, err
	}
	var auth transport.Authenticator = denyAll{}
	if cfg.UsersFile != "" {
		t, err := transport.LoadBcryptTable(cfg.UsersFile)
		if err != nil {
			return nil, fmt.Errorf("-users: %w", err)
		}
		log.Info("users loaded", "file", cfg.UsersFile, "count", t.Len())
		auth = t
	} else {
		log.Warn("no -users file: every AUTH fails, so submission ports accept no mail")
	}
	var logins []string
	if t, ok := auth.(*transport.BcryptTable); ok {
		logins = t.Users()
	}
	rcpts, err := localRecipients(cfg, logins)
	if err != nil {
		return nil, err
	}
	local := &queue.Maildir{Root: cfg.path("mail"), Hostname: cfg.Hostname, Recipients: rcpts, Logger: log.With("part", "local")}

	if err := r.setupOutbound(local); err != nil {
		return nil, err
	}
	handler, err := newHandler(cfg, r.queue, rcpts, logins, log)
	if err != nil {
		return nil, err
	}

	tlsCfg, err := r.certs.TLSConfig(certstore.TLSOptions{MinVersion: cfg.MinTLS})
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	for _, spec := range []struct {
		name, addr string
		kind       transport.ListenerKind
	}{
		{"smtp", cfg.SMTPAddr, transport.KindMX},
		{"submission", cfg.SubmissionAddr, transport.KindSubmission},
		{"submissions", cfg.SubmissionsAddr, transport.KindSubmissions},
	} {
		if spec.addr == "" {
			continue
		}
		srv := &transport.Server{
			Hostname:      cfg.Hostname,
			Kind:          spec.kind,
			TLSConfig:     tlsCfg, // carries -min-tls (certstore.TLSOptions)
			Handler:       handler,
			Authenticator: auth,
			Logger:        log.With("listener", spec.name),
		}
		srv.CopyLimits(cfg.Limits)
		// One AUTH failure table and one set of password-check slots for
		// every listener: an attacker can use every port, and bcrypt's CPU
		// is the machine's.
		if len(r.servers) > 0 {
			srv.AuthLimitsFrom = r.servers[0].srv
		}
		// RFC 3207 §4: a public MX must not require STARTTLS; -require-tls
		// opts in (the submission ports always require TLS and AUTH).
		if spec.kind == transport.KindMX && !cfg.RequireTLS {
			srv.Inbound.InsecureAllowPlaintext = true
		}
		l, err := net.Listen("tcp", spec.addr)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", spec.name, err)
		}
		r.servers = append(r.servers, &listener{name: spec.name, srv: srv, l: l})
	}
	if err := r.setupMetrics(); err != nil {
		return nil, err
	}
	r.setupAdmin()
	ok = true
	return r, nil
}

// setupCertificates loads -cert/-key, or creates (once) and loads a
// self-signed certificate under -data/tls.
func (r *Relay) setupCertificates() error {
	cfg := r.cfg
	src := certstore.Source{Name: "relay", CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	if cfg.CertFile == "" {
		dir := cfg.path("tls")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("-data: %w", err)
		}
		src.CertFile, src.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		names := []string{cfg.Hostname, "localhost", "127.0.0.1", "::1"}
		created, err := certstore.EnsureSelfSigned(src.CertFile, src.KeyFile, names, 365*24*time.Hour)
		if err != nil {
			return fmt.Errorf("self-signed certificate: %w", err)
		}
		if created {
			r.log.Warn("generated a self-signed certificate; use -cert/-key for a real one", "cert", src.CertFile, "names", names)
		}
	}
	st := &certstore.Store{Sources: []certstore.Source{src}, Logger: r.log}
	if err := st.Reload(); err != nil {
		return fmt.Errorf("-cert/-key: %w", err)
	}
	for _, e := range st.Expiring(30 * 24 * time.Hour) {
		r.log.Warn("certificate expires soon", "file", e.File, "subject", e.Subject, "not_after", e.NotAfter)
	}
	r.certs = st
	return nil
}

// setupOutbound builds the policy, the Connector and the queue, which
// hands local recipients to local.
func (r *Relay) setupOutbound(local queue.Deliverer) error {
	cfg := r.cfg
	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	r.store = store
	if err := r.setupConnector(); err != nil {
		return err
	}
	r.queue = &queue.Queue{
		Store:     store,
		Deliverer: r.connector,
		Hostname:  cfg.Hostname,
		Language:  cfg.NDRLang,
		DKIM:      cfg.dkimOptions(), // nil without -dkim-*: unsigned
		MaxAge:    cfg.MaxQueueAge,
		Backoff:   cfg.RetrySchedule,
		MinFree:   cfg.minFree(), // 452 4.3.1 at MAIL below it (queue_minfree)
		Logger:    r.log.With("part", "queue"),

		// Local domains: Maildirs, one result per recipient; "delivered"
		// reports and the backscatter rule (queue.MayOriginate).
		Local:       local,
		LocalDomain: cfg.isLocalDomain,
	}
	if r.tlsrpt != nil {
		r.reporter = &tlsrpt.Reporter{
			Aggregator: &tlsrpt.Aggregator{Store: r.tlsrpt, OrganizationName: cfg.TLSRPTOrg, ContactInfo: cfg.TLSRPTContact,
				Logger: r.log.With("part", "tlsrpt")},
			Dir:       cfg.path("tlsrpt"),
			From:      "noreply-tlsrpt@" + cfg.Hostname,
			Submitter: cfg.Hostname,
			DKIM:      cfg.dkimOptions(),
			Mailer:    r.queue,
			Days:      r.reportDays(),  // with -queue: one report a day for all the relays
			Resolver:  r.txtResolver(), // -resolver
			Logger:    r.log.With("part", "tlsrpt"),
		}
	}
	return nil
}

// setupConnector builds the outbound policy (-policy, -default-tls,
// -on-tls-failure, -mta-sts, -dane-resolver), the routes (-route,
// -smarthost), the roots (-outbound-ca) and the Connector delivery uses,
// wired for the standards flags (wireStandards). "relay check" asks the
// same Connector, so that it answers what this relay's delivery would do.
func (r *Relay) setupConnector() error {
	cfg := r.cfg
	var table *policy.Table
	if cfg.PolicyFile != "" {
		t, err := policy.LoadTable(cfg.PolicyFile)
		if err != nil {
			return fmt.Errorf("-policy: %w", err)
		}
		table = t
	}
	r.table = table
	r.publishedPolicies()
	pol := newOutboundPolicy(cfg, table, r.mtasts, r.dane, r.log.With("part", "policy"))
	routes, err := buildRoutes(cfg)
	if err != nil {
		return err
	}
	roots, err := loadRoots(cfg.OutboundCA)
	if err != nil {
		return err
	}
	r.connector = &transport.Connector{
		Hostname: cfg.Hostname,
		Policy:   pol,
		Routes:   routes,
		RootCAs:  roots,
		Logger:   r.log.With("part", "connector"),
	}
	r.wireStandards()
	return nil
}

// Addr returns the bound address of the listener named "smtp",
// "submission" or "submissions", or "" if it is disabled.
func (r *Relay) Addr(name string) string {
	for _, l := range r.servers {
		if l.name == name {
			return l.l.Addr().String()
		}
	}
	return ""
}

// Start serves every listener and runs the queue until Shutdown.
func (r *Relay) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.runCancel = cancel
	for _, l := range r.servers {
		r.log.Info("listening", "listener", l.name, "addr", l.l.Addr().String())
		r.wg.Add(1)
		go func(l *listener) {
			defer r.wg.Done()
			defer r.health.ListenerServing()()
			if err := l.srv.Serve(l.l); err != nil && !errors.Is(err, transport.ErrServerClosed) {
				r.errc <- fmt.Errorf("%s listener: %w", l.name, err)
			}
		}(l)
	}
	if r.cfg.CertWatch > 0 {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.certs.Watch(ctx, r.cfg.CertWatch) }()
	}
	if r.mtasts != nil { // proactive refresh of cached policies, RFC 8461 §10.1
		r.wg.Go(func() { r.mtasts.Run(ctx) })
	}
	r.startMetrics()
	if r.reporter != nil {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.reporter.Run(ctx) }()
	}
	r.serveAdmin(ctx)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.health.QueueRunning(true)
		defer r.health.QueueRunning(false)
		if err := r.queue.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			r.errc <- fmt.Errorf("queue: %w", err)
		}
	}()
}

// ReloadCertificates reads the certificate files again (SIGHUP) and serves
// them on new handshakes; if they do not load, the previous certificates
// stay in service and the error says why (certstore.Store.Reload).
func (r *Relay) ReloadCertificates() error { return r.certs.Reload() }

// Errors reports a listener or the queue stopping on its own.
func (r *Relay) Errors() <-chan error { return r.errc }

// Shutdown stops accepting connections, lets transactions in progress end
// (until ctx is done), then stops the queue, waiting for its attempts in
// flight to return.
func (r *Relay) Shutdown(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, l := range r.servers {
		wg.Add(1)
		go func(l *listener) {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", l.name, err))
				mu.Unlock()
			}
		}(l)
	}
	wg.Wait()
	if r.runCancel != nil {
		r.runCancel()
	}
	r.wg.Wait()
	r.connector.Close()
	for _, c := range r.extras {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Relay) closeListeners() {
	for _, l := range r.servers {
		l.l.Close()
	}
	if r.metrics != nil {
		r.metrics.l.Close()
	}
}

// denyAll is the Authenticator without -users: nobody can log in.
type denyAll struct{}

func (denyAll) Authenticate(context.Context, string, string) error {
	return fmt.Errorf("%w: no users configured (-users)", transport.ErrAuthFailed)
}
