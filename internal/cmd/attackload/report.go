package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailtls/mailtls/internal/testmsg"
)

// result is one scenario's outcome.
type result struct {
	name         string
	base, attack *phase
	notes        []string
}

// loadMain runs the scenarios, each against a fresh relay, and prints the
// report.
func loadMain(ctx context.Context, cfg *config, stdout io.Writer) error {
	dir, err := os.MkdirTemp(cfg.dir, "attackload-")
	if err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	fx, err := newFixture(dir)
	if err != nil {
		return err
	}
	sum, err := fileSum(cfg.relay)
	if err != nil {
		return fmt.Errorf("-relay: %w", err)
	}
	fmt.Fprintf(stdout, "attackload %s %s %s/%s NumCPU=%d relay=%s (sha256 %s) relay-args=%q baseline=%d gap=%s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		cfg.relay, sum, cfg.relayArgs, cfg.baseline, cfg.gap)
	c := &client{tls: fx.clientTLS, from: normalAddr, body: testmsg.Body("attackload", 1024)}
	var results []*result
	for _, name := range cfg.scenarios {
		res, err := runScenario(ctx, cfg, fx, c, name, stdout)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, res)
		printScenario(stdout, res)
	}
	printSummary(stdout, results)
	return nil
}

// runScenario starts a relay, measures the baseline, runs the attack with
// the normal client measuring, and stops the relay.
func runScenario(ctx context.Context, cfg *config, fx *fixture, c *client, name string, out io.Writer) (*result, error) {
	var extra []string
	if name == "idle" {
		extra = idleRelayArgs(cfg)
	}
	r, err := startRelay(ctx, cfg, fx, name, extra...)
	if err != nil {
		return nil, err
	}
	defer func() {
		r.stop()
		if !cfg.keep {
			os.RemoveAll(r.dataDir)
		}
	}()
	fmt.Fprintf(out, "scenario %s: relay pid %d, 25=%s 587=%s, data %s; load average %s\n", name, r.cmd.Process.Pid, r.smtp, r.submission, r.dataDir, loadAvg())
	res := &result{name: name}
	res.base = measure(ctx, c, r, cfg.baseline, cfg.gap, nil)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.attack, res.notes, err = attacks[name](ctx, cfg, c, r, out)
	if err != nil {
		return nil, err
	}
	res.notes = append(res.notes, "load average after the attack: "+loadAvg())
	if !r.alive() {
		return nil, fmt.Errorf("the relay exited during the attack (%v); its log:\n%s", r.waitErr, r.logTail())
	}
	return res, nil
}

// fileSum is the first 12 hex digits of the SHA-256 of a file, to tell
// binaries apart in reports.
func fileSum(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6]), nil
}

// printScenario prints one scenario's notes and its per-port table.
func printScenario(w io.Writer, res *result) {
	for _, n := range res.notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	for _, ph := range []struct {
		what string
		p    *phase
	}{{"baseline", res.base}, {"attack", res.attack}} {
		cpu := "unknown"
		if ph.p.cpuOK {
			cpu = fmt.Sprintf("%.1fs in %.1fs (%.2f cores)", ph.p.cpu.Seconds(), ph.p.wall.Seconds(), ph.p.cpu.Seconds()/ph.p.wall.Seconds())
		}
		fmt.Fprintf(w, "  relay CPU, %s: %s\n", ph.what, cpu)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  port\tphase\tsessions\tfailed\tp50\tp95\tmax\t")
	for _, port := range []string{"25", "587"} {
		b, a := res.base.port(port), res.attack.port(port)
		fmt.Fprintf(tw, "  %s\tbaseline\t%d\t%d\t%s\t\n", port, len(b.ok)+b.failed(), b.failed(), secs(b))
		fmt.Fprintf(tw, "  %s\tattack\t%d\t%d\t%s\t\n", port, len(a.ok)+a.failed(), a.failed(), secs(a))
		fmt.Fprintf(tw, "  %s\tratio\t\t\t%s\t\n", port, ratios(a, b))
	}
	tw.Flush()
	for _, port := range []string{"25", "587"} {
		for _, ph := range []struct {
			what string
			s    *series
		}{{"baseline", res.base.port(port)}, {"attack", res.attack.port(port)}} {
			if len(ph.s.fails) > 0 {
				fmt.Fprintf(w, "  %s %s failures: %s\n", port, ph.what, tally(ph.s.fails))
			}
		}
	}
}

// printSummary prints the ratios of every scenario, with the absolute
// figures for scale.
func printSummary(w io.Writer, results []*result) {
	fmt.Fprintln(w, "summary: normal client's whole-session latency, attack/baseline ratio (absolute seconds: baseline → attack)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tport\tp50\tp95\tmax\tbaseline p50/p95/max\tattack p50/p95/max\tattack ok/failed\t")
	for _, res := range results {
		for _, port := range []string{"25", "587"} {
			b, a := res.base.port(port), res.attack.port(port)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t\n", res.name, port, ratios(a, b), strings.ReplaceAll(secs(b), "\t", "/"),
				strings.ReplaceAll(secs(a), "\t", "/"), len(a.ok), a.failed())
		}
	}
	tw.Flush()
}

func (p *phase) port(port string) *series {
	if port == "25" {
		return p.mx
	}
	return p.sub
}

// secs is "p50\tp95\tmax" in seconds, or dashes without a successful
// session.
func secs(s *series) string {
	p50, p95, hi, ok := s.stats()
	if !ok {
		return "-\t-\t-"
	}
	return fmt.Sprintf("%.3f\t%.3f\t%.3f", p50.Seconds(), p95.Seconds(), hi.Seconds())
}

// ratios is "p50\tp95\tmax" of a over b, or dashes when either has no
// successful session.
func ratios(a, b *series) string {
	a50, a95, ahi, aok := a.stats()
	b50, b95, bhi, bok := b.stats()
	if !aok || !bok {
		return "-\t-\t-"
	}
	r := func(x, y time.Duration) float64 { return x.Seconds() / y.Seconds() }
	return fmt.Sprintf("%.2f\t%.2f\t%.2f", r(a50, b50), r(a95, b95), r(ahi, bhi))
}
