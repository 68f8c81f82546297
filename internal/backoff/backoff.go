// Package backoff owns the one delay curve every restart and retry in
// Nightshift waits by: an initial delay multiplied after each failure in a
// row up to a cap, optionally jittered by a random number the caller
// injects, and reset by success. It only computes delays; waiting, and
// deciding what counts as success, stay with the caller, so the curve is
// pure and each caller's clock stays its own.
package backoff

import (
	"math"
	"time"
)

// Policy is one back-off curve.
type Policy struct {
	// Initial is the delay after the first failure. 0 means no delay at
	// all (restart at once).
	Initial time.Duration
	// Max caps every delay; 0 means no cap.
	Max time.Duration
	// Multiplier grows the delay after each further failure; 0 means 2,
	// and values below 1 mean 1 (a constant delay).
	Multiplier float64
	// Jitter is the fraction of each delay, from 0 to 1, that the random
	// number chooses: 0 is none; 0.5 ("equal jitter") waits between half
	// and all of it, which keeps many clients dropped together from
	// retrying in lockstep.
	Jitter float64
}

// Delay is the wait after failures failures in a row (fewer than 1 counts
// as 1: Initial), with r in [0,1) choosing within the jitter.
func (p Policy) Delay(failures int, r float64) time.Duration {
	if p.Initial <= 0 {
		return 0
	}
	limit := p.Max
	if limit <= 0 {
		limit = math.MaxInt64
	}
	d := p.Initial
	if d >= limit {
		d = limit
	} else if m := p.multiplier(); m > 1 {
		f := float64(d)
		for i := 1; i < failures && f < float64(limit); i++ {
			f *= m
		}
		if f >= float64(limit) {
			d = limit
		} else {
			d = time.Duration(f)
		}
	}
	spread := part(d, p.Jitter)
	return d - spread + part(spread, r)
}

// part is the fraction x (clamped to [0,1]) of d, without the overflow a
// float64 round trip of a duration near math.MaxInt64 would bring.
func part(d time.Duration, x float64) time.Duration {
	f := clamp01(x) * float64(d)
	if f >= float64(d) {
		return d
	}
	return time.Duration(f)
}

func (p Policy) multiplier() float64 {
	if p.Multiplier == 0 {
		return 2
	}
	return p.Multiplier
}

func clamp01(x float64) float64 {
	if x != x || x < 0 { // NaN or negative
		return 0
	}
	return min(x, 1)
}

// Backoff is a Policy with its count of failures in a row, for callers
// that retry in a loop. The zero count means nothing has failed yet.
type Backoff struct {
	Policy Policy
	// Rand returns numbers in [0,1) for the jitter; nil means the middle
	// of the jitter range (0.5), which is deterministic.
	Rand     func() float64
	failures int
}

// Next records one more failure and returns how long to wait before the
// next attempt.
func (b *Backoff) Next() time.Duration {
	if b.failures < math.MaxInt {
		b.failures++
	}
	r := 0.5
	if b.Rand != nil {
		r = b.Rand()
	}
	return b.Policy.Delay(b.failures, r)
}

// Reset forgets the failures: the next delay is Initial again.
func (b *Backoff) Reset() { b.failures = 0 }

// Failures is how many failures in a row Next has counted.
func (b *Backoff) Failures() int { return b.failures }
