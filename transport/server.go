package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/policy"
)

// ListenerKind says what a Server's listener is for.
type ListenerKind int

// Listener kinds.
const (
	// KindMX is message transfer (RFC 5321, port 25): STARTTLS offered
	// (RFC 3207), AUTH offered under TLS when an Authenticator is set but not
	// required. The zero value.
	KindMX ListenerKind = iota
	// KindSubmission is message submission (RFC 6409, port 587): STARTTLS
	// then AUTH are required before MAIL (RFC 4954 §6 "530 5.7.0
	// Authentication required").
	KindSubmission
	// KindSubmissions is submission over implicit TLS (RFC 8314 §3, port
	// 465): the TLS handshake happens on connect, before the greeting; AUTH
	// is required before MAIL.
	KindSubmissions
)

var kindNames = [...]string{"mx", "submission", "submissions"}

// String returns "mx", "submission" or "submissions".
func (k ListenerKind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Defaults for the zero values of Server's limits.
const (
	DefaultMaxMessageBytes         = 50 << 20         // 50 MiB
	DefaultMaxRecipients           = 100              // RFC 5321 §4.5.3.1.8 minimum
	DefaultMaxLineLength           = 2000             // twice RFC 5321 §4.5.3.1.6
	DefaultCommandTimeout          = 5 * time.Minute  // RFC 5321 §4.5.3.2.7
	DefaultReadTimeout             = 5 * time.Minute  // RFC 5321 §4.5.3.2.7
	DefaultWriteTimeout            = time.Minute      //
	DefaultTLSHandshakeTimeout     = 30 * time.Second //
	DefaultMaxConnections          = 1000             //
	DefaultMaxConnectionsPerClient = 50               // Postfix smtpd_client_connection_count_limit
	DefaultDataTimeout             = 10 * time.Minute
	DefaultStressTimeout           = 10 * time.Second // Postfix stress mode smtpd_timeout
	DefaultMinDataRate             = 500              // bytes/s under stress; Postfix smtpd_min_data_rate
	DefaultMaxJunkCommands         = 100              // Postfix smtpd_junk_command_limit
	DefaultAuthMaxFailures         = 5                //
	DefaultAuthFailureWindow       = 15 * time.Minute //

	DefaultAuthMaxNetworkFailures = 50               // per IPv4 /24, IPv6 /48
	DefaultAuthQueueTimeout       = 10 * time.Second //
)

// ServerTimeouts bound each step of an inbound SMTP session, in the shape
// of the Connector's Timeouts: a zero field takes the default shown (the
// Default*Timeout constants), from RFC 5321 §4.5.3.2 where it names one.
type ServerTimeouts struct {
	// Command is how long a client has to send a complete command line,
	// counted from the server's previous reply (or the greeting): RFC 5321
	// §4.5.3.2.7's server timeout, applied as Postfix's smtpd_timeout with
	// smtpd_per_record_deadline=yes, so that bytes trickling in (or TLS
	// records, KeyUpdates included) do not extend it. 5m.
	Command time.Duration
	// Read is how long a read of message data (DATA or BDAT) may wait
	// with no byte arriving. 5m.
	Read time.Duration
	// Data bounds a whole message transfer: from the start of DATA (or
	// the first BDAT chunk) to the end of the data, however steadily bytes
	// arrive; past it nothing is accepted, the client gets "421 4.4.2" and
	// the connection is closed. Postfix bounds only each record
	// (smtpd_per_record_deadline); Exchange bounds a whole connection
	// (ConnectionTimeout, 10 minutes). 10m, enough for the default
	// MaxMessageBytes at about 0.7 Mbit/s; raise it with MaxMessageBytes
	// for slow links.
	Data time.Duration
	// Write bounds each write to the client. 1m.
	Write time.Duration
	// TLSHandshake bounds the whole TLS handshake, after STARTTLS or on
	// connect for KindSubmissions. 30s.
	TLSHandshake time.Duration
	// Stress replaces Command, Read, Write and TLSHandshake, when they are
	// longer, while the listener holds at least 80% of
	// Server.MaxConnections: Postfix's stress mode
	// (smtpd_timeout=${stress?{10}:{300}}s). Connections already waiting
	// are cut short too, so that slow or idle clients give their slots to
	// new ones. 10s; a negative value turns stress mode off.
	Stress time.Duration
}

func (t ServerTimeouts) command() time.Duration { return orDefault(t.Command, DefaultCommandTimeout) }
func (t ServerTimeouts) read() time.Duration    { return orDefault(t.Read, DefaultReadTimeout) }
func (t ServerTimeouts) data() time.Duration    { return orDefault(t.Data, DefaultDataTimeout) }
func (t ServerTimeouts) write() time.Duration   { return orDefault(t.Write, DefaultWriteTimeout) }
func (t ServerTimeouts) tlsHandshake() time.Duration {
	return orDefault(t.TLSHandshake, DefaultTLSHandshakeTimeout)
}

// stress is Stress with its default, or 0 when stress mode is off.
func (t ServerTimeouts) stress() time.Duration {
	if t.Stress < 0 {
		return 0
	}
	return orDefault(t.Stress, DefaultStressTimeout)
}

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or
// Close.
var ErrServerClosed = errors.New("transport: server closed")

// Server is an inbound SMTP server enforcing an inbound TLS policy, in the
// style of net/http.Server: fill the fields, then call Serve or
// ListenAndServe. The zero value of every field is the safe, strict choice;
// only Hostname, TLSConfig and Handler need setting for a working MX.
//
// Server runs the SMTP command loop of each connection itself (RFC 5321
// §4.1.4 command order, RFC 3207 STARTTLS, RFC 4954 AUTH, RFC 3030 BDAT),
// so the TLS policy, the deadlines and the connection caps apply to every
// command it reads, in plaintext and under TLS alike. A Server must not be
// modified after Serve is first called; it serves one ListenerKind, so use
// one Server per kind (port).
type Server struct {
	// Hostname is announced in the greeting, EHLO reply and Received header
	// (RFC 5321 §4.1.3, §4.4). Empty means this host's name (os.Hostname)
	// when it is a fully-qualified domain name, the name a Connector
	// without Hostname sends in EHLO (Postfix's myhostname); otherwise
	// "localhost", which a Connector refuses (Connector.Validate) but a
	// listener may announce: only the greeting and trace headers carry
	// it, and a test or internal listener needs no public name.
	Hostname string

	// Kind is the listener kind. The zero value is KindMX.
	Kind ListenerKind

	// TLSConfig provides the server certificate and is the one place the
	// listener's TLS knobs are set; build it with certstore.Store.TLSConfig
	// (RFC 9325 defaults, certstore.TLSOptions). Its MinVersion is the
	// lowest TLS version accepted (zero means certstore.DefaultMinVersion,
	// TLS 1.2); its ClientAuth and ClientCAs are the client certificate
	// policy (certstore.ClientAuthPolicy; RFC 8446 §4.3.2), which the Server
	// enforces after the handshake so that a refusal is logged with its
	// reason. It is cloned and the Inbound cipher floor is applied to the
	// clone; the original is not modified. Nil means no TLS at all, which
	// Serve refuses unless Inbound.InsecureAllowPlaintext is set and Kind
	// is KindMX.
	TLSConfig *tls.Config

	// Inbound is what the listener demands of clients beyond TLSConfig.
	// The zero value requires TLS before MAIL and 128-bit ciphers.
	Inbound policy.Inbound

	// Handler receives each accepted message. Serve refuses a nil Handler.
	Handler Handler

	// Authenticator checks AUTH PLAIN and AUTH LOGIN credentials (RFC 4954),
	// which are accepted only under TLS. Nil means AUTH is not offered,
	// which Serve refuses for KindSubmission and KindSubmissions.
	Authenticator Authenticator

	// AuthMaxFailures is how many failed AUTH attempts a client address
	// (IPv4 /32, IPv6 /64) may make within AuthFailureWindow; further AUTH
	// commands get "454 4.7.0" until the window passes (RFC 4954 §6 leaves
	// the limit to the server; Postfix's nearest is anvil's
	// smtpd_client_auth_rate_limit, which counts every AUTH). An attempt
	// counts from the moment the credentials arrive, before the password
	// check runs, so parallel attempts cannot exceed the limit (an address
	// has at most this many checks in progress); a success or a temporary
	// failure gives it back. The counts are kept in a bounded table that
	// forgets the least recently counted addresses first, so a flood of
	// addresses never locks a new one out. Zero means 5.
	AuthMaxFailures int
	// AuthMaxNetworkFailures is the same limit for all the addresses of a
	// client network together (IPv4 /24, IPv6 /48), which an attacker
	// rotating addresses meets. Zero means 50.
	AuthMaxNetworkFailures int
	// AuthFailureWindow is the rate-limit window of both limits. Zero
	// means 15 minutes.
	AuthFailureWindow time.Duration
	// AuthMaxConcurrent is how many password checks (Authenticator calls;
	// a bcrypt comparison costs tens of milliseconds of CPU) may run at
	// once. Zero means runtime.NumCPU().
	AuthMaxConcurrent int
	// AuthQueueTimeout is how long an AUTH waits for a free password-check
	// slot; after it, or when the connection closes, the client gets "454
	// 4.7.0 Temporary authentication failure" (RFC 4954 §6) and the attempt
	// does not count against it. Zero means 10 seconds.
	AuthQueueTimeout time.Duration
	// AuthLimitsFrom, when set, makes this Server share the AUTH limits of
	// that Server instead of keeping its own: its failure counts per address
	// and network (AuthMaxFailures, AuthMaxNetworkFailures,
	// AuthFailureWindow) and its password-check slots (AuthMaxConcurrent,
	// AuthQueueTimeout), whose values then apply here too and this Server's
	// own Auth* fields are ignored. Give every listener of one host the same
	// one (587, 465, and 25 when it offers AUTH): an attacker can use every
	// port, and bcrypt's CPU is the machine's, not a listener's. That Server
	// must not itself have AuthLimitsFrom set.
	AuthLimitsFrom *Server

	// MaxMessageBytes is the largest message accepted, advertised as SIZE
	// (RFC 1870); larger ones get "552 5.3.4". Zero means 50 MiB; there is no
	// unlimited setting.
	MaxMessageBytes int64
	// MaxRecipients is the most RCPT commands per message; further ones get
	// "452 4.5.3" (RFC 5321 §4.5.3.1.10). Zero means 100.
	MaxRecipients int
	// MaxLineLength is the longest command or message line in octets,
	// CRLF included. A longer command line gets "500 5.4.0" and the
	// connection is closed; a longer line in DATA fails the message with
	// the permanent "554 5.6.0" (RFC 5321 §4.5.3.1.6) once its data has
	// ended, and the session goes on. BDAT chunks have no line limit.
	// Zero means 2000 (twice RFC 5321 §4.5.3.1.6).
	MaxLineLength int

	// Timeouts bound each step of a session; a zero field takes its
	// default (see ServerTimeouts).
	Timeouts ServerTimeouts

	// MaxConnections caps concurrent connections. A listener at the cap
	// admits a new connection by closing the one that has made the least
	// progress, which is answered "421 4.7.0 ... Server busy, closing idle
	// connection" (RFC 5321 §3.8; one in a TLS handshake, or between
	// STARTTLS and the next EHLO, is closed without a reply). Only a
	// connection waiting for its client qualifies, never one whose command
	// the server is working on; of those, in this order: one whose last
	// reply is at least a second old, outside a transaction, then in one
	// (after MAIL); a DATA or BDAT transfer that, a second of grace aside,
	// has received less than MinDataRate on average, or nothing for five
	// seconds; one whose client has not yet said EHLO or HELO, however
	// new. Within each, the one that has waited longest goes first. Bytes
	// trickled into a command line are thus no progress, while a client
	// that has said EHLO and sends each command within a second of the
	// previous reply, or a transfer that keeps to that rate, is never
	// closed for a newcomer. When no connection qualifies, the newcomer is
	// answered "421 4.7.0 ... Too many connections" and closed (for
	// KindSubmissions, closed without a reply, since no TLS session exists
	// to carry it); one over MaxConnectionsPerClient is refused and closes
	// no one. Postfix has no equivalent: connections over its process
	// limit (default_process_limit) wait in the kernel's listen queue, and
	// only stress mode (see ServerTimeouts.Stress) frees processes sooner. Zero
	// means 1000.
	MaxConnections int
	// MaxConnectionsPerClient caps the concurrent connections from one
	// client address (IPv4 /32, IPv6 /64), as Postfix's
	// smtpd_client_connection_count_limit does; one more is answered "421
	// 4.7.0 ... Too many connections from your address" and closed (for
	// KindSubmissions, closed without a reply). The table holds only
	// addresses with live connections. Zero means 50.
	MaxConnectionsPerClient int
	// MinDataRate is, under stress, the slowest average rate in bytes per
	// second at which a DATA or BDAT transfer may arrive once its first
	// Timeouts.Stress has passed: the transfer must end by its start plus
	// Timeouts.Stress plus one second per MinDataRate bytes received, so
	// that clients trickling message data cannot hold slots that each read
	// alone never times out (Postfix's smtpd_min_data_rate, which applies
	// with smtpd_per_request_deadline in stress mode). The count is of
	// bytes on the wire, TLS records included. The same rate decides which
	// transfers are progressing when a newcomer needs a slot (see
	// MaxConnections). Zero means 500; a negative value turns the rule off.
	MinDataRate int
	// MaxJunkCommands is how many commands a connection may send that do
	// not advance a transaction (everything but an accepted MAIL, RCPT,
	// DATA/BDAT or AUTH: NOOP, RSET, VRFY, HELP, EHLO again, refused
	// commands) before it is answered "421 4.7.0 Error: too many junk
	// commands" and closed; under stress a tenth of it. It ends sessions
	// that keep a slot busy, and safe from eviction (see MaxConnections), by
	// answering commands without ever sending mail. Postfix's
	// smtpd_junk_command_limit (100; 1 under stress) with
	// smtpd_hard_error_limit. Zero means 100; a negative value turns the
	// limit off.
	MaxJunkCommands int

	// Logger receives one line per TLS handshake (keys peer, tls_version,
	// cipher, bits, verified, result, error) and per message. Nil discards.
	Logger *slog.Logger

	// Observer, when set, receives one event per connection, AUTH
	// exchange and refusal (see Observer), for metrics. Nil, the zero
	// value, observes nothing at no cost.
	Observer Observer

	// Now is the clock for Received headers and AUTH rate limiting. Nil
	// means time.Now.
	Now func() time.Time

	initOnce sync.Once
	initErr  error
	tlsBase  *tls.Config // Inbound applied; nil for plaintext-only
	// clientAuth is TLSConfig.ClientAuth, enforced by verifyInbound.
	clientAuth certstore.ClientAuthPolicy
	limiter    *authLimiter
	// authTableSize, when positive, replaces the AUTH limiter's table
	// bound (a test seam).
	authTableSize int
	authSlots     chan struct{} // AuthMaxConcurrent password-check slots
	// authQueueTimeout is AuthQueueTimeout with its default, or
	// AuthLimitsFrom's.
	authQueueTimeout time.Duration
	log              *slog.Logger
	baseCtx          context.Context
	cancel           context.CancelFunc

	mu        sync.Mutex
	listeners map[*inListener]struct{}
	conns     map[*inConn]struct{}
	perClient map[[16]byte]int // live connections per clientKey
	active    atomic.Int64
	closing   atomic.Bool
	connsDone chan struct{} // closed when conns becomes empty while closing
	closeOnce sync.Once
	// evictConns and evictSnaps are evictionVictimLocked's reused buffers.
	evictConns []*inConn
	evictSnaps []connSnapshot

	defaultNameOnce sync.Once
	defaultName     string // for an empty Hostname
}

func (s *Server) hostname() string {
	if s.Hostname != "" {
		return s.Hostname
	}
	s.defaultNameOnce.Do(func() {
		s.defaultName = hostnameDefault(osHostname())
		if s.defaultName == "" {
			s.defaultName = "localhost"
		}
	})
	return s.defaultName
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) maxMessageBytes() int64 {
	if s.MaxMessageBytes <= 0 {
		return DefaultMaxMessageBytes
	}
	return s.MaxMessageBytes
}

// requiresAuth reports whether MAIL needs a prior successful AUTH.
func (s *Server) requiresAuth() bool { return s.Kind == KindSubmission || s.Kind == KindSubmissions }

// init validates the configuration once.
func (s *Server) init() error {
	s.initOnce.Do(func() { s.initErr = s.setup() })
	return s.initErr
}

func (s *Server) setup() error {
	if s.Kind < KindMX || s.Kind > KindSubmissions {
		return fmt.Errorf("transport: unknown listener kind %d", int(s.Kind))
	}
	if s.Handler == nil {
		return errors.New("transport: Server.Handler is nil")
	}
	if err := s.Inbound.Validate(); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	if s.TLSConfig == nil {
		if s.Inbound.RequireTLS() {
			return errors.New("transport: Server.TLSConfig is nil but the inbound policy requires TLS")
		}
		if s.Kind != KindMX {
			return fmt.Errorf("transport: %s listener needs a TLSConfig (AUTH is only accepted under TLS)", s.Kind)
		}
	}
	if s.requiresAuth() && s.Authenticator == nil {
		return fmt.Errorf("transport: %s listener requires AUTH but Server.Authenticator is nil", s.Kind)
	}
	s.log = s.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.TLSConfig != nil {
		cfg, mode, err := applyInbound(s.TLSConfig, s.Inbound)
		if err != nil {
			return err
		}
		s.clientAuth = mode
		cfg.GetConfigForClient = s.configForClient(cfg)
		s.tlsBase = cfg
	}
	if err := s.setupAuthLimits(); err != nil {
		return err
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.listeners = make(map[*inListener]struct{})
	s.conns = make(map[*inConn]struct{})
	s.perClient = make(map[[16]byte]int)

	return nil
}

// Serve accepts connections on l and serves them until Shutdown or Close.
// For KindSubmissions, l is a plain TCP listener: Serve performs the TLS
// handshake itself (RFC 8314 §3.3). Serve always returns a non-nil error;
// after Shutdown or Close it is ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	if err := s.init(); err != nil {
		l.Close()
		return err
	}
	il := &inListener{srv: s, inner: l}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[il] = struct{}{}
	s.mu.Unlock()
	s.log.Info("smtp listening", "addr", l.Addr().String(), "kind", s.Kind.String(), "policy", s.Inbound.String(), s.tlsAttrs())

	err := il.acceptLoop()
	if s.closing.Load() {
		return ErrServerClosed
	}
	return err
}

