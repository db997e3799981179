package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the re-executed child: the parent
// (TestLoadOneRound) starts os.Executable, which is this binary.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, cancel := context.WithCancel(context.Background())
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		cancel()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestLoadOneRound runs the whole command, children included, with tiny
// counts and checks the report: every target measured and confirmed by its
// server, and a ratio line per target with positive figures.
func TestLoadOneRound(t *testing.T) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, []string{"-n", "6", "-c", "2", "-per-conn", "2", "-size", "300", "-rounds", "1",
		"-targets", "gosmtp,mailtls,queue,relay", "-spool", t.TempDir(), "-timeout", "50s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	t.Logf("report:\n%s", report)
	for _, target := range []string{"gosmtp", "mailtls", "queue", "relay"} {
		if !regexp.MustCompile(`(?m)^round 1 ` + target + ` +6 msgs in [0-9.]+s = [0-9.]+ msgs/s`).MatchString(report) {
			t.Errorf("no round line for %s", target)
		}
		suffix := "$"
		if target == "relay" {
			suffix = ` \(its log has [0-9]+ lines\)$`
		}
		if !regexp.MustCompile(`(?m)^accepted ` + target + ` +6` + suffix).MatchString(report) {
			t.Errorf("%s did not confirm 6 accepted messages", target)
		}
	}
	// The relay's round ends when the sink has every message.
	if !regexp.MustCompile(`(?m)^round 1 relay +6 msgs in [0-9.]+s = [0-9.]+ msgs/s \(end to end; all accepted after [0-9.]+s\)$`).MatchString(report) {
		t.Errorf("relay round line is not end to end")
	}
	if !regexp.MustCompile(`(?m)^accepted sink +6 over [1-6] connections \([0-9.]+ messages each\)$`).MatchString(report) {
		t.Errorf("the sink did not confirm 6 delivered messages")
	}
	re := regexp.MustCompile(`(?m)^ratio (mailtls|queue|relay)/gosmtp median ([0-9.]+) min ([0-9.]+) max ([0-9.]+)$`)
	ms := re.FindAllStringSubmatch(report, -1)
	if len(ms) != 3 {
		t.Fatalf("%d ratio lines, want 3", len(ms))
	}
	for _, m := range ms {
		med, _ := strconv.ParseFloat(m[2], 64)
		lo, _ := strconv.ParseFloat(m[3], 64)
		hi, _ := strconv.ParseFloat(m[4], 64)
		if !(med > 0 && lo <= med && med <= hi) {
			t.Errorf("ratio %s: median %v min %v max %v", m[1], med, lo, hi)
		}
	}
	// CPU per message, for every target (Linux: /proc). Six messages take
	// less than the 10 ms the counters count in, so only the lines are
	// checked here; TestCPUOfTree checks the figures.
	if runtime.GOOS == "linux" {
		cpu := regexp.MustCompile(`(?m)^cpu (gosmtp|mailtls|queue) +[0-9]+ µs/msg in its processes, [0-9]+ µs/msg in the load process$`)
		if n := len(cpu.FindAllString(report, -1)); n != 3 {
			t.Errorf("%d cpu lines, want 3", n)
		}
		// The relay's line gives its sink's share too.
		if !regexp.MustCompile(`(?m)^cpu relay +[0-9]+ µs/msg in its processes \([0-9]+ in its sink\), [0-9]+ µs/msg in the load process$`).MatchString(report) {
			t.Error("no cpu line for the relay with its sink's share")
		}
	}
	if !strings.HasPrefix(report, "smtpload ") || !strings.Contains(report, " c=2 n=6 size=300 per-conn=2 mode=DATA rounds=1 ") {
		t.Errorf("header line: %q", strings.SplitN(report, "\n", 2)[0])
	}
}

