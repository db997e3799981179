package certstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Source names one certificate of a Store: a pair of PEM files, or a
// certificate already in memory.
type Source struct {
	// Name identifies the certificate in logs, in Expiry reports and for
	// ClientCertificate. Empty means CertFile, or "#N" (its index in
	// Sources) for an in-memory certificate. Names must be unique.
	Name string
	// CertFile holds the leaf certificate followed by its intermediates.
	CertFile string
	// KeyFile holds the private key. Empty means the key is in CertFile.
	KeyFile string
	// Certificate, if non-nil, is used instead of CertFile and KeyFile. It is
	// validated like a file on every Reload but never re-read. It must not be
	// modified after it is given to a Store.
	Certificate *tls.Certificate
	// Hostnames are the server names (RFC 6066, Section 3) this certificate
	// is chosen for. Empty means the certificate's DNS subjectAltNames (RFC
	// 5280, Section 4.2.1.6); the subject common name is not used (RFC 6125,
	// Section 6.4.4). A name "*.example.com" matches exactly one label.
	Hostnames []string
	// Default makes this the certificate for clients that send no SNI or an
	// unknown name, as most MTAs do. If no Source sets it, the first Source
	// is the default; at most one may set it.
	Default bool
}

// Store is a set of server certificates chosen by SNI, with a default, that
// can be reloaded from disk while in use. Configure the exported fields, then
// call Reload (or use New) before the first handshake; the fields must not be
// changed afterwards. All methods are safe for concurrent use.
//
// A reload swaps the whole set with one atomic pointer store: handshakes
// that started before it finish with the old certificates, handshakes that
// start after it see only the new ones, and established connections are never
// touched.
type Store struct {
	// Sources lists the certificates. At least one is required.
	Sources []Source
	// Roots, if non-nil, requires every chain to verify to one of these
	// anchors (RFC 5280, Section 6). nil checks only the chain in each file.
	Roots *x509.CertPool
	// Now is the clock for validity checks and Expiring. nil means time.Now.
	Now func() time.Time
	// Logger receives one line per reload and per watch decision. nil
	// discards.
	Logger *slog.Logger

	cur      atomic.Pointer[certSet]
	reloadMu sync.Mutex
}

type entry struct {
	name     string
	certFile string
	files    []string
	cert     *tls.Certificate
	chain    []*x509.Certificate
	names    []string
}

type certSet struct {
	entries []*entry
	exact   map[string][]*entry
	wild    map[string][]*entry // keyed by the parent domain of "*.parent"
	def     *entry
	byName  map[string]*entry
	sums    map[string][sha256.Size]byte
}

// New returns a Store for sources, loaded once. It starts no goroutine.
func New(sources ...Source) (*Store, error) {
	s := &Store{Sources: sources}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// normalize lower-cases a host name and drops one trailing dot, so that
// "MX.Example.COM." and "mx.example.com" select the same certificate (DNS
// names compare case-insensitively, RFC 4343).
func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// Reload reads every Source again, validates it, and replaces the whole set
// for new handshakes. If any Source fails, nothing is replaced: the previous
// set stays in service and the error (an errors.Join of *Error values, one per
// failing Source) is returned. Concurrent calls are serialized.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	start := time.Now()
	set, err := s.build()
	if err != nil {
		s.log().Error("certstore: reload failed, keeping previous certificates", "err", err)
		return err
	}
	s.cur.Store(set)
	for _, e := range set.entries {
		s.log().Info("certstore: certificate loaded",
			"name", e.name, "subject", e.chain[0].Subject.String(), "hostnames", e.names,
			"serial", e.chain[0].SerialNumber.Text(16), "not_after", e.chain[0].NotAfter,
			"default", e == set.def)
	}
	s.log().Debug("certstore: reload done", "certificates", len(set.entries), "duration", time.Since(start))
	return nil
}

