package nightshift

import "testing"

func TestCanMoveTo(t *testing.T) {
	cases := []struct {
		from, to InstanceState
		want     bool
	}{
		{"", StateRequested, true},
		{StateRequested, StatePending, true},
		{StatePending, StateRunning, true},
		{StateRunning, StatePending, false}, // stale
		{StateRunning, StateRunning, false}, // duplicate
		{StateRunning, StateTerminating, true},
		{StateTerminated, StateRunning, false},
		{StateFailed, StateTerminated, true},
		{StateFailed, StateRunning, false},
		{StatePending, StateFailed, true},
		{StateRejected, StateTerminated, false},
		{StateRunning, "bogus", false},
	}
	for _, c := range cases {
		if got := c.from.CanMoveTo(c.to); got != c.want {
			t.Errorf("%q -> %q = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

func TestLiveAndParse(t *testing.T) {
	if !StatePending.Live() || StateTerminated.Live() || StateFailed.Live() {
		t.Fatal("Live misclassifies states")
	}
	if _, err := ParseInstanceState("runnning"); err == nil {
		t.Fatal("typo state accepted")
	}
	if !HealthMissing.Unhealthy() || !HealthNeverHeard.Unhealthy() || HealthOK.Unhealthy() || HealthBooting.Unhealthy() {
		t.Fatal("Unhealthy misclassifies")
	}
}
