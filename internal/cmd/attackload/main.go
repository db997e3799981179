// Command attackload measures how a relay built from examples/relay holds
// up under the attacks transport.Server's limits are built for (a full AUTH
// failure table, parallel password checks, slow connections, a bcrypt
// flood), by the latency a
// normal client sees while they run, as ratios against a baseline measured
// with the same relay process just before each attack.
//
// For each scenario it starts the relay binary given by -relay as a child
// process, with a fresh data directory, a self-signed certificate for
// mx.load.test, a users file with one user (alice, bcrypt at the default
// cost), -local-domains load.test, and only two listeners on free
// 127.0.0.1 ports: -smtp (called 25 below) and -submission (587);
// -submissions is disabled. Everything else is the relay's default, plus
// any -relay-arg flags.
//
// The normal client dials from 127.0.0.2 (its own address, which no attack
// uses; on Linux all of 127.0.0.0/8 reaches lo and any of it can be bound)
// and times whole sessions: connect, greeting, EHLO, STARTTLS, a full TLS
// 1.3 handshake, EHLO, [AUTH PLAIN as alice on 587], MAIL, RCPT to
// alice@load.test, DATA of 1 KiB, QUIT. It runs one session after another
// on each port, -gap apart: -baseline sessions per port with no attack,
// then for as long as the attack lasts. The attacks, each from its own
// addresses in 127.0.0.0/8:
//
//	fill       the AUTH table fill: AUTH PLAIN on 587 with an authorization
//	           identity other than the user, which fails before any
//	           password check, each from a new address (250 per /24 from
//	           127.10.0.0 on, so ~400 /24s for the default count), one TLS
//	           handshake each, -fill-c at a time, until -fill-n attempts or
//	           -fill-time. Then alice, with the right password, from a fresh
//	           address in a fresh /24 (127.250.0.1) and from an unused
//	           address in the last /24 the attack used: accepted (235) or
//	           refused (454)?
//	parallel   -parallel-n connections from one address (127.20.0.1) to
//	           587, all opened first, then AUTH PLAIN alice with wrong
//	           passwords sent on all at once: 535 means the password was
//	           checked (bcrypt ran), 454 that the limiter refused first
//	slowloris  -slow-conns connection slots to 25 from one address
//	           (127.30.0.1; -slow-addrs spreads them over more), plaintext,
//	           each kept alive by one byte every -slow-every (jittered) of,
//	           by -slow-mode: a message body after DATA that never ends
//	           (data), a command line that never ends (line), or "NOOP"
//	           commands (noop). A connection the relay ends is opened again
//	           at once, a refused one after -slow-every. Held for -slow-time
//	           once every slot has tried, while the normal client runs;
//	           reports how many the relay admitted, what the rest got, and
//	           how long the ones it ended lived
//	flood      the bcrypt flood: -flood-rate AUTH PLAIN attempts per second
//	           on 587 for -flood-time, alice with wrong passwords (a bcrypt
//	           comparison each), every attempt from a new /24 (127.40.0.1,
//	           127.40.1.1, ...) so that no per-address limit stops it; at
//	           most 200 in flight (more are counted as not sent)
//	idle       the memory of idle connections, run only when named in
//	           -scenarios: -idle-n connections to 25, -idle-per-addr from
//	           each address (127.60.0.1, 127.60.0.2, ... 254 per /24),
//	           each with EHLO, STARTTLS, a full TLS 1.3 handshake and EHLO,
//	           then left idle for -idle-time while the normal client runs.
//	           The relay gets -max-connections N+N/4+64 (stress mode starts
//	           above the idle connections). Reports the relay's resident
//	           memory (VmRSS) growth per connection, then one more
//	           connection from the first address (refused at the per-client
//	           cap) and greeting-only connections from 127.61.0.1 on to 10
//	           past the connection cap (each over the cap takes the slot of
//	           an idle connection, which gets 421 4.7.0)
//
// Per scenario it prints the attack's own figures (reply counts, rates,
// lifetimes), the relay's CPU time in each phase, and a table per port:
// p50, p95 and maximum session latency at baseline and under attack, the
// number of sessions and failed sessions (with their replies), and the
// ratio attack/baseline of each figure. A summary table of all scenarios
// ends the report. Latency figures are over successful sessions only; a
// failed session is listed by its reply.
//
// Usage:
//
//	go build -o /tmp/relay ./examples/relay
//	go run ./internal/cmd/attackload -relay /tmp/relay [flags]
//
// Flags:
//
//	-relay FILE        the relay binary (required)
//	-relay-arg FLAG    an extra flag for the relay, repeatable
//	                   (-relay-arg=-log-level=warn)
//	-scenarios LIST    comma-separated subset of fill,parallel,slowloris,flood
//	                   (default all, in that order)
//	-baseline N        normal sessions per port before each attack (default 20)
//	-gap D             pause between one port's normal sessions (default 100ms)
//	-fill-n N          AUTH table fill attempts (default 101000)
//	-fill-c N          fill attempts at a time (default 32)
//	-fill-time D       the fill stops after D (default 450s)
//	-parallel-n N      parallel AUTH connections from one address (default 200)
//	-slow-conns N      slowloris connections (default 1000, the relay's
//	                   default per-listener cap)
//	-slow-addrs N      addresses the slowloris comes from (default 1)
//	-slow-mode M       data, line or noop (default data)
//	-slow-every D      one byte per connection every D (default 3s)
//	-slow-time D       how long the connections are held (default 630s:
//	                   past the relay's default 10-minute whole-DATA
//	                   deadline, so that it shows)
//	-flood-rate R      bcrypt flood attempts per second (default 23)
//	-flood-time D      bcrypt flood duration (default 30s)
//	-idle-n N          idle: connections held after STARTTLS (default 10000)
//	-idle-per-addr N   idle: connections per source address (default 50,
//	                   the relay's -max-connections-per-client)
//	-idle-time D       idle: how long they are held (default 30s)
//	-dir DIR           parent of the relays' data directories (default the
//	                   system temporary directory); -keep keeps them
//	-timeout D         the whole run stops after D (default 20m)
//
// With the defaults a run takes about 20 minutes on two cores, most of it
// the fill (101,000 TLS handshakes) and the slowloris hold.
//
// Everything happens on loopback. Every scenario is bounded in count and
// time and stops by itself; the tool ends only the relay processes it
// started, by their PID (SIGTERM, then SIGKILL after 10 s; on Linux the
// relay is also sent SIGKILL if the tool dies first). The relay's log is
// written to relay.log in its data directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// allScenarios are the scenarios run by default, in the order they run;
// knownScenarios adds those run only when named.
var (
	allScenarios   = []string{"fill", "parallel", "slowloris", "flood"}
	knownScenarios = append(slices.Clone(allScenarios), "idle")
)

