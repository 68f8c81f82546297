package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLease(t *testing.T) {
	reg := NewRegistry()
	l := NewLease(reg, "r1", "controller")
	for _, tc := range []struct {
		name          string
		do            func()
		active, epoch float64
	}{
		{"standby at start", func() {}, 0, 0},
		{"active", func() { l.Active(3) }, 1, 3},
		{"standby again", l.Standby, 0, 0},
	} {
		tc.do()
		if a, e := testutil.ToFloat64(l.active), testutil.ToFloat64(l.epoch); a != tc.active || e != tc.epoch {
			t.Errorf("%s: active %v epoch %v, want %v %v", tc.name, a, e, tc.active, tc.epoch)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "nightshift_lease_active", "nightshift_lease_epoch"); err != nil || n != 2 {
		t.Errorf("registry serves %d lease series (%v), want 2", n, err)
	}
}
