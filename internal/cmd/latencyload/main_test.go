package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the children it starts (ip netns
// exec runs os.Executable with -role).
func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if a == "-role" {
			main()
			return
		}
	}
	os.Exit(m.Run())
}

// One small run through real namespaces and the delaying proxy, two
// rounds: the Connector with pipelining needs fewer round trips per
// message than without, every message reaches the sink (runParent checks
// the count), and both are reported against Postfix's smtp(8).
func TestLatencySmall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	probe := "mtl-probe-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v %s", err, out)
	}
	exec.Command("ip", "netns", "del", probe).Run()
	cfg := &config{n: 24, c: 2, size: 512, rounds: 2, rtt: 20 * time.Millisecond, delay: "proxy", senders: []string{"connector", "sequential", "postfix"}}
	withPostfix := true
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		if os.Getenv("MAILTLS_INTEROP") == "1" {
			t.Fatalf("MAILTLS_INTEROP=1 but Postfix is not installed: %v", err)
		}
		t.Logf("Postfix is not installed (%v): without the postfix sender", err)
		cfg.senders, withPostfix = cfg.senders[:2], false
	}
	var out bytes.Buffer
	if err := runParent(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	rtt := map[string][]float64{}
	for _, m := range regexp.MustCompile(`(?m)^[12]\s+(\w+)\s+\S+\s+\S+\s+(\S+)$`).FindAllStringSubmatch(out.String(), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		rtt[m[1]] = append(rtt[m[1]], v)
	}
	if len(rtt["connector"]) != 2 || len(rtt["sequential"]) != 2 {
		t.Fatalf("round trips per message by round: %v, want 2 rounds of each", rtt)
	}
	for _, s := range []string{"connector", "sequential"} {
		if !regexp.MustCompile(`(?m)^result ` + s + ` +msgs/s [0-9.]+ \[[0-9.]+, [0-9.]+\] RTT/msg [0-9.]+ \[[0-9.]+, [0-9.]+\]$`).MatchString(out.String()) {
			t.Errorf("no result line for %s", s)
		}
	}
	// Postfix's smtp(8) as the anchor: a ratio line per other sender.
	for _, s := range []string{"connector", "sequential"} {
		if withPostfix && !regexp.MustCompile(`(?m)^ratio `+s+`/postfix msgs/s [0-9.]+ \[[0-9.]+, [0-9.]+\] RTT/msg [0-9.]+ \[[0-9.]+, [0-9.]+\]$`).MatchString(out.String()) {
			t.Errorf("no ratio line for %s", s)
		}
	}
	if slices.Min(rtt["connector"]) == 0 || slices.Max(rtt["connector"]) >= slices.Min(rtt["sequential"]) {
		t.Errorf("round trips per message: %v, want pipelined < sequential in every round", rtt)
	}
}

func TestRetried(t *testing.T) {
	log := strings.Join([]string{
		"postfix/qmgr[1]: 4A: to=<r1@dest.example>, relay=none, delay=0.1, status=deferred (deferred transport)",
		"postfix/smtp[2]: 4B: to=<r2@dest.example>, relay=sink.example[10.201.0.2]:25, status=deferred (lost connection with sink.example)",
		"postfix/smtp[2]: 4B: to=<r2@dest.example>, relay=sink.example[10.201.0.2]:25, conn_use=2, status=sent (250 OK)",
	}, "\n")
	if n := retried([]byte(log)); n != 1 {
		t.Errorf("retried = %d, want 1", n)
	}
}
