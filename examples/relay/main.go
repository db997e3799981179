// Command relay is a TLS-enforcing mail relay built from the mailtls
// library: the program an administrator copies and adapts.
//
// With no flags it creates a self-signed certificate under ./relay-data and
// listens on 127.0.0.1:2525 (MX style, STARTTLS offered, RFC 3207),
// 127.0.0.1:2587 (submission, STARTTLS then AUTH required, RFC 6409) and
// 127.0.0.1:2465 (submission over implicit TLS, RFC 8314). Every accepted
// message is queued under -data/queue, durably before the 250 reply. Mail
// for the local recipients (-users logins, -recipients, postmaster) of
// -local-domains is then written to Maildirs under -data/mail, one result
// per recipient; everything else is relayed under the outbound TLS policy
// (-policy, -default-tls, -route, -smarthost), only for authenticated
// clients and -relay-networks. When a TLS requirement cannot be met the
// sender gets a DSN (RFC 3464).
//
// Signals: SIGHUP reloads the certificate (the files are also polled,
// -cert-watch); SIGTERM and SIGINT stop accepting connections, let the
// transactions in progress finish for up to -drain-timeout, and exit 0.
//
// "relay queue list|show|retry|remove|hold|release" operates the queue of
// the relay running on -data, through its admin socket -data/admin.sock.
// "relay check DOMAIN" explains, without sending mail, what the relay
// would do with mail for DOMAIN under its flags (see checkcmd.go).
//
// Run "go run ./examples/relay -h" for the flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "queue" {
		code := queueMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "check" {
		code := runCheck(ctx, os.Args[2:], os.Stdout, os.Stderr, nil)
		stop()
		os.Exit(code)
	}
	// Without a handler SIGHUP would end the process at once, with no
	// draining; it asks for a certificate reload instead.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := run(ctx, os.Args[1:], os.Stderr, hup); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}
