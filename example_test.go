package mailtls_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// The assembly from the package documentation, compiled: an implicit-TLS
// submission listener with AUTH, a durable queue, and a Connector that
// requires verified TLS to a partner and encryption everywhere else, bouncing
// with a DSN when that cannot be had. It is not run here; examples/demo runs
// the same path on loopback.
func Example() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	certs, err := certstore.New(certstore.Source{CertFile: "cert.pem", KeyFile: "key.pem", Default: true})
	if err != nil {
		log.Fatal(err)
	}
	tlsConfig, err := certs.TLSConfig(certstore.TLSOptions{})
	if err != nil {
		log.Fatal(err)
	}
	users, err := transport.LoadBcryptTable("users") // lines "name:bcrypt-hash"
	if err != nil {
		log.Fatal(err)
	}
	table, err := policy.ParseTable(strings.NewReader(
		"partner.example verify\n"+
			"*               encrypt on-failure=bounce\n"), "tls_policy")
	if err != nil {
		log.Fatal(err)
	}
	connector := &transport.Connector{Hostname: "relay.example.org", Policy: table, Logger: logger}
	defer connector.Close()

	store, err := queue.OpenDirStore("/var/spool/mailtls")
	if err != nil {
		log.Fatal(err)
	}
	q := &queue.Queue{Store: store, Deliverer: connector, Hostname: "relay.example.org", Logger: logger}
	go q.Run(ctx)

	srv := &transport.Server{
		Hostname:      "relay.example.org",
		Kind:          transport.KindSubmissions,
		TLSConfig:     tlsConfig,
		Handler:       q, // 250 only after the message is on disk
		Authenticator: users,
		Logger:        logger,
	}
	log.Fatal(srv.ListenAndServe(ctx, ":465"))
}
