package bench

import (
	"slices"
	"time"
)

// Median of ds; 0 for none. The upper middle is taken for an even count so
// that the result is always a real sample.
func Median(ds []time.Duration) time.Duration {
	return Percentile(ds, 50)
}

// Percentile p (0..100) of ds by nearest rank; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)) * p / 100)
	return s[min(max(i, 0), len(s)-1)]
}
