package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildRelay builds examples/relay into a temporary directory.
func buildRelay(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build examples/relay: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "relay")
	out, err := exec.Command(goCmd, "build", "-o", bin, "github.com/mailtls/mailtls/examples/relay").CombinedOutput()
	if err != nil {
		t.Fatalf("go build examples/relay: %v\n%s", err, out)
	}
	return bin
}

// TestTinyRun runs every scenario with tiny counts against a relay built
// from this tree, and checks that the report accounts for every attempt
// and has a ratio for every scenario and port.
func TestTinyRun(t *testing.T) {
	relay := buildRelay(t)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"-relay", relay, "-dir", t.TempDir(), "-baseline", "2", "-gap", "10ms",
		"-fill-n", "20", "-fill-c", "4", "-parallel-n", "6",
		"-slow-conns", "4", "-slow-every", "200ms", "-slow-time", "1s",
		"-flood-rate", "10", "-flood-time", "1s", "-timeout", "80s"}
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	t.Logf("report:\n%s", report)

	// Every fill and parallel attempt is answered by the password check
	// (535) or the limiter (454).
	authReplies := func(line string) int {
		n := 0
		for _, m := range regexp.MustCompile(`(\d+) × AUTH PLAIN: (535|454) `).FindAllStringSubmatch(line, -1) {
			k, _ := strconv.Atoi(m[1])
			n += k
		}
		return n
	}
	if m := regexp.MustCompile(`(?m)^  fill replies: (.*)$`).FindStringSubmatch(report); m == nil || authReplies(m[1]) != 20 {
		t.Errorf("fill replies do not account for 20 AUTH attempts: %q", m)
	}
	if !regexp.MustCompile(`(?m)^  after the fill, alice with the right password from 127\.250\.0\.1 \(fresh /24\): (accepted \(235\)|refused: AUTH PLAIN: 454)`).MatchString(report) {
		t.Errorf("no result for the user after the fill")
	}
	if m := regexp.MustCompile(`(?m)^  AUTH replies \(all sent at once, answered within [0-9.]+s\): (.*)$`).FindStringSubmatch(report); m == nil || authReplies(m[1]) != 6 {
		t.Errorf("parallel AUTH replies do not account for 6 attempts: %q", m)
	}
	if !regexp.MustCompile(`(?m)^  slowloris \(data\) from one address \(127\.30\.0\.1\) to 25, 4 slots, one byte per 200ms each: 4 open at the end of [0-9]+s, at most 4 at once; 4 admitted in all; refused: none$`).MatchString(report) {
		t.Errorf("slowloris: not every connection admitted and held")
	}
	if !regexp.MustCompile(`(?m)^  flood: \d+ AUTH attempts in [0-9.]+s`).MatchString(report) {
		t.Errorf("no flood line")
	}
	// One summary row per scenario and port, with positive ratios and no
	// failed normal session (nothing here is big enough to refuse it).
	rows := regexp.MustCompile(`(?m)^ *(fill|parallel|slowloris|flood) +(25|587) +([0-9.]+) +([0-9.]+) +([0-9.]+) +[0-9./]+ +[0-9./]+ +(\d+)/(\d+)$`).FindAllStringSubmatch(report, -1)
	if len(rows) != 8 {
		t.Fatalf("%d summary rows, want 8", len(rows))
	}
	for _, r := range rows {
		for _, f := range r[3:6] {
			if v, _ := strconv.ParseFloat(f, 64); !(v > 0) {
				t.Errorf("%s %s: ratio %q", r[1], r[2], f)
			}
		}
		if r[6] == "0" || r[7] != "0" {
			t.Errorf("%s %s: normal sessions ok/failed %s/%s", r[1], r[2], r[6], r[7])
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{nil, {"-relay", "x", "-scenarios", "smurf"}, {"-relay", "x", "-scenarios", ","},
		{"-relay", "x", "-fill-n", "0"}, {"-relay", "x", "-flood-rate", "0"}, {"-relay", "x", "-slow-time", "0s"}, {"-relay", "x", "extra"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	c, err := parseFlags([]string{"-relay", "x", "-scenarios", "flood,fill,flood"}, &bytes.Buffer{})
	if err != nil || strings.Join(c.scenarios, ",") != "fill,flood" {
		t.Fatalf("scenarios %v, %v", c, err)
	}
}

// The fill's addresses are distinct, 250 per /24, never the normal
// client's, and leave .251 free in every /24.
func TestFillAddr(t *testing.T) {
	seen := map[string]bool{}
	nets := map[string]int{}
	for i := range 3 * 256 * fillPerNet {
		a := fillAddr(i).IP.To4()
		if seen[a.String()] || a[0] != 127 || a[1] < 10 || a[3] == 0 || a[3] > fillPerNet || a.Equal(normalAddr.IP) {
			t.Fatalf("fillAddr(%d) = %v", i, a)
		}
		seen[a.String()] = true
		nets[a.Mask(net.CIDRMask(24, 32)).String()]++
	}
	for n, k := range nets {
		if k != fillPerNet {
			t.Fatalf("%s has %d fill addresses", n, k)
		}
	}
	for _, c := range []struct {
		j, n int
		want string
	}{{0, 1, "127.30.0.1"}, {999, 1, "127.30.0.1"}, {251, 1000, "127.30.1.2"}, {21, 20, "127.30.0.2"}} {
		if got := slowAddr(c.j, c.n).IP.String(); got != c.want {
			t.Errorf("slowAddr(%d, %d) = %s, want %s", c.j, c.n, got, c.want)
		}
	}
}

func TestStats(t *testing.T) {
	s := &series{}
	for i := 1; i <= 20; i++ {
		s.ok = append(s.ok, time.Duration(21-i)*time.Millisecond)
	}
	p50, p95, hi, ok := s.stats()
	if !ok || p50 != 10*time.Millisecond || p95 != 19*time.Millisecond || hi != 20*time.Millisecond {
		t.Fatalf("stats = %v %v %v %v", p50, p95, hi, ok)
	}
	if _, _, _, ok := (&series{}).stats(); ok {
		t.Fatal("stats of nothing")
	}
}