func (s *Store) build() (*certSet, error) {
	if len(s.Sources) == 0 {
		return nil, &Error{Op: "config", Err: fmt.Errorf("%w: Store has no Sources", ErrNoCertificate)}
	}
	l := Loader{Now: s.Now, Roots: s.Roots}
	set := &certSet{
		exact:  map[string][]*entry{},
		wild:   map[string][]*entry{},
		byName: map[string]*entry{},
		sums:   map[string][sha256.Size]byte{},
	}
	var errs []error
	explicitDef := false
	for i, src := range s.Sources {
		e := &entry{name: src.Name}
		if e.name == "" {
			e.name = src.CertFile
			if src.Certificate != nil || e.name == "" {
				e.name = fmt.Sprintf("#%d", i)
			}
		}
		if _, dup := set.byName[e.name]; dup {
			errs = append(errs, &Error{Op: "config", Err: fmt.Errorf("duplicate Source name %q", e.name)})
			continue
		}
		if src.Certificate != nil {
			c := *src.Certificate // copy: Validate may set Leaf
			if err := l.Validate(&c); err != nil {
				if ce, ok := err.(*Error); ok {
					ce.File = e.name
				}
				errs = append(errs, err)
				continue
			}
			e.cert = &c
		} else {
			c, raw, err := l.loadFiles(src.CertFile, src.KeyFile)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for f, b := range raw {
				set.sums[f] = sha256.Sum256(b)
				e.files = append(e.files, f)
			}
			slices.Sort(e.files)
			e.cert = c
			e.certFile = src.CertFile
		}
		for _, der := range e.cert.Certificate {
			x, _ := x509.ParseCertificate(der) // already parsed successfully by the Loader
			e.chain = append(e.chain, x)
		}
		hosts := src.Hostnames
		if len(hosts) == 0 {
			hosts = e.chain[0].DNSNames
		}
		for _, h := range hosts {
			h = normalize(h)
			if h == "" {
				continue
			}
			e.names = append(e.names, h)
			if parent, ok := strings.CutPrefix(h, "*."); ok {
				set.wild[parent] = append(set.wild[parent], e)
			} else {
				set.exact[h] = append(set.exact[h], e)
			}
		}
		if src.Default {
			if explicitDef {
				errs = append(errs, &Error{Op: "config", Err: fmt.Errorf("both %q and %q are marked Default", set.def.name, e.name)})
				continue
			}
			set.def, explicitDef = e, true
		}
		set.byName[e.name] = e
		set.entries = append(set.entries, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if set.def == nil && len(set.entries) > 0 {
		set.def = set.entries[0]
	}
	return set, nil
}

// GetCertificate chooses the certificate for a TLS handshake; it is meant for
// tls.Config.GetCertificate. The server name the client sent (RFC 6066,
// Section 3) is matched case-insensitively and without a trailing dot: first
// exactly, then against single-label wildcards ("*.example.com" matches
// "mx.example.com", not "a.b.example.com" nor "example.com", as in RFC
// 6125, Section 6.4.3). When several certificates match (say RSA and
// ECDSA), the first one the client supports is chosen. A client that sends no
// name, or a name with no match, gets the default certificate: most MTAs
// send no SNI, and they expect a certificate anyway.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.cur.Load()
	if set == nil || set.def == nil {
		return nil, &Error{Op: "config", Err: fmt.Errorf("%w: Store not loaded (call Reload)", ErrNoCertificate)}
	}
	name := normalize(hello.ServerName)
	if name != "" {
		if e := pick(hello, set.exact[name]); e != nil {
			return e.cert, nil
		}
		if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
			if e := pick(hello, set.wild[parent]); e != nil {
				return e.cert, nil
			}
		}
	}
	return set.def.cert, nil
}

func pick(hello *tls.ClientHelloInfo, es []*entry) *entry {
	if len(es) == 0 {
		return nil
	}
	if len(es) > 1 {
		for _, e := range es {
			if hello.SupportsCertificate(e.cert) == nil {
				return e
			}
		}
	}
	return es[0]
}

// Certificate returns the certificate of the Source named name in the current
// set, or nil. The result must not be modified.
func (s *Store) Certificate(name string) *tls.Certificate {
	set := s.cur.Load()
	if set == nil {
		return nil
	}
	if e := set.byName[name]; e != nil {
		return e.cert
	}
	return nil
}

// ClientCertificate returns a function for tls.Config.GetClientCertificate
// that presents the certificate of the Source named name, as it is at the
// time of each handshake (so reloads apply to new outbound connections). This
// is how a route authenticates itself with mutual TLS to a partner (RFC 8446,
// Section 4.4.2; RFC 5246, Section 7.4.6). If the server's request cannot be
// satisfied by that certificate (unsupported signature algorithm), no
// certificate is sent, as crypto/tls itself does, and the server decides; if
// name is unknown the handshake fails with an error naming it.
func (s *Store) ClientCertificate(name string) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c := s.Certificate(name)
		if c == nil {
			return nil, &Error{Op: "config", Err: fmt.Errorf("%w: no client certificate named %q", ErrNoCertificate, name)}
		}
		if err := cri.SupportsCertificate(c); err != nil {
			s.log().Warn("certstore: server's certificate request not satisfiable, sending none", "name", name, "err", err)
			return &tls.Certificate{}, nil
		}
		return c, nil
	}
}