// config is the parsed command line.
type config struct {
	relay     string
	relayArgs []string
	scenarios []string
	baseline  int
	gap       time.Duration

	fillN, fillC int
	fillTime     time.Duration

	parallelN int

	slowConns int
	slowAddrs int
	slowMode  string
	slowEvery time.Duration
	slowTime  time.Duration

	floodRate float64
	floodTime time.Duration

	idleN, idlePer int
	idleTime       time.Duration

	dir     string
	keep    bool
	timeout time.Duration
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, " ") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("attackload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.relay, "relay", "", "the relay `binary` (go build ./examples/relay)")
	fs.Var((*stringsFlag)(&c.relayArgs), "relay-arg", "extra `flag` for the relay, repeatable")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios")
	fs.IntVar(&c.baseline, "baseline", 20, "normal sessions per port before each attack")
	fs.DurationVar(&c.gap, "gap", 100*time.Millisecond, "pause between one port's normal sessions")
	fs.IntVar(&c.fillN, "fill-n", 101000, "AUTH table fill attempts")
	fs.IntVar(&c.fillC, "fill-c", 32, "AUTH table fill attempts at a time")
	fs.DurationVar(&c.fillTime, "fill-time", 450*time.Second, "AUTH table fill time limit")
	fs.IntVar(&c.parallelN, "parallel-n", 200, "parallel AUTH connections from one address")
	fs.IntVar(&c.slowConns, "slow-conns", 1000, "slowloris connections from one address")
	fs.IntVar(&c.slowAddrs, "slow-addrs", 1, "slowloris: addresses the connections come from")
	fs.StringVar(&c.slowMode, "slow-mode", "data", "slowloris: what is trickled: line, noop or data")
	fs.DurationVar(&c.slowEvery, "slow-every", 3*time.Second, "slowloris: one byte per connection every")
	fs.DurationVar(&c.slowTime, "slow-time", 630*time.Second, "slowloris: how long the connections are held")
	fs.Float64Var(&c.floodRate, "flood-rate", 23, "bcrypt flood attempts per second")
	fs.DurationVar(&c.floodTime, "flood-time", 30*time.Second, "bcrypt flood duration")
	fs.IntVar(&c.idleN, "idle-n", 10000, "idle: connections held after STARTTLS")
	fs.IntVar(&c.idlePer, "idle-per-addr", 50, "idle: connections per source address")
	fs.DurationVar(&c.idleTime, "idle-time", 30*time.Second, "idle: how long they are held")
	fs.StringVar(&c.dir, "dir", os.TempDir(), "parent `dir` of the relays' data directories")
	fs.BoolVar(&c.keep, "keep", false, "keep the relays' data directories")
	fs.DurationVar(&c.timeout, "timeout", 20*time.Minute, "limit for the whole run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.relay == "":
		return nil, errors.New("-relay is required")
	case c.baseline < 1 || c.baseline > 10000:
		return nil, errors.New("-baseline must be 1..10000")
	case c.gap < 0:
		return nil, errors.New("-gap must not be negative")
	case c.fillN < 1 || c.fillN > maxFill:
		return nil, fmt.Errorf("-fill-n must be 1..%d", maxFill)
	case c.fillC < 1 || c.fillC > 1000:
		return nil, errors.New("-fill-c must be 1..1000")
	case c.parallelN < 1 || c.parallelN > 10000:
		return nil, errors.New("-parallel-n must be 1..10000")
	case c.slowConns < 1 || c.slowConns > 10000:
		return nil, errors.New("-slow-conns must be 1..10000")
	case c.slowAddrs < 1 || c.slowAddrs > c.slowConns:
		return nil, errors.New("-slow-addrs must be 1..-slow-conns")
	case slowModes[c.slowMode].byteAt == nil:
		return nil, fmt.Errorf("-slow-mode: unknown mode %q (want line, noop or data)", c.slowMode)
	case c.slowEvery <= 0:
		return nil, errors.New("-slow-every must be positive")
	case !(c.floodRate > 0 && c.floodRate <= 1000):
		return nil, errors.New("-flood-rate must be in (0, 1000]")
	case c.idleN < 1 || c.idleN > 100000 || c.idlePer < 1:
		return nil, errors.New("-idle-n must be 1..100000 and -idle-per-addr positive")
	case c.fillTime <= 0 || c.idleTime <= 0 || c.slowTime <= 0 || c.floodTime <= 0 || c.timeout <= 0:
		return nil, errors.New("durations must be positive")
	}
	for _, s := range strings.Split(*scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(knownScenarios, s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want %s)", s, strings.Join(knownScenarios, ", "))
		}
		if !slices.Contains(c.scenarios, s) {
			c.scenarios = append(c.scenarios, s)
		}
	}
	if len(c.scenarios) == 0 {
		return nil, errors.New("-scenarios: none given")
	}
	// Keep the order of allScenarios.
	slices.SortFunc(c.scenarios, func(a, b string) int { return slices.Index(knownScenarios, a) - slices.Index(knownScenarios, b) })
	return c, nil
}

// run is main without os.Exit: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "attackload:", err)
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := loadMain(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "attackload:", err)
		return 1
	}
	return 0
}
