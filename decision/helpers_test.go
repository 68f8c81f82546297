package decision

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift"
)

// t0 is the fixed "now" of every test snapshot.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// inst builds an Instance from a compact description:
//
//	"ID STATE HEALTH [busy] [age=DUR] [drain=DUR]"
//
// age is how long before t0 it was launched (default 1h); drain is how long
// before t0 it started draining.
func inst(t testing.TB, desc string) Instance {
	t.Helper()
	f := strings.Fields(desc)
	if len(f) < 3 {
		t.Fatalf("inst %q: want at least ID STATE HEALTH", desc)
	}
	in := Instance{ID: f[0], State: nightshift.InstanceState(f[1]), Health: nightshift.Health(f[2]), LaunchedAt: t0.Add(-time.Hour)}
	for _, opt := range f[3:] {
		switch {
		case opt == "busy":
			in.Busy = true
		case strings.HasPrefix(opt, "age="):
			in.LaunchedAt = t0.Add(-mustDur(t, opt[4:]))
		case strings.HasPrefix(opt, "drain="):
			in.DrainingSince = t0.Add(-mustDur(t, opt[6:]))
		default:
			t.Fatalf("inst %q: unknown option %q", desc, opt)
		}
	}
	return in
}

func insts(t testing.TB, descs ...string) []Instance {
	t.Helper()
	out := make([]Instance, 0, len(descs))
	for _, d := range descs {
		out = append(out, inst(t, d))
	}
	return out
}

func mustDur(t testing.TB, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// summary renders actions compactly for comparison:
// "terminate[a b] drain[c] launch 2".
func summary(acts []Action) string {
	var parts []string
	for _, a := range acts {
		switch a := a.(type) {
		case Launch:
			parts = append(parts, fmt.Sprintf("launch %d", a.Count))
		case Terminate:
			parts = append(parts, fmt.Sprintf("terminate[%s]", strings.Join(a.IDs, " ")))
		case Drain:
			parts = append(parts, fmt.Sprintf("drain[%s]", strings.Join(a.IDs, " ")))
		default:
			parts = append(parts, fmt.Sprintf("?%T", a))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func depth(n int) *int { return &n }

// checkReason fails unless every fragment appears in the reason.
func checkReason(t *testing.T, reason string, fragments ...string) {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(reason, f) {
			t.Errorf("reason %q does not contain %q", reason, f)
		}
	}
}

// launched sums Launch counts.
func launched(acts []Action) int {
	n := 0
	for _, a := range acts {
		if l, ok := a.(Launch); ok {
			n += l.Count
		}
	}
	return n
}

// removed lists every ID terminated or drained.
func removed(acts []Action) []string {
	var ids []string
	for _, a := range acts {
		switch a := a.(type) {
		case Terminate:
			ids = append(ids, a.IDs...)
		case Drain:
			ids = append(ids, a.IDs...)
		}
	}
	slices.Sort(ids)
	return ids
}
