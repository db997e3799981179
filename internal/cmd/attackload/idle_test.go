//go:build linux

package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// maxIdleKiB is issue 13's bound on the relay's resident memory growth
// per idle connection after STARTTLS.
const maxIdleKiB = 64

// TestIdleMemory runs the idle scenario with 500 connections against a
// relay built from this tree (without the race detector: it is the
// relay's memory that is measured, in its own process) and fails when
// an idle connection costs more than maxIdleKiB of the relay's resident
// memory, when the normal client fails, or when the per-address cap or
// the connection cap no longer act.
func TestIdleMemory(t *testing.T) {
	relay := buildRelay(t)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"-relay", relay, "-dir", t.TempDir(), "-scenarios", "idle", "-baseline", "3", "-gap", "20ms",
		"-idle-n", "500", "-idle-time", "2s", "-timeout", "80s", "-relay-arg=-log-level=warn"}
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	t.Logf("report:\n%s", report)
	if !regexp.MustCompile(`(?m)^  idle connections to 25 .*: 500 of 500 open; dials: 500 × ok$`).MatchString(report) {
		t.Errorf("not every idle connection opened")
	}
	m := regexp.MustCompile(`(?m)^  idle table: N=500 .* per-conn=([0-9.]+) KiB$`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no per-connection figure")
	}
	if kib, _ := strconv.ParseFloat(m[1], 64); !(kib > 0 && kib <= maxIdleKiB) {
		t.Errorf("relay RSS growth per idle connection %s KiB, want (0, %d]", m[1], maxIdleKiB)
	}
	if !regexp.MustCompile(`(?m)^  one more connection from 127\.60\.0\.1 \(holding 50\): greeting: 421 4\.7\.0 `).MatchString(report) {
		t.Errorf("the per-address cap did not refuse the 51st connection")
	}
	// 10 past the cap, less the slot the normal client may hold then.
	if m := regexp.MustCompile(`(?m)^  the idle connections then: .*\b(9|10) × 421 4\.7\.0 mx\.load\.test Server busy, closing idle connection`).FindStringSubmatch(report); m == nil {
		t.Errorf("the connection cap did not evict 9 or 10 idle connections")
	}
	// The normal client's sessions on 25 all succeed, the slowest within
	// maxNormal (connect to QUIT, a 250 for its message included).
	const maxNormal = 10 * time.Second
	row := regexp.MustCompile(`(?m)^ +idle +25 +\S+ +\S+ +\S+ +\S+ +[0-9.]+/[0-9.]+/([0-9.]+) +(\d+)/(\d+)$`).FindStringSubmatch(report)
	if row == nil {
		t.Fatalf("no summary row for 25")
	}
	if hi, _ := strconv.ParseFloat(row[1], 64); row[2] == "0" || row[3] != "0" || hi > maxNormal.Seconds() {
		t.Errorf("normal client on 25 while idle: %s ok, %s failed, slowest %ss (bound %s)", row[2], row[3], row[1], maxNormal)
	}
}
