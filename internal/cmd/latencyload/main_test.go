package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
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

// One small run through real namespaces and the delaying proxy: the
// Connector with pipelining needs fewer round trips per message than
// without, and every message reaches the sink (runParent checks the count).
func TestLatencySmall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	probe := "mtl-probe-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v %s", err, out)
	}
	exec.Command("ip", "netns", "del", probe).Run()
	cfg := &config{n: 24, c: 2, size: 512, rtt: 20 * time.Millisecond, delay: "proxy", senders: []string{"connector", "sequential"}}
	var out bytes.Buffer
	if err := runParent(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	rtt := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(\w+)\s+\S+\s+\S+\s+(\S+)$`).FindAllStringSubmatch(out.String(), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		rtt[m[1]] = v
	}
	if rtt["connector"] == 0 || rtt["sequential"] == 0 || rtt["connector"] >= rtt["sequential"] {
		t.Errorf("round trips per message: %v, want pipelined < sequential", rtt)
	}
}
