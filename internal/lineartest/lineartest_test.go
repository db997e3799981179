package lineartest

import (
	"fmt"
	"testing"
)

// recorder is a TB that keeps what Check reports.
type recorder struct{ errs, logs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

var sink int

// TestCheck: a loop over its input passes, a loop over every pair of its
// input's positions fails.
func TestCheck(t *testing.T) {
	linear := func(n int) {
		for i := range n * 64 {
			sink += i
		}
	}
	quadratic := func(n int) {
		for i := range n {
			for j := range n {
				sink += i ^ j
			}
		}
	}
	for _, c := range []struct {
		name string
		f    func(int)
		fail bool
	}{
		{"linear", linear, false},
		{"quadratic", quadratic, true},
	} {
		var r recorder
		Check(&r, 1<<10, 16, c.f)
		if (len(r.errs) > 0) != c.fail {
			t.Errorf("%s: errors %q, logs %q; want failure %v", c.name, r.errs, r.logs, c.fail)
		}
	}
}