// ListenAndServe listens on the TCP address addr ("127.0.0.1:2525") and
// calls Serve. Cancelling ctx closes the server at once, as Close does, and
// ListenAndServe then returns ErrServerClosed; for a draining stop call
// Shutdown instead.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	return s.Serve(l)
}

// Shutdown stops the server gracefully: it closes the listeners, answers
// connections that are idle between transactions with "421" and closes them,
// and waits for transactions in progress to finish (their final reply is
// sent) until ctx ends; then it closes whatever remains, as Close does, and
// returns ctx's error. It returns nil when every connection finished in time.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.mu.Lock()
	s.closing.Store(true)
	for il := range s.listeners {
		il.close()
	}
	if s.connsDone == nil {
		s.connsDone = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.connsDone)
		}
	}
	done := s.connsDone
	for c := range s.conns {
		c.beginShutdown()
	}
	s.mu.Unlock()

	select {
	case <-done:
		s.Close()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection immediately, cancelling
// the contexts of Handlers in progress. Messages whose final reply was not
// sent are not accepted; the client will retry them.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing.Store(true)
		for il := range s.listeners {
			il.close()
		}
		conns := make([]*inConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.cancel()
		for _, c := range conns {
			c.forceClose()
		}
	})
	return nil
}

// addConn registers an accepted connection. It is refused when the server
// is closing or its client address already holds MaxConnectionsPerClient;
// at MaxConnections, it takes the slot of the connection evictionVictim
// picks, which it returns for the caller to evict, or is refused when there
// is none.
func (s *Server) addConn(c *inConn) (connRefusal, *inConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return refusedClosing, nil
	}
	if s.perClient[c.client] >= orDefault(s.MaxConnectionsPerClient, DefaultMaxConnectionsPerClient) {
		return refusedPerClient, nil
	}
	var victim *inConn
	if s.active.Load() >= int64(orDefault(s.MaxConnections, DefaultMaxConnections)) {
		if victim = s.evictionVictimLocked(time.Now()); victim == nil {
			return refusedBusy, nil
		}
		s.releaseLocked(victim)
	}
	s.perClient[c.client]++
	s.conns[c] = struct{}{}
	s.active.Add(1)
	return admitted, victim
}

