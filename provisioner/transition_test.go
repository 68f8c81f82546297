package provisioner_test

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/envelope"
	"nightshift/provisioner"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestApplyOnlyMovesForward(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		from, to nightshift.InstanceState
		want     bool
	}{
		{nightshift.StateRequested, nightshift.StatePending, true},
		{nightshift.StateRequested, nightshift.StateRunning, true},
		{nightshift.StateRunning, nightshift.StatePending, false},
		{nightshift.StateRunning, nightshift.StateRunning, false},
		{nightshift.StateTerminated, nightshift.StateRunning, false},
		{nightshift.StateFailed, nightshift.StateTerminated, true},
		{nightshift.StateRejected, nightshift.StateTerminated, false},
		{nightshift.StateRunning, "exploded", false},
	}
	for _, c := range cases {
		in := provisioner.Instance{ID: "a", State: c.from, History: []provisioner.Change{{State: c.from, Time: t0}}}
		out, ok := provisioner.Apply(in, c.to, "why", t0.Add(time.Second))
		if ok != c.want {
			t.Errorf("%s -> %s: moved=%v, want %v", c.from, c.to, ok, c.want)
			continue
		}
		if !ok {
			if out.State != c.from || len(out.History) != 1 {
				t.Errorf("%s -> %s: refused move changed the record: %+v", c.from, c.to, out)
			}
			continue
		}
		if out.State != c.to || out.Reason != "why" || !out.Updated.Equal(t0.Add(time.Second)) ||
			len(out.History) != 2 || out.History[1].State != c.to || len(in.History) != 1 {
			t.Errorf("%s -> %s: got %+v (input history %d)", c.from, c.to, out, len(in.History))
		}
	}
}

func TestPlanReconcile(t *testing.T) {
	rec := func(id string, s nightshift.InstanceState) provisioner.Instance {
		return provisioner.Instance{ID: id, State: s}
	}
	own := func(id string) provisioner.Owned { return provisioner.Owned{Run: "r", InstanceID: id} }
	cases := []struct {
		name    string
		records []provisioner.Instance
		owned   []provisioner.Owned
		want    map[string]provisioner.ActionKind // id -> action; absent: nothing
	}{
		{"in sync", []provisioner.Instance{rec("a", nightshift.StateRunning)}, []provisioner.Owned{own("a")}, nil},
		{"recorded, never launched", []provisioner.Instance{rec("a", nightshift.StateRequested), rec("b", nightshift.StatePending)}, nil,
			map[string]provisioner.ActionKind{"a": provisioner.ActLaunch, "b": provisioner.ActLaunch}},
		{"launched, not recorded", []provisioner.Instance{rec("a", nightshift.StatePending)}, []provisioner.Owned{own("a")},
			map[string]provisioner.ActionKind{"a": provisioner.ActAdopt}},
		{"orphan", nil, []provisioner.Owned{own("x")}, map[string]provisioner.ActionKind{"x": provisioner.ActKillOrphan}},
		{"zombie of a terminal record", []provisioner.Instance{rec("a", nightshift.StateTerminated)}, []provisioner.Owned{own("a")},
			map[string]provisioner.ActionKind{"a": provisioner.ActKillOrphan}},
		{"vanished", []provisioner.Instance{rec("a", nightshift.StateRunning), rec("b", nightshift.StateStarted)}, nil,
			map[string]provisioner.ActionKind{"a": provisioner.ActDisappeared, "b": provisioner.ActDisappeared}},
		{"half-done termination", []provisioner.Instance{rec("a", nightshift.StateTerminating), rec("b", nightshift.StateTerminating)}, []provisioner.Owned{own("a")},
			map[string]provisioner.ActionKind{"a": provisioner.ActTerminate, "b": provisioner.ActTerminate}},
		{"terminal records need nothing", []provisioner.Instance{rec("a", nightshift.StateFailed), rec("b", nightshift.StateRejected)}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]provisioner.ActionKind{}
			for _, a := range provisioner.PlanReconcile(c.records, c.owned) {
				if _, dup := got[a.ID]; dup {
					t.Errorf("two actions for %s", a.ID)
				}
				got[a.ID] = a.Kind
			}
			if len(got) != len(c.want) {
				t.Fatalf("actions %v, want %v", got, c.want)
			}
			for id, k := range c.want {
				if got[id] != k {
					t.Errorf("%s: %s, want %s", id, got[id], k)
				}
			}
		})
	}
}

