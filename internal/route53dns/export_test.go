package route53dns

import (
	"context"
	"time"

	"nightshift/internal/backoff"
)

// SetRetry replaces z's throttling back-off and its waiting, and its
// clock for resolving, so tests neither sleep nor wait out a back-off.
func SetRetry(z *Zone, p backoff.Policy, attempts int, sleep func(context.Context, time.Duration) error, now func() time.Time) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.retry, z.attempts, z.sleep, z.now = p, attempts, sleep, now
}
