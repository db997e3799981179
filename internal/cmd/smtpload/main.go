// Command smtpload measures how many messages per second the mailtls
// inbound path, the durable queue and the whole relay take over STARTTLS,
// as ratios against a bare go-smtp server measured in the same run, from a
// separate load process on loopback, and compares the relay with a real
// Postfix on the same load.
//
// It starts each Go target as a child process (it re-executes itself with
// -serve KIND), so that load generator and servers never share a Go
// runtime:
//
//	gosmtp   the baseline: a bare github.com/emersion/go-smtp server whose
//	         session discards the body, with the same TLS configuration
//	mailtls  transport.Server (default inbound policy: TLS required, TLS 1.2
//	         minimum) with a Handler that discards the body
//	queue    transport.Server whose Handler is a transport/queue.Queue over a
//	         LogStore (or, with -store dir, a DirStore) in a fresh
//	         temporary directory: each message is durable (flushed)
//	         before the 250, then "delivered" by a Deliverer that
//	         discards it, so the spool stays small
//	relay    the relay end to end: transport.Server (STARTTLS required) →
//	         queue on the same store (durable before the 250) → a
//	         transport.Connector (policy verify, the load certificate as its
//	         only root, connection pooling on) → a TLS sink child (bare
//	         go-smtp with STARTTLS, discarding). A round ends when the SINK
//	         has every message, not at the last 250: the rate is end to end
//	postfix  a private Postfix instance (postfix -c DIR, Debian's
//	         /usr/sbin/postfix; needs root) with smtpd on a loopback port,
//	         smtpd_tls_security_level = encrypt, TLS 1.3 only, the same
//	         certificate, and every message to discard(8). Counted by its
//	         250 replies (Postfix has fsynced the queue file by then); at the
//	         end its log must show every message discarded. Skipped with a
//	         message when Postfix is not installed or the command does not
//	         run as root, unless -require-postfix
//	postfix-relay  the same Postfix doing the relay target's job: every
//	         message relayed by its smtp(8) client to a TLS sink child of
//	         its own, smtp_tls_security_level = verify (the sink's
//	         certificate as the only trust anchor), TLS connection reuse
//	         on, its default 20 connections per destination. As for
//	         relay, a round ends when the sink has every message
//
// All use the same self-signed ECDSA P-256 certificate; the Go servers use
// the certstore TLS configuration (RFC 9325 defaults). Clients do a full
// TLS 1.3 handshake with X25519 on every connection (no session
// resumption), as between MTAs, and ask the kernel for prompt ACKs
// (TCP_QUICKACK on Linux): Postfix keeps Nagle's algorithm on and sends
// its TLS 1.3 session tickets just before the EHLO reply, which would
// otherwise wait 40 ms for a delayed ACK on every connection.
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
// the baseline), and relay/postfix and relay/postfix-relay when both ran.
//
// On Linux it also gives the CPU time (user and system, from
// /proc/PID/stat, in 10 ms ticks) per message: of each target's
// processes over the whole run (the child, and the sink it relays to; for
// Postfix, the master and every daemon it forked, reaped ones included),
// and of the load process while it drove that target; and Postfix's CPU
// per message over the relay's. Where the load process shares the
// machine, its own CPU pulls the throughput ratios towards 1; the CPU
// ratio is what the targets alone cost.
//
// Every message is checked: a refused message, or an accepted count a
// server (or the sink, or Postfix's log) does not confirm, makes the run
// fail.
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
//	-bdat         send BDAT LAST (RFC 3030) instead of DATA (Postfix does
//	              not offer CHUNKING by default: leave postfix out)
//	-targets LIST comma-separated subset of gosmtp,mailtls,queue,relay,postfix,
//	              postfix-relay
//	              (default all; gosmtp is always included)
//	-require-postfix  fail instead of skipping the postfix target
//	-store KIND   the queue and relay targets' spool: log (queue.LogStore,
//	              the default) or dir (queue.DirStore)
//	-spool DIR    where the queue and relay targets' spool directories are
//	              created (default the system temporary directory; put it
//	              on the disk you want to measure)
//	-timeout D    the whole run stops (and fails) after D (default 10m)
//	-cpuprofile DIR  every Go child writes a CPU profile to DIR/KIND.pprof
//	              (go tool pprof DIR/relay.pprof; postfix-relay's sink
//	              DIR/pfsink.pprof), the load process its own to
//	              DIR/load.pprof; and each its allocations, when it ends,
//	              to DIR/KIND.allocs (go tool pprof -sample_index
//	              alloc_space DIR/relay.allocs)
//	-serve KIND   internal: run one child (used by the re-executed child)
//
// The command binds only 127.0.0.1 ports, sends at most rounds × targets ×
// n messages, and stops by itself: children exit when their standard
// input closes (the parent ending, however it ends) and are killed by PID
// if they do not; Postfix is stopped with postfix -c DIR stop and its
// master killed by PID if it is still running 10 s later (on every exit
// path but a SIGKILL of the load process itself, after which
// "postfix -c /tmp/smtpload-*/postfix-* stop" ends the instance).
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
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
	spool, store                   string
	timeout                        time.Duration
	serve                          string
	certFile, keyFile              string // child only
	sink                           string // relay child only
	requirePostfix                 bool
	profileDir                     string
	profileName                    string // child only: its profile's name, if not its kind
}