func TestInstanceIDIsDeterministicAndPathSafe(t *testing.T) {
	a, b := provisioner.InstanceID("web", "launch/../1", 3), provisioner.InstanceID("web", "launch/../1", 3)
	if a != b || a != "web-"+a[4:12]+"-3" || len(a) != len("web-12345678-3") {
		t.Errorf("InstanceID = %q, %q", a, b)
	}
	if provisioner.InstanceID("web", "other", 3) == a {
		t.Error("different launches share an instance id")
	}
}

// TestInstanceEventGolden pins the wire format other components decode.
func TestInstanceEventGolden(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	inst := provisioner.Instance{ID: "web-1a2b3c4d-0", Job: "web", LaunchID: "L1", Driver: "local", Host: "node1", PID: 4242,
		State: nightshift.StateRunning, Reason: "launched", Created: t0, Updated: t0.Add(time.Second),
		History: []provisioner.Change{
			{State: nightshift.StateRequested, Reason: "launch requested", Time: t0},
			{State: nightshift.StatePending, Reason: "launching", Time: t0},
			{State: nightshift.StateRunning, Reason: "launched", Time: t0.Add(time.Second)},
		}}
	env, err := envelope.NewEnvelope(provisioner.TypeInstance, 1, "r1", provisioner.Component, provisioner.InstanceEvent{Instance: inst}, t0)
	if err != nil {
		t.Fatal(err)
	}
	env.ID = "fixed-id"
	got, _ := json.MarshalIndent(env, "", "  ")
	got = append(got, '\n')
	golden := filepath.Join("testdata", "instance_event.golden.json")
	if *update {
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if string(got) != string(want) {
		t.Errorf("instance event wire format changed:\n%s\nwant:\n%s", got, want)
	}
	if _, body, err := provisioner.Messages().Decode(want, 0); err != nil {
		t.Errorf("golden event does not decode: %v", err)
	} else if ev := body.(*provisioner.InstanceEvent); ev.Instance.PID != 4242 || len(ev.Instance.History) != 3 {
		t.Errorf("decoded golden event = %+v", ev.Instance)
	}
}

func TestConfirmDisappearedNeedsTwoMissingListsAGapApart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gap := 30 * time.Second
	gone := func(id string) provisioner.Action {
		return provisioner.Action{Kind: provisioner.ActDisappeared, ID: id}
	}
	cases := []struct {
		name     string
		acts     []provisioner.Action
		missed   map[string]time.Time
		now      time.Time
		wantActs []string
		wantNext map[string]time.Time
	}{
		{name: "first miss is remembered, not acted on",
			acts: []provisioner.Action{gone("a")}, now: t0,
			wantNext: map[string]time.Time{"a": t0}},
		{name: "second miss a gap later is acted on",
			acts: []provisioner.Action{gone("a")}, missed: map[string]time.Time{"a": t0}, now: t0.Add(gap),
			wantActs: []string{"disappeared a"}, wantNext: map[string]time.Time{}},
		{name: "second miss too soon keeps waiting from the first",
			acts: []provisioner.Action{gone("a")}, missed: map[string]time.Time{"a": t0}, now: t0.Add(gap - time.Second),
			wantNext: map[string]time.Time{"a": t0}},
		{name: "a list that sees it again forgets the miss",
			acts: nil, missed: map[string]time.Time{"a": t0}, now: t0.Add(gap),
			wantNext: map[string]time.Time{}},
		{name: "other actions pass through at once",
			acts:   []provisioner.Action{{Kind: provisioner.ActKillOrphan, ID: "o"}, gone("b"), {Kind: provisioner.ActLaunch, ID: "l"}},
			missed: map[string]time.Time{"a": t0}, now: t0.Add(time.Minute),
			wantActs: []string{"kill-orphan o", "launch l"}, wantNext: map[string]time.Time{"b": t0.Add(time.Minute)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acts, next := provisioner.ConfirmDisappeared(tc.acts, tc.missed, tc.now, gap)
			var got []string
			for _, a := range acts {
				got = append(got, string(a.Kind)+" "+a.ID)
			}
			if !slices.Equal(got, tc.wantActs) {
				t.Errorf("actions %q, want %q", got, tc.wantActs)
			}
			if !maps.Equal(next, tc.wantNext) {
				t.Errorf("missed %v, want %v", next, tc.wantNext)
			}
		})
	}
}
