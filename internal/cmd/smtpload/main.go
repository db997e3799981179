// Command smtpload measures how many messages per second transport.Server
// accepts over STARTTLS, as a ratio against a bare go-smtp server measured
// in the same run, from a separate load process on loopback.
//
// It starts each target as a child process (it re-executes itself with
// -serve KIND), so that load generator and server never share a Go runtime:
//
//	gosmtp   the baseline: a bare github.com/emersion/go-smtp server whose
//	         session discards the body, with the same TLS configuration
//	mailtls  transport.Server (default inbound policy: TLS required, TLS 1.2
//	         minimum) with a Handler that discards the body
//	queue    transport.Server whose Handler is a transport/queue.Queue over a
//	         DirStore in a fresh temporary directory: each message is
//	         written, fsynced and renamed (and the directory fsynced) before
//	         the 250, then "delivered" by a Deliverer that discards it, so
//	         the spool stays small
//
// All three use the same self-signed ECDSA P-256 certificate and the
// certstore TLS configuration (RFC 9325 defaults); clients do a full TLS
// handshake on every connection (no session resumption), as between MTAs.
//
// The targets are driven in interleaved rounds: every round sends -n
// messages to each target in turn, and the order rotates from round to round
// (ABC, BCA, CAB, ...), so that load from other processes on a shared,
// noisy machine hits every target alike. Each connection is: greeting,
// EHLO, STARTTLS, TLS handshake, EHLO, then -per-conn times MAIL, RCPT and
// DATA (or BDAT LAST with -bdat) of a -size byte message, then QUIT; -c
// such clients run concurrently. The report gives msgs/s per target and
// round, and the ratio of each target to gosmtp per round with its median,
// minimum and maximum across rounds (a ratio of 0.90 means 10% slower than
// the baseline). Every message is checked: a refused message, or an
// accepted count the server does not confirm, makes the run fail.
//
// Usage:
//
//	go run ./internal/cmd/smtpload [flags]
//
// Flags:
//
//	-c N          concurrent client connections (default 4)
//	-n N          messages per target per round (default 1000)
//	-size BYTES   message size in octets, header included (default 1024)
//	-per-conn N   messages per connection (default 1)
//	-rounds N     interleaved rounds (default 5)
//	-bdat         send BDAT LAST (RFC 3030) instead of DATA
//	-targets LIST comma-separated subset of gosmtp,mailtls,queue
//	              (default all three; gosmtp is always included)
//	-spool DIR    where the queue target's spool directory is created
//	              (default the system temporary directory; put it on the
//	              disk you want to measure)
//	-timeout D    the whole run stops (and fails) after D (default 10m)
//	-serve KIND   internal: run one target (used by the re-executed child)
//
// The command binds only 127.0.0.1 ports chosen by the kernel, sends at
// most rounds × targets × n messages, and stops by itself: children exit
// when their standard input closes (the parent ending, however it ends) and
// are killed by PID if they do not.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
)

// childEnv marks a re-executed child, so that a test binary (whose own flag
// parsing would reject -serve) can hand over to serveMain in TestMain.
const childEnv = "SMTPLOAD_CHILD"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is the parsed command line.
type config struct {
	conc, n, size, perConn, rounds int
	bdat                           bool
	targets                        []string
	spool                          string
	timeout                        time.Duration
	serve                          string
	certFile, keyFile              string // child only
}

var allTargets = []string{"gosmtp", "mailtls", "queue"}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("smtpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.conc, "c", 4, "concurrent client connections")
	fs.IntVar(&c.n, "n", 1000, "messages per target per round")
	fs.IntVar(&c.size, "size", 1024, "message size in octets")
	fs.IntVar(&c.perConn, "per-conn", 1, "messages per connection")
	fs.IntVar(&c.rounds, "rounds", 5, "interleaved rounds")
	fs.BoolVar(&c.bdat, "bdat", false, "send BDAT LAST instead of DATA")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated targets (gosmtp is always measured)")
	fs.StringVar(&c.spool, "spool", os.TempDir(), "parent `dir` of the queue target's spool")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "limit for the whole run")
	fs.StringVar(&c.serve, "serve", "", "internal: serve one target `kind`")
	fs.StringVar(&c.certFile, "cert", "", "internal: certificate file (child)")
	fs.StringVar(&c.keyFile, "key", "", "internal: key file (child)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.conc < 1 || c.conc > 1000:
		return nil, errors.New("-c must be 1..1000")
	case c.n < 1 || c.n > 10_000_000:
		return nil, errors.New("-n must be 1..10000000")
	case c.size < 32 || c.size > 64<<20:
		return nil, errors.New("-size must be 32 bytes..64 MiB")
	case c.perConn < 1:
		return nil, errors.New("-per-conn must be at least 1")
	case c.rounds < 1 || c.rounds > 1000:
		return nil, errors.New("-rounds must be 1..1000")
	case c.timeout <= 0:
		return nil, errors.New("-timeout must be positive")
	}
	c.targets = []string{"gosmtp"}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "gosmtp", "":
		case "mailtls", "queue":
			if !contains(c.targets, t) {
				c.targets = append(c.targets, t)
			}
		default:
			return nil, fmt.Errorf("-targets: unknown target %q (want gosmtp, mailtls, queue)", t)
		}
	}
	if c.serve != "" && !contains(allTargets, c.serve) {
		return nil, fmt.Errorf("-serve: unknown target %q", c.serve)
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// run is main without os.Exit: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "smtpload:", err)
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if cfg.serve != "" {
		err = serveMain(ctx, cfg, os.Stdin, stdout)
	} else {
		err = loadMain(ctx, cfg, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "smtpload:", err)
		return 1
	}
	return 0
}

// readLine reads one line of a child's standard output.
func readLine(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}
