// Package testsupport holds what tests across the tree share for waiting
// on other goroutines and processes: one Eventually instead of a
// hand-written poll loop in every test file. Only tests import it.
package testsupport

import (
	"fmt"
	"time"
)

// TB is the part of testing.TB that Eventually uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// PollInterval is how often Eventually asks again.
const PollInterval = 10 * time.Millisecond

// Eventually asks cond every PollInterval until it returns nil, and fails
// t with cond's last answer if that has not happened within timeout. cond
// runs on the calling goroutine, so it may call t.Fatal itself, and its
// error should say what was awaited and what was seen instead.
func Eventually(t TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("%v", err)
	}
}

// Poll is Eventually for callers that decide themselves what a timeout
// means (a check that only reports, a wait whose result is judged after):
// it returns nil once cond does, or an error carrying cond's last answer
// after timeout.
func Poll(timeout time.Duration, cond func() error) error {
	return PollEvery(timeout, PollInterval, cond)
}

// PollEvery is Poll asking every interval, for conditions too costly to
// ask every PollInterval (an RPC, a scan of /proc, a cloud API).
func PollEvery(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		time.Sleep(max(0, min(interval, time.Until(deadline)+time.Millisecond)))
	}
}
