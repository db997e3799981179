//go:build linux

package main

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// Fields 3.. of a real line; the command name (field 2) varies.
	rest := " S 4242 4300 4242 0 -1 4194560 1200 0 0 0 %s 0 0 20 0 1 0 123 1000 10 18446744073709551615"
	for _, tc := range []struct {
		name, comm, times string
		want              procStat
		err               bool
	}{
		{"plain", "(smtpd)", "150 25 7 3", procStat{ppid: 4242, own: 1750 * time.Millisecond, reaped: 100 * time.Millisecond}, false},
		{"spaces and parentheses in the name", "(a) (b c) ) x)", "1 2 3 4", procStat{ppid: 4242, own: 30 * time.Millisecond, reaped: 70 * time.Millisecond}, false},
		{"no name", "smtpd", "1 2 3 4", procStat{}, true},
		{"not a number", "(x)", "1 two 3 4", procStat{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := "4300 " + tc.comm + strings.Replace(rest, "%s", tc.times, 1) + "\n"
			got, err := parseProcStat([]byte(line))
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := parseProcStat([]byte("1 (x) S 0 1 2")); err == nil {
		t.Error("a short line was accepted")
	}
}

// TestCPUOfTree: cpuOf counts a tree's CPU whether the work was done by a
// descendant that was reaped (its time is in the parent's cutime) or by
// one still alive, and agrees with what wait4(2) reports for the whole
// tree at its end.
func TestCPUOfTree(t *testing.T) {
	const burn = `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`
	for _, tc := range []struct{ name, script string }{
		{"reaped descendant", "(" + burn + "); echo ready; read x || :"},
		{"live descendant", "(" + burn + "; echo ready; read x || :)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "ready\n" {
				t.Fatalf("read %q, %v", l, err)
			}
			got, err := cpuOf(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			in.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			total := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			t.Logf("cpuOf %v, wait4 %v", got, total)
			if got < 50*time.Millisecond {
				t.Errorf("cpuOf = %v: the descendant's work is missing (wait4 says %v)", got, total)
			}
			if d := total - got; d < -20*time.Millisecond || d > 40*time.Millisecond {
				t.Errorf("cpuOf = %v, wait4 %v after exit", got, total)
			}
		})
	}
	if _, err := cpuOf(1 << 30); err == nil {
		t.Error("a PID that does not exist was measured")
	}
}
