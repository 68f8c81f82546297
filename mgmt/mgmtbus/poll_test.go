package mgmtbus

import (
	"testing"
	"time"
)

// TestPollWaitIsSizedToTheWorkLeft: teardown polls terminate_all often
// when little is left (the last worker's end is seen soon after it
// happens) and seldom while thousands are (each poll reads every live
// record beside the terminations it waits for), within bounds.
func TestPollWaitIsSizedToTheWorkLeft(t *testing.T) {
	for _, tc := range []struct {
		name       string
		live, prev int
		since      time.Duration
		want       time.Duration
	}{
		{"first poll of 10,000", 10000, -1, 0, time.Second},
		{"first poll of 100", 100, -1, 0, minPollWait},
		{"first poll of 100,000", 100000, -1, 0, maxPollWait},
		{"none ended since", 5000, 5000, time.Second, 500 * time.Millisecond},
		{"half left at 1,000/s", 4000, 8000, 4 * time.Second, 2 * time.Second},
		{"2,000 left at 2,000/s", 2000, 4000, time.Second, 500 * time.Millisecond},
		{"a few left", 10, 1000, 500 * time.Millisecond, minPollWait},
		{"far to go, slowly", 9000, 9100, time.Second, maxPollWait},
	} {
		if got := pollWait(tc.live, tc.prev, tc.since); got != tc.want {
			t.Errorf("%s: pollWait(%d, %d, %s) = %s, want %s", tc.name, tc.live, tc.prev, tc.since, got, tc.want)
		}
	}
}

// TestTerminateAllTimeoutGrowsWithThePool: the call that records every
// worker terminating before it answers gets more time for more workers.
func TestTerminateAllTimeoutGrowsWithThePool(t *testing.T) {
	if got := terminateAllTimeout(0); got != 10*time.Second {
		t.Errorf("no workers: %s, want 10s", got)
	}
	if got := terminateAllTimeout(10000); got != 20*time.Second {
		t.Errorf("10,000 workers: %s, want 20s", got)
	}
}
