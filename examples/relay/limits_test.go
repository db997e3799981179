package main

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/transport"
)

// TestLimitFlags: every limit flag reaches every listener's
// transport.Server, and the defaults are the library's.
func TestLimitFlags(t *testing.T) {
	tr := startRelay(t, "-max-message-size", "1000000", "-max-recipients", "7", "-max-connections", "90",
		"-max-connections-per-client", "3", "-command-timeout", "40s", "-data-timeout", "2m",
		"-stress-timeout", "0", "-min-data-rate", "2000", "-max-junk-commands", "30", "-auth-max-failures", "4", "-auth-max-network-failures", "20",
		"-auth-failure-window", "5m", "-auth-max-concurrent", "2", "-auth-queue-timeout", "3s")
	if len(tr.servers) != 3 {
		t.Fatalf("%d listeners", len(tr.servers))
	}
	want := transport.Server{MaxMessageBytes: 1000000, MaxRecipients: 7, MaxConnections: 90,
		MaxConnectionsPerClient: 3, Timeouts: transport.ServerTimeouts{Command: 40 * time.Second, Data: 2 * time.Minute, Stress: -1},
		MinDataRate: 2000, MaxJunkCommands: 30, AuthMaxFailures: 4, AuthMaxNetworkFailures: 20, AuthFailureWindow: 5 * time.Minute,
		AuthMaxConcurrent: 2, AuthQueueTimeout: 3 * time.Second}
	for _, l := range tr.servers {
		if got := limitsOf(l.srv); got != limitsOf(&want) {
			t.Errorf("%s: limits %+v, want %+v", l.name, got, limitsOf(&want))
		}
	}
	for _, l := range tr.servers[1:] {
		if l.srv.AuthLimitsFrom != tr.servers[0].srv {
			t.Errorf("%s keeps its own AUTH limits; want those of %s (one failure table and one set of password-check slots)", l.name, tr.servers[0].name)
		}
	}
	if got, want := tr.queue.MinFree, int64(1500000); got != want {
		t.Errorf("queue MinFree = %d, want 1.5 × -max-message-size = %d", got, want)
	}

	tr = startRelay(t)
	def := transport.Server{MaxMessageBytes: transport.DefaultMaxMessageBytes, MaxRecipients: transport.DefaultMaxRecipients,
		MaxConnections: transport.DefaultMaxConnections, MaxConnectionsPerClient: transport.DefaultMaxConnectionsPerClient,
		Timeouts: transport.ServerTimeouts{Command: transport.DefaultCommandTimeout, Data: transport.DefaultDataTimeout,
			Stress: transport.DefaultStressTimeout},
		MinDataRate: transport.DefaultMinDataRate, MaxJunkCommands: transport.DefaultMaxJunkCommands, AuthMaxFailures: transport.DefaultAuthMaxFailures,
		AuthMaxNetworkFailures: transport.DefaultAuthMaxNetworkFailures, AuthFailureWindow: transport.DefaultAuthFailureWindow,
		AuthQueueTimeout: transport.DefaultAuthQueueTimeout}
	for _, l := range tr.servers {
		if got := limitsOf(l.srv); got != limitsOf(&def) {
			t.Errorf("%s default limits %+v, want %+v", l.name, got, limitsOf(&def))
		}
	}

	for _, bad := range [][]string{{"-max-connections-per-client", "0"}, {"-data-timeout", "-1s"}, {"-auth-max-concurrent", "-1"}} {
		if _, err := parseFlags(append([]string{"-hostname", "relay.test"}, bad...), &strings.Builder{}); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("parseFlags(%q) = %v, want an error naming the flag", bad, err)
		}
	}
}

type limits struct {
	maxMsg                                       int64
	rcpts, conns, perClient, authFail, authNet   int
	authConc, minRate, junk                      int
	cmd, data, stress, authWindow, authQueueWait time.Duration
}

func limitsOf(s *transport.Server) limits {
	return limits{s.MaxMessageBytes, s.MaxRecipients, s.MaxConnections, s.MaxConnectionsPerClient,
		s.AuthMaxFailures, s.AuthMaxNetworkFailures, s.AuthMaxConcurrent, s.MinDataRate, s.MaxJunkCommands,
		s.Timeouts.Command, s.Timeouts.Data, s.Timeouts.Stress, s.AuthFailureWindow, s.AuthQueueTimeout}
}

// TestMaxConnectionsPerClientFlag: over real sockets, a client holding
// -max-connections-per-client connections gets 421 4.7.0 on the next one.
func TestMaxConnectionsPerClientFlag(t *testing.T) {
	tr := startRelay(t, "-max-connections-per-client", "2")
	greet := func() string {
		c, err := net.DialTimeout("tcp", tr.Addr("smtp"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return line
	}
	for i := range 2 {
		if g := greet(); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d: %q", i+1, g)
		}
	}
	if g := greet(); !strings.HasPrefix(g, "421 4.7.0 ") {
		t.Fatalf("third connection from the same address: %q, want 421 4.7.0", g)
	}
}
