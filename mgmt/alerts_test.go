package mgmt_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"nightshift/alert"
	"nightshift/alert/notify"
	"nightshift/mgmt"
)

// TestReadAlerts folds a journal: what fires now, what resolved within the
// window (newest first), and deliveries counted per episode and in all.
func TestReadAlerts(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	ev := func(kind alert.Kind, job string, st alert.Status, at time.Duration) notify.Record {
		e := alert.Once("r1", kind, job, alert.Critical, string(kind)+" "+job, nil, t0)
		e.Status, e.LastSeen = st, t0.Add(at)
		return notify.Record{Time: t0.Add(at), Event: &e}
	}
	dl := func(kind alert.Kind, job string, st alert.Status, result string) notify.Record {
		return notify.Record{Delivery: &notify.Delivery{Sink: "hook", Key: alert.Key("r1", kind, job), Status: st, Result: result}}
	}
	recs := []notify.Record{
		ev(alert.PoolBlocked, "old", alert.Firing, 0),
		ev(alert.PoolBlocked, "old", alert.Resolved, time.Minute), // outside the window
		ev(alert.PoolBlocked, "a", alert.Firing, 0),
		dl(alert.PoolBlocked, "a", alert.Firing, notify.Failed),
		dl(alert.PoolBlocked, "a", alert.Firing, notify.Delivered),
		ev(alert.PoolBlocked, "a", alert.Resolved, 2*time.Hour),
		dl(alert.PoolBlocked, "a", alert.Resolved, notify.Delivered),
		ev(alert.ReplacementFlapping, "b", alert.Firing, 2*time.Hour),
		ev(alert.ReplacementFlapping, "b", alert.Resolved, 3*time.Hour),
		ev(alert.PoolBlocked, "c", alert.Firing, 3*time.Hour),
		dl(alert.PoolBlocked, "c", alert.Firing, notify.Dropped),
	}
	l := mgmt.ReadAlerts(recs, t0.Add(4*time.Hour), 3*time.Hour)
	if len(l.Firing) != 1 || l.Firing[0].Job != "c" || l.Firing[0].Deliveries[notify.Dropped] != 1 {
		t.Errorf("firing = %+v, want c with one drop", l.Firing)
	}
	if len(l.Recent) != 2 || l.Recent[0].Job != "b" || l.Recent[1].Job != "a" {
		t.Fatalf("recent = %+v, want b then a", l.Recent)
	}
	if d := l.Recent[1].Deliveries; d[notify.Delivered] != 1 || d[notify.Failed] != 0 {
		t.Errorf("a's resolution deliveries %v, want one delivered", d)
	}
	if l.Deliveries[notify.Delivered] != 2 || l.Deliveries[notify.Failed] != 1 || l.Deliveries[notify.Dropped] != 1 {
		t.Errorf("totals %v", l.Deliveries)
	}
	var out bytes.Buffer
	mgmt.WriteAlerts(&out, l, func(s string) string { return strings.ReplaceAll(s, "\n", `\n`) })
	for _, want := range []string{"FIRING", "RESOLVED", "pool_blocked", "replacement_flapping", "[1 dropped]", "deliveries: [2 delivered, 1 failed, 1 dropped]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	empty := mgmt.ReadAlerts(nil, t0, time.Hour)
	out.Reset()
	mgmt.WriteAlerts(&out, empty, func(s string) string { return s })
	if !strings.Contains(out.String(), "no alerts firing") || empty.Firing == nil || empty.Recent == nil {
		t.Errorf("empty journal: %q %+v", out.String(), empty)
	}
}
