package backoff

import (
	"math"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	cases := []struct {
		name     string
		p        Policy
		failures int
		r        float64
		want     time.Duration
	}{
		{"first failure waits Initial", Policy{Initial: s, Max: 8 * s}, 1, 0, s},
		{"no failure yet counts as the first", Policy{Initial: s, Max: 8 * s}, 0, 0, s},
		{"doubles by default", Policy{Initial: s, Max: 8 * s}, 3, 0, 4 * s},
		{"capped at Max", Policy{Initial: s, Max: 8 * s}, 5, 0, 8 * s},
		{"Initial above Max is capped", Policy{Initial: 10 * s, Max: 8 * s}, 1, 0, 8 * s},
		{"zero Initial restarts at once", Policy{Max: 8 * s}, 7, 0.9, 0},
		{"other multiplier", Policy{Initial: 250 * ms, Max: 5 * s, Multiplier: 3}, 3, 0, 2250 * ms},
		{"multiplier 1 is constant", Policy{Initial: s, Max: 8 * s, Multiplier: 1}, 9, 0, s},
		{"multiplier below 1 is constant", Policy{Initial: s, Max: 8 * s, Multiplier: 0.5}, 9, 0, s},
		{"no Max: no cap", Policy{Initial: s}, 11, 0, 1024 * s},
		{"no Max: no overflow", Policy{Initial: s}, 1 << 30, 0, math.MaxInt64},
		{"huge failure count stays at Max", Policy{Initial: s, Max: 8 * s}, math.MaxInt, 0, 8 * s},
		{"equal jitter, low", Policy{Initial: 100 * ms, Max: 2 * s, Jitter: 0.5}, 1, 0, 50 * ms},
		{"equal jitter, middle", Policy{Initial: 100 * ms, Max: 2 * s, Jitter: 0.5}, 5, 0.5, 1200 * ms},
		{"equal jitter, high", Policy{Initial: 100 * ms, Max: 2 * s, Jitter: 0.5}, 1, 0.999999, 100 * ms},
		{"equal jitter at the cap", Policy{Initial: 100 * ms, Max: 2 * s, Jitter: 0.5}, 6, 0, s},
		{"full jitter", Policy{Initial: s, Max: 8 * s, Jitter: 1}, 2, 0.25, 500 * ms},
		{"jitter above 1 is full", Policy{Initial: s, Max: 8 * s, Jitter: 7}, 2, 0.25, 500 * ms},
		{"negative jitter is none", Policy{Initial: s, Max: 8 * s, Jitter: -1}, 2, 0.25, 2 * s},
		{"r out of range is clamped", Policy{Initial: s, Max: 8 * s, Jitter: 0.5}, 1, 5, s},
		{"NaN r is the low end", Policy{Initial: s, Max: 8 * s, Jitter: 0.5}, 1, math.NaN(), 500 * ms},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.p.Delay(c.failures, c.r)
			if diff := got - c.want; diff > time.Microsecond || diff < -time.Microsecond {
				t.Errorf("%+v.Delay(%d, %v) = %v, want %v", c.p, c.failures, c.r, got, c.want)
			}
		})
	}
}

func TestBackoffNextAndReset(t *testing.T) {
	draws := []float64{0, 0.999999, 0.5}
	b := Backoff{Policy: Policy{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond, Jitter: 0.5},
		Rand: func() float64 { r := draws[0]; draws = append(draws[1:], r); return r }}
	want := []time.Duration{50, 200, 225, 150, 300}
	for i, w := range want {
		if got := b.Next().Round(time.Millisecond); got != w*time.Millisecond {
			t.Fatalf("Next #%d = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if b.Failures() != len(want) {
		t.Errorf("Failures = %d, want %d", b.Failures(), len(want))
	}
	b.Reset()
	if b.Failures() != 0 {
		t.Errorf("Failures after Reset = %d", b.Failures())
	}
	if got := b.Next(); got != 75*time.Millisecond {
		t.Errorf("Next after Reset = %v, want Initial again (100ms, r=0.5: 75ms)", got)
	}

	plain := Backoff{Policy: Policy{Initial: time.Second, Jitter: 0.5}}
	if got := plain.Next(); got != 750*time.Millisecond {
		t.Errorf("Next without Rand = %v, want the middle of the jitter range", got)
	}
}

// FuzzDelay: any policy and inputs give a delay within [0, cap], never a
// panic or an overflow.
func FuzzDelay(f *testing.F) {
	f.Add(int64(time.Second), int64(8*time.Second), 2.0, 0.5, 3, 0.3)
	f.Add(int64(1), int64(0), 1.0001, 1.0, math.MaxInt, 0.99)
	f.Fuzz(func(t *testing.T, initial, max int64, mult, jitter float64, failures int, r float64) {
		if failures > 1<<20 && mult > 1 && mult < 1.001 {
			t.Skip("too slow a curve to climb in a fuzz run")
		}
		p := Policy{Initial: time.Duration(initial), Max: time.Duration(max), Multiplier: mult, Jitter: jitter}
		d := p.Delay(failures, r)
		if d < 0 {
			t.Fatalf("%+v.Delay(%d, %v) = %v < 0", p, failures, r, d)
		}
		if initial <= 0 && d != 0 {
			t.Fatalf("%+v.Delay = %v, want 0 for no Initial", p, d)
		}
		if max > 0 && d > time.Duration(max) {
			t.Fatalf("%+v.Delay(%d, %v) = %v over the cap", p, failures, r, d)
		}
	})
}
