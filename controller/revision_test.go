package controller_test

import (
	"context"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/jobspec"
)

func TestStartRevision(t *testing.T) {
	v1 := jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"w"}}}
	v2 := jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"w"}, "env": map[string]any{"VERSION": "2"}}}
	rev := func(n int, s jobspec.Spec, who, outcome string) controller.Revision {
		r, err := controller.NewRevision("web", n, s, who, t0)
		if err != nil {
			t.Fatal(err)
		}
		r.Outcome = outcome
		return r
	}
	now := t0.Add(time.Hour)
	type write struct {
		n       int
		outcome string
	}
	cases := []struct {
		name        string
		revs        []controller.Revision
		file        jobspec.Spec
		wantCurrent int
		wantWho     string
		wantWrites  []write
	}{
		{"a first start records the plan's spec as revision 1", nil, v1, 1, controller.WhoPlan, []write{{1, controller.RevisionCurrent}}},
		{"an unchanged file keeps its revision", []controller.Revision{rev(1, v1, controller.WhoPlan, controller.RevisionCurrent)}, v1, 1, controller.WhoPlan, nil},
		{"an edited file makes a new revision and supersedes the old",
			[]controller.Revision{rev(1, v1, controller.WhoPlan, controller.RevisionCurrent)}, v2, 2, controller.WhoPlan,
			[]write{{1, controller.RevisionSuperseded}, {2, controller.RevisionCurrent}}},
		{"what was rolled out stays while the file is unchanged",
			[]controller.Revision{rev(1, v1, controller.WhoPlan, controller.RevisionSuperseded), rev(2, v2, "ns.r.mgmt", controller.RevisionCurrent)},
			v1, 2, "ns.r.mgmt", nil},
		{"an edited file wins over what was rolled out",
			[]controller.Revision{rev(1, v1, controller.WhoPlan, controller.RevisionSuperseded), rev(2, v2, "ns.r.mgmt", controller.RevisionCurrent)},
			jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"w3"}}}, 3, controller.WhoPlan,
			[]write{{2, controller.RevisionSuperseded}, {3, controller.RevisionCurrent}}},
		{"with nothing in force the plan's revision is again",
			[]controller.Revision{rev(1, v1, controller.WhoPlan, controller.RevisionSuperseded)}, v1, 1, controller.WhoPlan,
			[]write{{1, controller.RevisionCurrent}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur, writes, err := controller.StartRevision("web", tc.revs, tc.file, now)
			if err != nil {
				t.Fatal(err)
			}
			if cur.Number != tc.wantCurrent || cur.Who != tc.wantWho || cur.Outcome != controller.RevisionCurrent {
				t.Errorf("current = %d by %s (%s), want %d by %s", cur.Number, cur.Who, cur.Outcome, tc.wantCurrent, tc.wantWho)
			}
			var got []write
			for _, w := range writes {
				got = append(got, write{w.Number, w.Outcome})
			}
			if len(got) != len(tc.wantWrites) {
				t.Fatalf("writes %v, want %v", got, tc.wantWrites)
			}
			for i := range got {
				if got[i] != tc.wantWrites[i] {
					t.Errorf("writes %v, want %v", got, tc.wantWrites)
				}
			}
		})
	}
}

func TestRevisionOfLaunch(t *testing.T) {
	cases := map[string]int{
		controller.LaunchID("web", "e1", 3, 17, 0): 3,
		"web.e1.d17.0":    0, // an older controller's id
		"web.r9.e1.d17.0": 0,
		"web.e1.r12.d1.2": 12,
	}
	for id, want := range cases {
		if got := controller.RevisionOfLaunch(id); got != want {
			t.Errorf("RevisionOfLaunch(%q) = %d, want %d", id, got, want)
		}
	}
}

// Workers show the revision they were launched with; an edited jobs file
// is a new revision, which only new workers run.
func TestWorkersShowTheirRevision(t *testing.T) {
	job := npJob(t, 1)
	r := newRig(t, job)
	r.tick()
	ids := r.runAll("web", false)
	st, err := r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	if rev := st[0].Revision; rev == nil || rev.Number != 1 || rev.Who != controller.WhoPlan {
		t.Fatalf("job revision %+v, want 1 from the plan", rev)
	}
	if w := st[0].Workers; len(w) != 1 || w[0].Revision != 1 {
		t.Fatalf("workers %+v, want one of revision 1", w)
	}
	digest1 := st[0].Revision.Digest

	r.jobs = []controller.Job{mustJob(t, "web", map[string]any{
		"engine": "npreserving",
		"policy": map[string]any{"n": 2, "drain_timeout": "30s", "deployable": "worker"},
		"health": map[string]any{"heartbeat_interval": "1s", "missing_timeout": "3s", "boot_timeout": "20s"},
		"worker": map[string]any{"command": []any{"/bin/worker"}, "env": map[string]any{"VERSION": "2"}},
	})}
	r.restart()
	r.tick()
	st, err = r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	if rev := st[0].Revision; rev == nil || rev.Number != 2 || rev.Digest == digest1 {
		t.Fatalf("job revision %+v after the file changed, want 2 with a new digest", rev)
	}
	byRev := map[int][]string{}
	for _, w := range st[0].Workers {
		byRev[w.Revision] = append(byRev[w.Revision], w.ID)
	}
	if len(byRev[1]) != 1 || byRev[1][0] != ids[0] || len(byRev[2]) != 1 {
		t.Errorf("workers by revision %v, want %s at 1 and a new one at 2", byRev, ids[0])
	}
	_, calls := r.prov.launched()
	if last := calls[len(calls)-1]; controller.RevisionOfLaunch(last.LaunchID) != 2 || last.SpecDigest != st[0].Revision.Digest {
		t.Errorf("last launch %s with digest %s, want revision 2's %s", last.LaunchID, last.SpecDigest, st[0].Revision.Digest)
	}
	revs, err := r.store.Revisions(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs[0].Outcome != controller.RevisionSuperseded || revs[1].Outcome != controller.RevisionCurrent {
		t.Errorf("stored revisions %+v, want 1 superseded and 2 current", revs)
	}
}