// TestFlags: bad values are refused with the flag named; gosmtp is always
// a target.
func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-c", "0"}, {"-n", "0"}, {"-size", "10"}, {"-per-conn", "0"},
		{"-rounds", "0"}, {"-targets", "exim"}, {"-serve", "x"}, {"-serve", "postfix"}, {"extra"},
		{"-profile-name", "../x"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	c, err := parseFlags([]string{"-targets", "queue"}, &bytes.Buffer{})
	if err != nil || strings.Join(c.targets, ",") != "gosmtp,queue" {
		t.Fatalf("targets %v, %v", c, err)
	}
	c, err = parseFlags(nil, &bytes.Buffer{})
	if err != nil || strings.Join(c.targets, ",") != "gosmtp,mailtls,queue,relay,postfix,postfix-relay" {
		t.Fatalf("default targets %v, %v", c, err)
	}
}

// TestPostfixUnavailable: without Postfix (or root) the postfix target is
// skipped with a message, or refused with -require-postfix. Skipped where
// Postfix can run (the full command then starts it; see README).
func TestPostfixUnavailable(t *testing.T) {
	why := postfixUnavailable()
	if why == "" {
		t.Skip("Postfix can run here")
	}
	var out, errb bytes.Buffer
	args := []string{"-n", "2", "-c", "1", "-rounds", "1", "-targets", "postfix", "-spool", t.TempDir(), "-timeout", "30s"}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "skipping the postfix targets: "+why) || strings.Contains(out.String(), "result postfix") {
		t.Errorf("report:\n%s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), append(args, "-require-postfix"), &out, &errb); code != 1 || !strings.Contains(errb.String(), why) {
		t.Errorf("-require-postfix: exit %d, stderr %q", code, errb.String())
	}
}

// TestPostfixTargets runs both Postfix targets for real (a few messages):
// the discarding instance and the one relaying to its own TLS sink with
// verify, next to the relay target; every message must be confirmed by
// Postfix's log and, for the relays, by the sinks. In CI
// (MAILTLS_INTEROP=1) a missing Postfix fails the test.
func TestPostfixTargets(t *testing.T) {
	if why := postfixUnavailable(); why != "" {
		if os.Getenv("MAILTLS_INTEROP") == "1" {
			t.Fatalf("MAILTLS_INTEROP=1 but %s", why)
		}
		t.Skip(why)
	}
	var out, errb bytes.Buffer
	prof := t.TempDir()
	args := []string{"-n", "20", "-c", "2", "-per-conn", "5", "-rounds", "2", "-targets", "relay,postfix,postfix-relay",
		"-spool", t.TempDir(), "-timeout", "90s", "-require-postfix", "-cpuprofile", prof}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"its log shows 40 discarded", "its log shows 40 sent to its sink", "accepted pfsink  40",
		"accepted sink    40", "ratio relay/postfix-relay median", "cpu postfix-relay/relay ", " without the sinks)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the report:\n%s", want, out.String())
		}
	}
	// Every Go process has profiles of its own (CPU and allocations): the
	// two sinks do not share one file.
	if !regexp.MustCompile(`(?m)^cpu postfix-relay [0-9]+ µs/msg in its processes \([0-9]+ in its sink\), `).MatchString(out.String()) {
		t.Errorf("no cpu line for postfix-relay with its sink's share:\n%s", out.String())
	}
	for _, name := range []string{"load", "gosmtp", "relay", "sink", "pfsink"} {
		for _, ext := range []string{".pprof", ".allocs"} {
			if fi, err := os.Stat(filepath.Join(prof, name+ext)); err != nil || fi.Size() == 0 {
				t.Errorf("profile %s%s: %v", name, ext, err)
			}
		}
	}
}

// checkRelayLog refuses fewer than two log lines a message, the floor
// run holds the relay to (none means its logging was off).
func TestCheckRelayLog(t *testing.T) {
	for _, tt := range []struct {
		msgs, lines int64
		ok          bool
	}{
		{6, 0, false}, {6, 11, false}, {6, 12, true}, {6, 35, true}, {0, 0, true}, {5000, 9999, false},
	} {
		if err := checkRelayLog(tt.msgs, tt.lines); (err == nil) != tt.ok {
			t.Errorf("checkRelayLog(%d, %d) = %v, want ok %v", tt.msgs, tt.lines, err, tt.ok)
		}
	}
}

func TestMakeBody(t *testing.T) {
	if len(makeBody(1024)) != 1024 || !strings.HasSuffix(makeBody(100), "\r\n") {
		t.Fatal("makeBody size")
	}
}
