package certstore_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mailtls/mailtls/certstore"
)

// A mail server with one certificate from PEM files, created on first run,
// serving TLS with the RFC 9325 defaults.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "certstore-example")
	defer os.RemoveAll(dir)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := certstore.EnsureSelfSigned(certFile, keyFile, []string{"mx.example.com"}, 0); err != nil {
		log.Fatal(err)
	}

	store, err := certstore.New(certstore.Source{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		log.Fatal(err) // says which file is wrong and why
	}
	cfg, err := store.TLSConfig(certstore.TLSOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tls.VersionName(cfg.MinVersion), len(cfg.CipherSuites), "suites, curves:", cfg.CurvePreferences)
	// Output: TLS 1.2 6 suites, curves: []
}

// Several certificates chosen by SNI, with a default for clients that send
// no name (most MTAs).
func ExampleStore_GetCertificate() {
	mx, _ := certstore.GenerateSelfSigned([]string{"mx.example.com"}, time.Hour)
	wild, _ := certstore.GenerateSelfSigned([]string{"*.example.org"}, time.Hour)
	store := &certstore.Store{Sources: []certstore.Source{
		{Name: "mx", Certificate: mx, Default: true},
		{Name: "org", Certificate: wild},
	}}
	if err := store.Reload(); err != nil {
		log.Fatal(err)
	}
	for _, sni := range []string{"", "smtp.example.org", "MX.EXAMPLE.COM.", "a.b.example.org"} {
		c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		fmt.Printf("%q -> %s\n", sni, c.Leaf.Subject.CommonName)
	}
	// Output:
	// "" -> mx.example.com
	// "smtp.example.org" -> *.example.org
	// "MX.EXAMPLE.COM." -> mx.example.com
	// "a.b.example.org" -> mx.example.com
}

// Load errors name the file and the reason, and are matched with errors.Is.
func ExampleLoadFiles() {
	dir, _ := os.MkdirTemp("", "certstore-example")
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	certstore.WriteSelfSigned(a+".crt", a+".key", []string{"a.example"}, 0)
	certstore.WriteSelfSigned(b+".crt", b+".key", []string{"b.example"}, 0)

	_, err := certstore.LoadFiles(a+".crt", b+".key") // key of another pair
	var ce *certstore.Error
	if errors.As(err, &ce) {
		fmt.Println(errors.Is(err, certstore.ErrKeyMismatch), filepath.Base(ce.File), ce.Op)
	}
	// Output: true b.key key
}

// Which certificates must be renewed within 30 days.
func ExampleStore_Expiring() {
	short, _ := certstore.GenerateSelfSigned([]string{"short.example"}, 10*24*time.Hour)
	long, _ := certstore.GenerateSelfSigned([]string{"long.example"}, 365*24*time.Hour)
	store, err := certstore.New(certstore.Source{Name: "short", Certificate: short}, certstore.Source{Name: "long", Certificate: long})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range store.Expiring(30 * 24 * time.Hour) {
		fmt.Println(e.Name, e.Hostnames, e.Remaining.Round(24*time.Hour) == 10*24*time.Hour)
	}
	// Output: short [short.example] true
}

// Reloading on file change in the background, for as long as ctx lives.
func ExampleStore_Watch() {
	store := &certstore.Store{
		Sources: []certstore.Source{{CertFile: "/etc/mail/tls/cert.pem", KeyFile: "/etc/mail/tls/key.pem"}},
		Logger:  slog.Default(),
	}
	if err := store.Reload(); err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go store.Watch(ctx, 30*time.Second) // or call store.Reload() on SIGHUP
}

var partnerCAPEM []byte // the partner's CA certificate, read from a file

// Inbound mutual TLS with a partner: require a client certificate issued by
// the partner's CA, TLS 1.3 only.
func ExampleStore_TLSConfig() {
	store, err := certstore.New(certstore.Source{CertFile: "cert.pem", KeyFile: "key.pem"})
	if err != nil {
		log.Fatal(err)
	}
	partnerCAs := x509.NewCertPool()
	partnerCAs.AppendCertsFromPEM(partnerCAPEM)
	cfg, err := store.TLSConfig(certstore.TLSOptions{
		MinVersion: tls.VersionTLS13,
		ClientAuth: certstore.ClientCertRequireVerified,
		ClientCAs:  partnerCAs,
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, _ := tls.Listen("tcp", "127.0.0.1:0", cfg)
	defer ln.Close()
}

// Outbound mutual TLS: the route to a partner presents the "partner"
// certificate of the Store.
func ExampleStore_ClientCertificate() {
	store, err := certstore.New(certstore.Source{Name: "partner", CertFile: "client.pem", KeyFile: "client.key"})
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{
		ServerName:           "mx.partner.example",
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: store.ClientCertificate("partner"),
	}
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", "25"), cfg)
	if err == nil {
		conn.Close()
	}
}

// Certificates from another source (here any GetCertificate function), with
// the Store's default for clients that send no SNI and whenever the other
// source fails.
func ExampleStore_Fallback() {
	store, err := certstore.New(certstore.Source{CertFile: "cert.pem", KeyFile: "key.pem"})
	if err != nil {
		log.Fatal(err)
	}
	var other func(*tls.ClientHelloInfo) (*tls.Certificate, error) // e.g. a vault-backed lookup
	cfg, err := certstore.ServerTLSConfig(store.Fallback(other), certstore.TLSOptions{})
	if err != nil {
		log.Fatal(err)
	}
	_ = cfg
}

// An MX with ACME certificates for its host names and the Store's
// certificate for clients that send no SNI (most MTAs). The CA validates on
// port 80 (http-01), never on the mail ports. Compile-only: it would contact
// Let's Encrypt.
func ExampleStore_ACMETLSConfig() {
	store, err := certstore.New(certstore.Source{CertFile: "fallback.pem", KeyFile: "fallback.key", Default: true})
	if err != nil {
		log.Fatal(err)
	}
	manager, err := certstore.NewACMEManager(certstore.ACMEOptions{
		Hosts:     []string{"mx1.example.com", "mx2.example.com"},
		CacheDir:  "/var/lib/mail/acme",
		Email:     "postmaster@example.com",
		AcceptTOS: true, // the operator agrees to the CA's terms
	})
	if err != nil {
		log.Fatal(err) // says which option is unusable
	}
	// http-01 challenges (RFC 8555, Section 8.3); or serve tls-alpn-01 on
	// port 443 with tls.Listen("tcp", ":443", manager.TLSConfig()).
	go http.ListenAndServe(":80", manager.HTTPHandler(nil))

	cfg, err := store.ACMETLSConfig(manager, certstore.TLSOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tls.Listen("tcp", ":465", cfg) // or use cfg for STARTTLS on port 25
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
}
