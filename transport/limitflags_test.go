package transport

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// LimitFlags' defaults are the library's; CheckLimitFlags names the flag
// of a bad value and turns "0: off" into the Server's -1; CopyLimits
// copies every limit.
func TestLimitFlags(t *testing.T) {
	parse := func(args ...string) (*Server, error) {
		s := &Server{}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s.LimitFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return s, s.CheckLimitFlags()
	}
	s, err := parse()
	if err != nil || s.MaxMessageBytes != DefaultMaxMessageBytes || s.Timeouts.Stress != DefaultStressTimeout ||
		s.MaxJunkCommands != DefaultMaxJunkCommands || s.AuthQueueTimeout != DefaultAuthQueueTimeout {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	s, err = parse("-stress-timeout", "0", "-min-data-rate", "0", "-max-junk-commands", "-3", "-command-timeout", "40s")
	if err != nil || s.Timeouts.Stress != -1 || s.MinDataRate != -1 || s.MaxJunkCommands != -1 || s.Timeouts.Command != 40*time.Second {
		t.Fatalf("off: %+v %v", s, err)
	}
	var dst Server
	dst.CopyLimits(s)
	if dst.Timeouts != s.Timeouts || dst.MinDataRate != -1 || dst.MaxMessageBytes != s.MaxMessageBytes || dst.AuthFailureWindow != s.AuthFailureWindow {
		t.Fatalf("CopyLimits: %+v", &dst)
	}
	for _, bad := range [][]string{{"-max-connections-per-client", "0"}, {"-data-timeout", "-1s"}, {"-auth-max-concurrent", "-1"}} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%q: %v, want an error naming the flag", bad, err)
		}
	}
}
