package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mailtls/mailtls/transport"
)

// Exit statuses of "relay check": what delivery would do, for scripts and
// monitoring, besides the report.
const (
	checkDeliver = 0 // a host would take the message
	checkError   = 1 // bad arguments or configuration; no report
	checkDefer   = 2 // the message would be deferred (4xx)
	checkBounce  = 3 // the message would be bounced (5xx)
)

const checkUsage = `usage: relay check [relay flags] [-json] [-timeout 2m] DOMAIN

Explains what this relay would do with mail for DOMAIN, with the same
flags as the relay (-policy, -default-tls, -on-tls-failure, -route,
-smarthost, -outbound-ca, -mta-sts, -resolver, -dane-resolver,
-hostname): the route, the MX lookup, the TLS policy and where it comes
from, and for each MX host the session up to MAIL FROM (greeting, EHLO,
STARTTLS, the handshake, the certificate chain and each level's verdict
on it, REQUIRETLS), then QUIT. No MAIL is sent. The verdict says whether
a message would be delivered, deferred or bounced, with the DSN status.

Exit status: 0 delivered, 2 deferred, 3 failed (bounced), 1 error.
`

// runCheck is "relay check": it builds the relay's Connector from args
// (setupConnector, nothing else: no listener, no queue) and prints its
// transport.Connector.Check report for the one domain in args, as text or
// with -json as JSON, to out. The Connector's log lines ("check attempt")
// go to errOut with -log-level and -log-format. setup, if not nil, adjusts
// the Connector before use (a test seam). It returns the exit status.
func runCheck(ctx context.Context, args []string, out, errOut io.Writer, setup func(*transport.Connector)) int {
	var (
		asJSON  bool
		timeout time.Duration
	)
	cfg, rest, err := parseCommandFlags("relay check", args, errOut, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
		fs.DurationVar(&timeout, "timeout", 2*time.Minute, "give up on the check after this `duration` (hosts not reached by then are reported deferred)")
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), checkUsage, "\nFlags:\n")
			fs.PrintDefaults()
		}
	})
	switch {
	case errors.Is(err, flag.ErrHelp):
		return checkDeliver
	case err != nil:
		fmt.Fprintln(errOut, "relay check:", err)
		return checkError
	case len(rest) != 1:
		fmt.Fprint(errOut, checkUsage)
		return checkError
	case cfg.isLocalDomain(rest[0]):
		// The queue hands these to the Maildirs, never to the Connector.
		fmt.Fprintf(errOut, "relay check: %s is a local domain (-local-domains, -hostname): its mail goes to Maildirs under -data/mail, not over SMTP\n", rest[0])
		return checkError
	}
	r := &Relay{cfg: cfg, log: newLogger(cfg, errOut)}
	if err := r.setupConnector(); err != nil {
		fmt.Fprintln(errOut, "relay check:", err)
		return checkError
	}
	defer r.connector.Close()
	if setup != nil {
		setup(r.connector)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := r.connector.Check(ctx, rest[0])
	if err != nil {
		fmt.Fprintln(errOut, "relay check:", err)
		return checkError
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(out)
	}
	if err != nil {
		fmt.Fprintln(errOut, "relay check:", err)
		return checkError
	}
	switch rep.Outcome.Result {
	case transport.Delivered, transport.Relayed:
		return checkDeliver
	case transport.Failed:
		return checkBounce
	}
	return checkDefer
}
