package mgmt

import (
	"strings"
	"testing"
	"time"

	"nightshift/alert"
	"nightshift/alert/journal"
	"nightshift/bootlevel"
	"nightshift/controller"
)

func TestMergeOrdersAndFilters(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	hist := []bootlevel.Event{
		{Seq: 1, Time: at(0), Kind: "level.start", Level: 1},
		{Seq: 2, Time: at(2), Kind: "step.start", Service: "echo", Step: "boot"},
		{Seq: 3, Time: at(2), Kind: "service.state", Service: "echo", State: "ready"},
		{Seq: 4, Time: at(9), Kind: "step.failed", Service: "db", Step: "ready"},
	}
	decs := []controller.Decision{
		{Seq: 7, Time: at(2), Job: "work", Reason: "queue 40", Target: 4},
		{Seq: 8, Time: at(5), Job: "sleep", Reason: "n=3", Target: 3},
	}
	alerts := []journal.Record{
		{Time: at(2), Event: &alert.Event{Key: "nightshift/r/pool_blocked/work", Job: "work", Kind: alert.PoolBlocked, Severity: "critical", Status: alert.Firing, Summary: "pool work is blocked"}},
		{Time: at(3), Delivery: &journal.Delivery{Sink: "pager", Key: "nightshift/r/pool_blocked/work", Status: alert.Firing, Result: journal.Failed, Attempts: 4, Error: "503"}},
		{Time: at(9), Event: &alert.Event{Key: "nightshift/r/pool_blocked/work", Job: "work", Kind: alert.PoolBlocked, Severity: "critical", Status: alert.Resolved, Summary: "pool work recovered"}},
	}
	type key struct {
		typ string
		seq int64
	}
	cases := []struct {
		name string
		f    EventFilter
		want []key
	}{
		{"all, in time order, history then decisions then alerts at a tie", EventFilter{}, []key{{"level.start", 1}, {"step.start", 2}, {"service.state", 3}, {"decision", 7}, {"alert.firing", 10}, {"alert.delivery", 11}, {"decision", 8}, {"step.failed", 4}, {"alert.resolved", 12}}},
		{"one service", EventFilter{Service: "echo"}, []key{{"step.start", 2}, {"service.state", 3}}},
		{"one job", EventFilter{Job: "work"}, []key{{"decision", 7}, {"alert.firing", 10}, {"alert.resolved", 12}}},
		{"alerts", EventFilter{Type: "alert"}, []key{{"alert.firing", 10}, {"alert.delivery", 11}, {"alert.resolved", 12}}},
		{"a type", EventFilter{Type: "decision"}, []key{{"decision", 7}, {"decision", 8}}},
		{"a type's family", EventFilter{Type: "step"}, []key{{"step.start", 2}, {"step.failed", 4}}},
		{"since", EventFilter{Since: at(5)}, []key{{"decision", 8}, {"step.failed", 4}, {"alert.resolved", 12}}},
		{"nothing matches", EventFilter{Service: "nope"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []key
			for _, e := range Merge(hist, decs, alerts, 10, c.f) {
				got = append(got, key{e.Type, e.Seq})
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
	if line := EventLine(FromDecision(decs[0])); !strings.Contains(line, "job/work") || !strings.Contains(line, "target 4: queue 40") {
		t.Errorf("decision line %q", line)
	}
	if line := EventLine(FromAlert(alerts[1], 11)); !strings.Contains(line, "alert.delivery") || !strings.Contains(line, "firing to pager: failed after 4 attempts (503)") {
		t.Errorf("delivery line %q", line)
	}
	if line := EventLine(FromAlert(alerts[0], 10)); !strings.Contains(line, "job/work") || !strings.Contains(line, "pool_blocked (critical): pool work is blocked") {
		t.Errorf("alert line %q", line)
	}
	if line := EventLine(StreamEvent{Time: t0, Source: "run", Type: "x", Message: "a\x1b[2Jb"}); strings.Contains(line, "\x1b") {
		t.Errorf("event line not escaped: %q", line)
	}
}
