package stats

import "testing"

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		v           []float64
		med, lo, hi float64
	}{
		{[]float64{3, 1, 2, 10}, 2.5, 1, 10},
		{[]float64{5, 1, 9}, 5, 1, 9},
		{[]float64{7}, 7, 7, 7},
	} {
		in := append([]float64(nil), tc.v...)
		med, lo, hi := Spread(tc.v)
		if med != tc.med || lo != tc.lo || hi != tc.hi {
			t.Errorf("Spread(%v) = %v %v %v, want %v %v %v", in, med, lo, hi, tc.med, tc.lo, tc.hi)
		}
		for i := range in {
			if in[i] != tc.v[i] {
				t.Fatalf("Spread sorted its argument: %v", tc.v)
			}
		}
	}
	if got := Format([]float64{0.5, 0.25, 1}, "%.2f"); got != "0.50 [0.25, 1.00]" {
		t.Errorf("Format = %q", got)
	}
}