type connRefusal int

const (
	admitted connRefusal = iota
	refusedClosing
	refusedPerClient
	refusedBusy
)

// stressed reports whether the listener holds at least 80% of
// MaxConnections (Postfix's stress mode; see ServerTimeouts.Stress).
func (s *Server) stressed() bool {
	max := int64(orDefault(s.MaxConnections, DefaultMaxConnections))
	return s.Timeouts.Stress >= 0 && s.active.Load()*5 >= max*4
}

// stressTimeout is Timeouts.Stress with its default, or 0 when stress
// mode is off.
func (s *Server) stressTimeout() time.Duration { return s.Timeouts.stress() }

// underStress returns d, or Timeouts.Stress when the listener is stressed
// and that is shorter.
func (s *Server) underStress(d time.Duration) time.Duration {
	if st := s.stressTimeout(); st > 0 && st < d && s.stressed() {
		return st
	}
	return d
}

func (s *Server) handshakeTimeout() time.Duration {
	return s.underStress(s.Timeouts.tlsHandshake())
}

// enterStress, called when an accepted connection brings the listener to
// its stress threshold, cuts the deadlines of reads already waiting to
// Timeouts.Stress (new reads get it from underStress).
func (s *Server) enterStress() {
	t := time.Now().Add(s.stressTimeout())
	s.mu.Lock()
	conns := make([]*inConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.log.Warn("smtp listener under stress: timeouts shortened", "active", s.active.Load(), "timeout", s.stressTimeout().String())
	for _, c := range conns {
		c.capReadDeadline(t)
	}
}

func (s *Server) removeConn(c *inConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.releaseLocked(c)
	if len(s.conns) == 0 && s.connsDone != nil {
		select {
		case <-s.connsDone:
		default:
			close(s.connsDone)
		}
	}
}

// inListener is one listener of a Server.
type inListener struct {
	srv       *Server
	inner     net.Listener
	closeOnce sync.Once
}

func (l *inListener) close() {
	l.closeOnce.Do(func() { l.inner.Close() })
}

// acceptLoop accepts connections until the listener fails or closes,
// counts them against the caps and starts a session for each.
func (l *inListener) acceptLoop() error {
	s := l.srv
	maxConns := int64(orDefault(s.MaxConnections, DefaultMaxConnections))
	var delay time.Duration
	stressed := false // as of the last accepted connection
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			var tmp interface{ Temporary() bool }
			if errors.As(err, &tmp) && tmp.Temporary() {
				// Transient (EMFILE, ENFILE, ECONNABORTED): back off as
				// net/http does instead of giving up the listener.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			l.close()
			return err
		}
		delay = 0
		c := newInConn(s, raw)
		res, victim := s.addConn(c)
		switch res {
		case refusedClosing:
			c.stop()
			raw.Close()
			return ErrServerClosed
		case refusedPerClient:
			c.stop()
			s.log.Warn("smtp connection refused: too many connections from one client", "peer", c.peer,
				"max", orDefault(s.MaxConnectionsPerClient, DefaultMaxConnectionsPerClient))
			s.observeRefusedConn(RefusalClientLimit)
			go s.refuseBusy(raw, "Too many connections from your address, try again later")
			continue
		case refusedBusy:
			c.stop()
			s.log.Warn("smtp connection refused: too many connections, none idle", "peer", c.peer, "max", maxConns)
			s.observeRefusedConn(RefusalConnectionLimit)
			go s.refuseBusy(raw, "Too many connections, try again later")
			continue
		}
		if victim != nil {
			victim.evict()
			s.observeRefusal(RefusalConnectionLimit)
			s.log.Info("smtp connection closed for a new one: too many connections", "peer", victim.peer,
				"for", c.peer, "max", maxConns)
		}
		if s.stressed() {
			if !stressed {
				stressed = true
				go s.enterStress()
			}
		} else {
			stressed = false
		}
		go c.serve()
	}
}

