// Package stats summarises repeated measurements the way the load
// commands and benchmarks of this module report them: the median of the
// rounds with their minimum and maximum.
package stats

import (
	"fmt"
	"slices"
)

// Spread returns the median, minimum and maximum of v (not empty); the
// median of an even count is the mean of the middle two.
func Spread(v []float64) (med, lo, hi float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

// Format writes v's spread as "median [min, max]", each with verb f
// ("%.3f").
func Format(v []float64, f string) string {
	med, lo, hi := Spread(v)
	return fmt.Sprintf(f+" ["+f+", "+f+"]", med, lo, hi)
}
