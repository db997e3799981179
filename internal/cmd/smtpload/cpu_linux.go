//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat: USER_HZ,
// which Linux fixes at 100 for user space (proc(5)).
const clockTick = 10 * time.Millisecond

// procStat is what cpuOf needs from one /proc/PID/stat line (proc(5)).
type procStat struct {
	ppid int
	// own is utime+stime, reaped utime+stime of children the process
	// waited for (cutime+cstime).
	own, reaped time.Duration
}

// parseProcStat parses a /proc/PID/stat line. The command name (field 2)
// is in parentheses and may hold spaces and parentheses, so fields are
// counted after its last ')'.
func parseProcStat(line []byte) (procStat, error) {
	i := bytes.LastIndexByte(line, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("no command name in %q", line)
	}
	f := bytes.Fields(line[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("short stat line %q", line)
	}
	var n [5]int64
	for k, idx := range []int{1, 11, 12, 13, 14} {
		v, err := strconv.ParseInt(string(f[idx]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("stat field %d: %w", idx+3, err)
		}
		n[k] = v
	}
	return procStat{
		ppid:   int(n[0]),
		own:    time.Duration(n[1]+n[2]) * clockTick,
		reaped: time.Duration(n[3]+n[4]) * clockTick,
	}, nil
}

// cpuOf returns the CPU time (user and system) used so far by the
// processes roots and all their descendants, alive or reaped: a process
// tree such as a Postfix instance, whose master forks and reaps its
// daemons, counts whole.
func cpuOf(roots ...int) (time.Duration, error) {
	if len(roots) == 0 {
		return 0, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	stats := map[int]procStat{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		st, err := parseProcStat(b)
		if err != nil {
			return 0, err
		}
		stats[pid] = st
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var total time.Duration
	var walk func(pid int)
	walk = func(pid int) {
		st, ok := stats[pid]
		if !ok {
			return
		}
		total += st.own + st.reaped
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		if _, ok := stats[r]; !ok {
			return 0, fmt.Errorf("process %d is gone", r)
		}
		walk(r)
	}
	return total, nil
}

// selfCPU returns the CPU time this process used so far, without its
// children's.
func selfCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	st, err := parseProcStat(b)
	return st.own, err
}