// Expiry describes one certificate of a Store and when it stops being valid.
type Expiry struct {
	// Name is the Source's name.
	Name string
	// File is the Source's certificate file; empty for an in-memory
	// certificate.
	File string
	// Depth is the position in the chain: 0 for the leaf, 1 for its issuer...
	Depth int
	// Subject is the certificate's subject distinguished name (RFC 5280,
	// Section 4.1.2.6) in the text form of pkix.Name.String.
	Subject string
	// Hostnames are the names the leaf is chosen for (see
	// Source.Hostnames); nil for an intermediate (Depth > 0).
	Hostnames []string
	// Serial is the serial number in hexadecimal (RFC 5280, Section 4.1.2.2).
	Serial string
	// NotAfter is the end of the validity period (RFC 5280, Section
	// 4.1.2.5).
	NotAfter time.Time
	// Remaining is NotAfter minus Now; negative once expired.
	Remaining time.Duration
}

// Expiring reports every certificate of the current set (leaves and the
// intermediates shipped with them) whose notAfter (RFC 5280, Section
// 4.1.2.5) falls within the given duration from Now, soonest first. A
// certificate that has expired since it was loaded is included with a
// negative Remaining.
func (s *Store) Expiring(within time.Duration) []Expiry {
	set := s.cur.Load()
	if set == nil {
		return nil
	}
	now := s.now()
	var out []Expiry
	for _, e := range set.entries {
		for d, x := range e.chain {
			rem := x.NotAfter.Sub(now)
			if rem > within {
				continue
			}
			var hosts []string
			if d == 0 {
				hosts = slices.Clone(e.names)
			}
			out = append(out, Expiry{Name: e.name, File: e.certFile, Depth: d, Subject: x.Subject.String(),
				Hostnames: hosts, Serial: x.SerialNumber.Text(16), NotAfter: x.NotAfter, Remaining: rem})
		}
	}
	slices.SortStableFunc(out, func(a, b Expiry) int { return a.NotAfter.Compare(b.NotAfter) })
	return out
}

// Watch polls the Sources' files every interval (zero means one minute) and
// calls Reload when the content of any of them changed, which covers editors,
// `cp`, renames and symbolic-link swaps (as in Kubernetes secret volumes).
// Content is compared by SHA-256 rather than by modification time and size
// alone, because a rewrite can keep both. A failed reload is logged and not
// retried until the files change again, so a half-written pair is picked up as
// soon as its second file lands. Watch blocks until ctx is done and then
// returns nil; it is the only method that runs in the background, and only
// for as long as the caller runs it. If the Store was never loaded, the first
// poll loads it.
func (s *Store) Watch(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	seen := map[string][sha256.Size]byte{}
	if set := s.cur.Load(); set != nil {
		for f, h := range set.sums {
			seen[f] = h
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur, changed := s.scan(seen)
		if len(changed) == 0 {
			continue
		}
		seen = cur
		s.log().Info("certstore: files changed, reloading", "files", changed)
		if err := s.Reload(); err != nil {
			s.log().Warn("certstore: reload after change failed; previous certificates stay in service until the files change again", "err", err)
		}
	}
}

// scan hashes every file of every Source and returns the new sums and the
// files whose content (or readability) differs from seen.
func (s *Store) scan(seen map[string][sha256.Size]byte) (map[string][sha256.Size]byte, []string) {
	cur := map[string][sha256.Size]byte{}
	var changed []string
	for _, src := range s.Sources {
		if src.Certificate != nil {
			continue
		}
		for _, f := range []string{src.CertFile, src.KeyFile} {
			if f == "" {
				continue
			}
			if _, done := cur[f]; done {
				continue
			}
			b, err := os.ReadFile(f)
			var h [sha256.Size]byte // unreadable: all-zero sum, differs from any content
			if err == nil {
				h = sha256.Sum256(b)
			}
			cur[f] = h
			if old, ok := seen[f]; !ok || old != h {
				changed = append(changed, f)
			}
		}
	}
	return cur, changed
}