// allTargets are the targets the command drives; serveKinds the children
// it can start (the sink is the relay target's next hop, not a target).
var (
	allTargets = []string{"gosmtp", "mailtls", "queue", "relay", "postfix", "postfix-relay"}
	serveKinds = []string{"gosmtp", "mailtls", "queue", "relay", "sink"}
)

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
	fs.StringVar(&c.store, "store", "log", "the queue and relay targets' spool: `log` (queue.LogStore) or dir (queue.DirStore)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "limit for the whole run")
	fs.StringVar(&c.serve, "serve", "", "internal: serve one target `kind`")
	fs.StringVar(&c.certFile, "cert", "", "internal: certificate file (child)")
	fs.StringVar(&c.keyFile, "key", "", "internal: key file (child)")
	fs.StringVar(&c.sink, "sink", "", "internal: the sink's `addr` (relay child)")
	fs.StringVar(&c.profileName, "profile-name", "", "internal: the child's profiles are `name`.pprof and .allocs, not KIND.pprof and .allocs")
	fs.StringVar(&c.profileDir, "cpuprofile", "", "each Go child writes a CPU profile to `dir`/KIND.pprof and its allocations to `dir`/KIND.allocs, the load process to `dir`/load.pprof and load.allocs")
	fs.BoolVar(&c.requirePostfix, "require-postfix", false, "fail, instead of skipping the postfix target, when Postfix cannot be run")
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
	case c.store != "log" && c.store != "dir":
		return nil, errors.New("-store must be log or dir")
	}
	c.targets = []string{"gosmtp"}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "gosmtp", "":
		case "mailtls", "queue", "relay", "postfix", "postfix-relay":
			if !contains(c.targets, t) {
				c.targets = append(c.targets, t)
			}
		default:
			return nil, fmt.Errorf("-targets: unknown target %q (want %s)", t, strings.Join(allTargets, ", "))
		}
	}
	if strings.ContainsAny(c.profileName, `/\`) {
		return nil, fmt.Errorf("-profile-name %q: a file name, not a path", c.profileName)
	}
	if c.serve != "" && !contains(serveKinds, c.serve) {
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
	if cfg.profileDir != "" {
		name := cmp.Or(cfg.profileName, cfg.serve, "load")
		f, perr := os.Create(filepath.Join(cfg.profileDir, name+".pprof"))
		if perr != nil {
			fmt.Fprintln(stderr, "smtpload:", perr)
			return 1
		}
		defer f.Close()
		if perr := pprof.StartCPUProfile(f); perr != nil {
			fmt.Fprintln(stderr, "smtpload:", perr)
			return 1
		}
		defer pprof.StopCPUProfile()
		defer func() {
			if perr := writeAllocs(filepath.Join(cfg.profileDir, name+".allocs")); perr != nil {
				fmt.Fprintln(stderr, "smtpload:", perr)
			}
		}()
	}
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

// writeAllocs writes the allocation profile of the process so far to
// name.
func writeAllocs(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readLine reads one line of a child's standard output.
func readLine(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}