// refuseBusy answers a connection over a cap with "421 4.7.0" and text
// (RFC 5321 §3.8 allows 421 as the greeting) and closes it; on an
// implicit-TLS listener it just closes, since no TLS session exists to carry
// a reply.
func (s *Server) refuseBusy(raw net.Conn, text string) {
	defer raw.Close()
	if s.Kind == KindSubmissions {
		return
	}
	raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, "421 4.7.0 "+s.hostname()+" "+text+"\r\n")
}

// setupAuthLimits builds the Server's AUTH failure table and password-check
// slots, or takes AuthLimitsFrom's.
func (s *Server) setupAuthLimits() error {
	if from := s.AuthLimitsFrom; from != nil {
		if from == s || from.AuthLimitsFrom != nil {
			return errors.New("transport: Server.AuthLimitsFrom must name a Server without AuthLimitsFrom")
		}
		if err := from.init(); err != nil {
			return fmt.Errorf("transport: Server.AuthLimitsFrom: %w", err)
		}
		s.limiter, s.authSlots, s.authQueueTimeout = from.limiter, from.authSlots, from.authQueueTimeout
		return nil
	}
	s.limiter = newAuthLimiter(orDefault(s.AuthMaxFailures, DefaultAuthMaxFailures),
		orDefault(s.AuthMaxNetworkFailures, DefaultAuthMaxNetworkFailures),
		orDefault(s.AuthFailureWindow, DefaultAuthFailureWindow),
		orDefault(s.authTableSize, authLimiterMaxEntries))
	s.authSlots = make(chan struct{}, orDefault(s.AuthMaxConcurrent, runtime.NumCPU()))
	s.authQueueTimeout = orDefault(s.AuthQueueTimeout, DefaultAuthQueueTimeout)
	return nil
}

// junkLimit is MaxJunkCommands with its default, a tenth of it under
// stress, or no limit when it is negative.
func (s *Server) junkLimit() int {
	if s.MaxJunkCommands < 0 {
		return math.MaxInt
	}
	n := orDefault(s.MaxJunkCommands, DefaultMaxJunkCommands)
	if s.stressTimeout() > 0 && s.stressed() {
		n = max(n/10, 1)
	}
	return n
}
