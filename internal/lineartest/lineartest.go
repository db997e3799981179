// Package lineartest checks, in tests, that code costs time in proportion
// to its input: that input an attacker shapes (a run of spaces, lines
// ending in bare LFs, a header sent a byte at a time, a field folded over
// thousands of lines) cannot make it do quadratic work. It implements no
// RFC.
package lineartest

import (
	"runtime"
	"time"
)

// TB is the part of testing.TB that Check uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// MaxRatio is how many times as long one run of f(k*n) may take as k runs
// of f(n) before Check fails: about 1 for linear code, about k for
// quadratic code, so k should be well above it (16, say).
const MaxRatio = 5

// Check fails t if f's cost grows far faster than its input. It compares
// one run of f(k*n) with k runs of f(n): the same work if the cost is
// linear, k times more if it is quadratic. Both take about as long and are
// timed in turn, so a busy machine or -race slows them alike. Each is the
// best of three rounds, or of up to six while the large input is more than
// MaxRatio times slower, which fails t.
func Check(t TB, n, k int, f func(n int)) {
	t.Helper()
	run := func(n, times int) time.Duration {
		runtime.GC()
		start := time.Now()
		for range times {
			f(n)
		}
		return time.Since(start)
	}
	run(n, 1) // warm up: first-use allocations
	small, large := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for i := 0; i < 6 && (i < 3 || large > MaxRatio*small); i++ {
		small = min(small, run(n, k))
		large = min(large, run(k*n, 1))
	}
	ratio := float64(large) / float64(small)
	if large > MaxRatio*small {
		t.Errorf("%d runs with input %d: %v; one with input %d: %v, %.1f times as long, want at most %d", k, n, small, k*n, large, ratio, MaxRatio)
	} else {
		t.Logf("%d runs with input %d: %v; one with input %d: %v, %.2f times as long", k, n, small, k*n, large, ratio)
	}
}
