package provstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/cmdledger"
	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/provisioner"
)

// execFunc runs a raw statement on a backend's database, for tests that
// damage it on purpose.
type execFunc func(t *testing.T, stmt string)

// backend opens a fresh, empty store of one implementation.
type backend struct {
	name string
	open func(t *testing.T) (provisioner.Store, execFunc)
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) (provisioner.Store, execFunc) {
			s := open(t, filepath.Join(t.TempDir(), "p.db"))
			return s, func(t *testing.T, stmt string) {
				if _, err := s.db.Exec(stmt); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"postgres", func(t *testing.T) (provisioner.Store, execFunc) {
			s := openPG(t, pgtest.URL(), pgtest.Schema(t, "provstore"), leader.Fence{})
			return s, func(t *testing.T, stmt string) {
				if _, err := s.db.Pool.Exec(context.Background(), stmt); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
}

func openPG(t *testing.T, url, schema string, f leader.Fence) *PG {
	t.Helper()
	s, err := OpenPG(context.Background(), url, schema, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract holds both implementations of provisioner.Store to the
// same behaviour. PostgreSQL runs when it answers (NIGHTSHIFT_PG_URL or
// 127.0.0.1:5432); otherwise its half skips, or fails under
// NIGHTSHIFT_TEST_STRICT=1.
func TestContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range []struct {
				name string
				f    func(t *testing.T, s provisioner.Store, exec execFunc)
			}{
				{"LaunchIsRecordedOnce", testLaunchIsRecordedOnce},
				{"UpdateIsCompareAndSetWithHistory", testUpdateIsCompareAndSetWithHistory},
				{"CorruptStateIsReported", testCorruptStateIsReported},
				{"ConcurrentWritersOneWins", testConcurrentWritersOneWins},
				{"FiltersAndDisabledFlag", testFiltersAndDisabledFlag},
				{"DNSNameIsKeptThroughTransitions", testDNSNameIsKept},
				{"WorkerUIDIsKeptAndUniqueWhileLive", testWorkerUIDIsKept},
				{"HealthIsKeptForRunningWorkersOnly", testHealthIsKept},
				{"HealthsAreOneTransaction", testHealthsAreOneTransaction},
				{"RevisionsAreKept", testRevisionsAreKept},
				{"UpdatesAreGroupCommitted", testUpdatesAreGroupCommitted},
			} {
				t.Run(c.name, func(t *testing.T) {
					if b.name == "postgres" {
						pgtest.Need(t)
					}
					s, exec := b.open(t)
					c.f(t, s, exec)
				})
			}
		})
	}
}

// testConcurrentWritersOneWins: what the single SQLite writer gave for
// free must hold with concurrent PostgreSQL connections: of many writers
// recording one launch id exactly one creates it, of many moving one
// instance from the same state exactly one succeeds, and the history has
// one entry per accepted transition.
func testConcurrentWritersOneWins(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	const writers = 8
	var wg sync.WaitGroup
	created := make(chan bool, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 1, Created: now},
				[]provisioner.Instance{requested(fmt.Sprintf("i%d", w), "L1", 0, now)})
			if err != nil {
				t.Error(err)
			}
			created <- ok
		}()
	}
	wg.Wait()
	close(created)
	n := 0
	for ok := range created {
		if ok {
			n++
		}
	}
	all, _ := s.Instances(ctx, provisioner.Filter{LaunchID: "L1"})
	if n != 1 || len(all) != 1 {
		t.Fatalf("%d writers created launch L1, %d instances recorded; want 1 and 1", n, len(all))
	}
	cur := all[0]
	wins := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next, _ := provisioner.Apply(cur, nightshift.StateRunning, fmt.Sprintf("writer %d", w), now.Add(time.Second))
			wins <- s.UpdateInstance(ctx, next, nightshift.StateRequested)
		}()
	}
	wg.Wait()
	close(wins)
	n = 0
	for err := range wins {
		switch {
		case err == nil:
			n++
		case !errors.Is(err, provisioner.ErrConflict):
			t.Errorf("losing writer: %v, want ErrConflict", err)
		}
	}
	got, _ := s.Instance(ctx, cur.ID)
	if n != 1 || len(got.History) != 2 {
		t.Errorf("%d writers won, history %+v; want 1 and 2 entries", n, got.History)
	}
}

// testUpdatesAreGroupCommitted: UpdateInstances writes a burst of
// transitions as UpdateInstance would one at a time, skipping and
// reporting the stale ones in their slots; two moves of one instance in
// one burst both land, in order; a bad update writes nothing at all.
func testUpdatesAreGroupCommitted(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	const n = 300
	insts := make([]provisioner.Instance, n)
	for i := range insts {
		insts[i] = requested(fmt.Sprintf("i%03d", i), "L1", i, now)
	}
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: n, Created: now}, insts); err != nil {
		t.Fatal(err)
	}
	at := now.Add(time.Second)
	var ups []provisioner.Update
	for i, in := range insts {
		next, _ := provisioner.Apply(in, nightshift.StatePending, "launching", at)
		prev := nightshift.StateRequested
		if i%100 == 7 {
			prev = nightshift.StateRunning // stale: must be refused
		}
		ups = append(ups, provisioner.Update{Instance: next, Prev: prev})
	}
	conflicts, err := s.UpdateInstances(ctx, ups)
	if err != nil {
		t.Fatal(err)
	}
	// Two moves of one instance in one burst.
	run, _ := provisioner.Apply(ups[0].Instance, nightshift.StateRunning, "launched", at)
	run.Host = "h0"
	term, _ := provisioner.Apply(run, nightshift.StateTerminating, "terminate requested", at)
	twice, err := s.UpdateInstances(ctx, []provisioner.Update{{Instance: run, Prev: nightshift.StatePending}, {Instance: term, Prev: nightshift.StateRunning}})
	if err != nil || twice[0] != nil || twice[1] != nil {
		t.Fatalf("two moves of one instance: %v %v", twice, err)
	}
	if len(conflicts) != len(ups) {
		t.Fatalf("%d conflict slots for %d updates", len(conflicts), len(ups))
	}
	for k, u := range ups {
		stale := u.Prev == nightshift.StateRunning
		if stale != errors.Is(conflicts[k], provisioner.ErrConflict) || (!stale && conflicts[k] != nil) {
			t.Errorf("update %d (%s from %s): conflict = %v", k, u.Instance.ID, u.Prev, conflicts[k])
		}
	}
	all, err := s.Instances(ctx, provisioner.Filter{LaunchID: "L1"})
	if err != nil || len(all) != n {
		t.Fatalf("%d records, %v", len(all), err)
	}
	for i, got := range all {
		want := "requested,pending"
		switch {
		case i == 0:
			want = "requested,pending,running,terminating"
		case i%100 == 7:
			want = "requested"
		}
		var hs []string
		for _, h := range got.History {
			hs = append(hs, string(h.State))
		}
		if strings.Join(hs, ",") != want || string(got.State) != hs[len(hs)-1] {
			t.Errorf("%s: state %s history %v, want %s", got.ID, got.State, hs, want)
		}
	}
	if all[0].Host != "h0" {
		t.Errorf("host of the instance moved twice = %q", all[0].Host)
	}
	// A bad update in a burst writes nothing, not even the good ones.
	good, _ := provisioner.Apply(all[1], nightshift.StateRunning, "launched", at)
	bad := all[2]
	bad.History = nil
	if _, err := s.UpdateInstances(ctx, []provisioner.Update{{Instance: good, Prev: nightshift.StatePending}, {Instance: bad, Prev: bad.State}}); err == nil {
		t.Fatal("an update without a history entry was accepted")
	}
	if got, _ := s.Instance(ctx, all[1].ID); got.State != nightshift.StatePending {
		t.Errorf("failed burst wrote %s: %s", got.ID, got.State)
	}
}

func testFiltersAndDisabledFlag(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 2, Created: now},
		[]provisioner.Instance{requested("a", "L1", 0, now), requested("b", "L1", 1, now)})
	w := requested("c", "L2", 0, now.Add(time.Second))
	w.Job = "batch"
	s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L2", Job: "batch", Count: 1, Created: now}, []provisioner.Instance{w})
	for _, tc := range []struct {
		f    provisioner.Filter
		want string
	}{
		{provisioner.Filter{}, "[a b c]"},
		{provisioner.Filter{Job: "web"}, "[a b]"},
		{provisioner.Filter{LaunchID: "L2"}, "[c]"},
		{provisioner.Filter{IDs: []string{"c", "a"}}, "[a c]"},
		{provisioner.Filter{Job: "web", IDs: []string{"c"}}, "[]"},
		{provisioner.Filter{LiveOnly: true, Job: "batch"}, "[c]"},
	} {
		got, err := s.Instances(ctx, tc.f)
		var ids []string
		for _, in := range got {
			ids = append(ids, in.ID)
		}
		if err != nil || fmt.Sprint(ids) != tc.want {
			t.Errorf("Instances(%+v) = %v, %v; want %s", tc.f, ids, err, tc.want)
		}
	}
	if d, err := s.Disabled(ctx); d || err != nil {
		t.Fatalf("new store disabled: %v %v", d, err)
	}
	for _, want := range []bool{true, false} {
		if err := s.SetDisabled(ctx, want); err != nil {
			t.Fatal(err)
		}
		if d, err := s.Disabled(ctx); d != want || err != nil {
			t.Errorf("Disabled = %v %v, want %v", d, err, want)
		}
	}
}

// TestPGFencedWrites: a store opened with a fence writes while its holder
// leads; once another candidate took the lease over, every write of the
// old one (record, transition, flag, command ledger) fails with
// leader.ErrFenced, and the new leader's succeed.
func TestPGFencedWrites(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "provfence")
	ctx := context.Background()
	base := openPG(t, url, schema, leader.Fence{})
	cand := func(holder string) *leader.Lease {
		l, err := leader.New(ctx, leader.Config{DB: base.DB().Pool, Schema: schema, Name: "provisioner", Holder: holder, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := cand("a"), cand("b")
	fa, ok, err := a.TryAcquire(ctx)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	old := openPG(t, url, schema, fa)
	now := time.Unix(1700000000, 0).UTC()
	if _, _, err := old.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 1, Created: now},
		[]provisioner.Instance{requested("a", "L1", 0, now)}); err != nil {
		t.Fatalf("leader's write: %v", err)
	}
	// The lease is handed over (a release stands in for an expiry).
	if _, err := base.DB().Pool.Exec(ctx, `UPDATE leases SET expires_at = now()`); err != nil {
		t.Fatal(err)
	}
	fb, ok, err := b.TryAcquire(ctx)
	if !ok || err != nil || fb.Epoch != fa.Epoch+1 {
		t.Fatal(fb, ok, err)
	}
	cur, _ := old.Instance(ctx, "a")
	next, _ := provisioner.Apply(cur, nightshift.StateRunning, "late", now.Add(time.Second))
	_, _, errLaunch := old.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L2", Job: "web", Count: 1, Created: now},
		[]provisioner.Instance{requested("b", "L2", 0, now)})
	_, errLedger := old.Commands().Start(ctx, cmdledgerEntry(now))
	for what, err := range map[string]error{
		"CreateLaunch":   errLaunch,
		"UpdateInstance": old.UpdateInstance(ctx, next, nightshift.StateRequested),
		"SetDisabled":    old.SetDisabled(ctx, true),
		"ledger Start":   errLedger,
	} {
		if !errors.Is(err, leader.ErrFenced) {
			t.Errorf("deposed %s: %v, want ErrFenced", what, err)
		}
	}
	if got, _ := base.Instance(ctx, "a"); got.State != nightshift.StateRequested {
		t.Errorf("a deposed write landed: %+v", got)
	}
	if err := openPG(t, url, schema, fb).UpdateInstance(ctx, next, nightshift.StateRequested); err != nil {
		t.Errorf("new leader's write: %v", err)
	}
}

// TestPGSchemasAreApart: two runs' stores in one database see nothing of
// each other, and a store reopened on its schema finds its records.
func TestPGSchemasAreApart(t *testing.T) {
	url := pgtest.Need(t)
	ctx := context.Background()
	s1, s2 := pgtest.Schema(t, "provrun1"), pgtest.Schema(t, "provrun2")
	a := openPG(t, url, s1, leader.Fence{})
	if err := a.SetDisabled(ctx, true); err != nil {
		t.Fatal(err)
	}
	if d, _ := openPG(t, url, s2, leader.Fence{}).Disabled(ctx); d {
		t.Error("run 2 sees run 1's flag")
	}
	a.Close()
	if d, err := openPG(t, url, s1, leader.Fence{}).Disabled(ctx); !d || err != nil {
		t.Errorf("reopened store lost its flag: %v %v", d, err)
	}
}

func TestPGNewerSchemaIsRefused(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "provnewer")
	s := openPG(t, url, schema, leader.Fence{})
	if _, err := s.DB().Pool.Exec(context.Background(), `INSERT INTO schema_version (version, name) VALUES (99, 'future')`); err != nil {
		t.Fatal(err)
	}
	_, err := OpenPG(context.Background(), url, schema, leader.Fence{})
	if err == nil || !containsAll(err.Error(), "newer", schema) {
		t.Fatalf("err = %v, want refusal of a newer schema naming it", err)
	}
}

func TestPGCommandLedger(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "provledger")
	ctx := context.Background()
	s := openPG(t, url, schema, leader.Fence{})
	now := time.Unix(1700000000, 0).UTC()
	if _, err := s.Commands().Start(ctx, cmdledgerEntry(now)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commands().Finish(ctx, "c1", []byte(`{"live":3}`), now); err != nil {
		t.Fatal(err)
	}
	s.Close()
	e, err := openPG(t, url, schema, leader.Fence{}).Commands().Lookup(ctx, "c1")
	if err != nil || e.State != "done" || string(e.Reply) != `{"live":3}` || e.Attempts != 1 {
		t.Fatalf("after reopening: %+v, %v", e, err)
	}
	m, err := pgMigrations.ReadFile("pgmigrations/0001_init.sql")
	if err != nil || !strings.Contains(string(m), pgdb.LedgerSchema) {
		t.Errorf("pgmigrations/0001_init.sql does not hold pgdb.LedgerSchema (%v)", err)
	}
}

func cmdledgerEntry(now time.Time) cmdledger.Entry {
	return cmdledger.Entry{ID: "c1", Type: "t", Sig: "s", Started: now}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// testDNSNameIsKept: a worker's DNS name is recorded with its launch,
// before any record exists, and survives every transition, so a restarted
// provisioner finds the names its live workers hold.
func testDNSNameIsKept(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	a, b := requested("a", "L1", 0, now), requested("b", "L1", 1, now)
	a.DNSName = "web-0.r1.example.internal"
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 2, Created: now}, []provisioner.Instance{a, b}); err != nil {
		t.Fatal(err)
	}
	next := a
	next.State, next.Address, next.Updated = nightshift.StateRunning, "10.0.0.1", now.Add(time.Second)
	next.DNSAddress = "10.0.0.9"
	next.History = append(next.History, provisioner.Change{State: nightshift.StateRunning, Time: next.Updated})
	if err := s.UpdateInstance(ctx, next, nightshift.StateRequested); err != nil {
		t.Fatal(err)
	}
	got, err := s.Instances(ctx, provisioner.Filter{LiveOnly: true})
	if err != nil || len(got) != 2 {
		t.Fatalf("Instances = %v, %v", got, err)
	}
	if got[0].DNSName != a.DNSName || got[0].Address != "10.0.0.1" || got[0].DNSAddress != "10.0.0.9" || got[1].DNSName != "" {
		t.Errorf("dns names %q, %q; want %q and none", got[0].DNSName, got[1].DNSName, a.DNSName)
	}
}

// testWorkerUIDIsKept: an instance's own uid is recorded with its launch
// (write-ahead) and survives its transitions, so a restarted provisioner
// relaunches it under the same uid; no two live records may hold one uid,
// and one that ended frees its uid for another launch.
func testWorkerUIDIsKept(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	a, b := requested("a", "L1", 0, now), requested("b", "L1", 1, now)
	a.WorkerUID, b.WorkerUID = 61184, 61185
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 2, Created: now}, []provisioner.Instance{a, b}); err != nil {
		t.Fatal(err)
	}
	next := a
	next.State, next.PID, next.Updated = nightshift.StateRunning, 42, now.Add(time.Second)
	next.History = append(next.History, provisioner.Change{State: nightshift.StateRunning, Time: next.Updated})
	if err := s.UpdateInstance(ctx, next, nightshift.StateRequested); err != nil {
		t.Fatal(err)
	}
	got, err := s.Instance(ctx, "a")
	if err != nil || got.WorkerUID != 61184 {
		t.Fatalf("Instance(a).WorkerUID = %d, %v; want 61184", got.WorkerUID, err)
	}
	// Another live record may not take a's uid.
	c := requested("c", "L2", 0, now)
	c.WorkerUID = 61184
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L2", Job: "web", Count: 1, Created: now}, []provisioner.Instance{c}); err == nil {
		t.Fatal("a second live record with uid 61184 was recorded")
	}
	if _, err := s.Instance(ctx, "c"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("the refused launch left instance c: %v", err)
	}
	// Records without a uid of their own are not in each other's way.
	d, e := requested("d", "L3", 0, now), requested("e", "L3", 1, now)
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L3", Job: "web", Count: 2, Created: now}, []provisioner.Instance{d, e}); err != nil {
		t.Fatal(err)
	}
	// Once a has ended, its uid is free.
	done := next
	done.State, done.Updated = nightshift.StateTerminated, now.Add(2*time.Second)
	done.History = append(done.History, provisioner.Change{State: nightshift.StateTerminated, Time: done.Updated})
	if err := s.UpdateInstance(ctx, done, nightshift.StateRunning); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L2", Job: "web", Count: 1, Created: now}, []provisioner.Instance{c}); err != nil {
		t.Fatalf("uid 61184 of terminated a not free: %v", err)
	}
	if got, err := s.Instance(ctx, "c"); err != nil || got.WorkerUID != 61184 {
		t.Errorf("Instance(c).WorkerUID = %d, %v; want 61184", got.WorkerUID, err)
	}
}

// testRevisionsAreKept: a revision handed over is found by job and digest,
// recording it again changes nothing (the first spec and time stay), and an
// unknown one is ErrNotFound, so a restarted provisioner launches exactly
// what it was handed.
func testRevisionsAreKept(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	r := provisioner.Revision{Job: "web", Digest: "sha256:" + strings.Repeat("a", 64), Spec: []byte(`{"driver":"local","worker":{"env":{"VERSION":"2"}}}`), Created: now}
	if _, err := s.Revision(ctx, r.Job, r.Digest); !errors.Is(err, provisioner.ErrNotFound) {
		t.Fatalf("Revision before PutRevision: %v, want ErrNotFound", err)
	}
	if err := s.PutRevision(ctx, r); err != nil {
		t.Fatal(err)
	}
	again := r
	again.Spec, again.Created = []byte(`{"driver":"local"}`), now.Add(time.Hour)
	if err := s.PutRevision(ctx, again); err != nil {
		t.Fatalf("PutRevision again: %v, want nil (idempotent)", err)
	}
	got, err := s.Revision(ctx, r.Job, r.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Spec) != string(r.Spec) || !got.Created.Equal(now) || got.Job != "web" || got.Digest != r.Digest {
		t.Errorf("Revision = %+v (spec %s), want the first one recorded", got, got.Spec)
	}
	if _, err := s.Revision(ctx, "db", r.Digest); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("Revision of another job: %v, want ErrNotFound", err)
	}
}

// testHealthIsKept: the controller's word on a worker's health is stored
// beside its record and survives a transition; once the record left
// running it is stale news, not written.
func testHealthIsKept(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	a := requested("a", "L1", 0, now)
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 1, Created: now}, []provisioner.Instance{a}); err != nil {
		t.Fatal(err)
	}
	if set, err := s.SetHealths(ctx, "web", map[string]string{"a": provisioner.HealthHealthy}); err != nil || len(set) != 0 {
		t.Fatalf("SetHealths of a requested worker: %v, %v; want nothing written", set, err)
	}
	run := moved(a, nightshift.StateRunning, now.Add(time.Second))
	if err := s.UpdateInstance(ctx, run, nightshift.StateRequested); err != nil {
		t.Fatal(err)
	}
	if set, err := s.SetHealths(ctx, "web", map[string]string{"a": provisioner.HealthHealthy}); err != nil || !slices.Equal(set, []string{"a"}) {
		t.Fatalf("SetHealths = %v, %v; want [a]", set, err)
	}
	if got, err := s.Instance(ctx, "a"); err != nil || got.Health != provisioner.HealthHealthy {
		t.Fatalf("health %q, %v; want %q", got.Health, err, provisioner.HealthHealthy)
	}
	if err := s.UpdateInstance(ctx, moved(run, nightshift.StateTerminating, now.Add(2*time.Second)), nightshift.StateRunning); err != nil {
		t.Fatal(err)
	}
	if set, err := s.SetHealths(ctx, "web", map[string]string{"a": provisioner.HealthUnhealthy}); err != nil || len(set) != 0 {
		t.Fatalf("SetHealths of a worker that left running: %v, %v; want nothing written", set, err)
	}
	if got, err := s.Instance(ctx, "a"); err != nil || got.Health != provisioner.HealthHealthy {
		t.Fatalf("after a transition: health %q, %v; want it kept", got.Health, err)
	}
}

// moved is in after a transition to state at t.
func moved(in provisioner.Instance, state nightshift.InstanceState, t time.Time) provisioner.Instance {
	in.State, in.Updated = state, t
	in.History = append(slices.Clone(in.History), provisioner.Change{State: state, Time: t})
	return in
}

// testHealthsAreOneTransaction: a report on a whole pool is one call that
// writes every running worker of the job it names and nothing else (not
// another job's, not one that left running, not an unknown id, not one
// whose health is already that), returns exactly what it wrote, and is
// all or nothing: a write that fails part way leaves every record as it
// was.
func testHealthsAreOneTransaction(t *testing.T, s provisioner.Store, exec execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	const n = 300
	var web []provisioner.Instance
	for i := range n {
		web = append(web, requested(fmt.Sprintf("w-%04d", i), "L1", i, now))
	}
	other := requested("db-0", "L2", 0, now)
	other.Job = "db"
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: n, Created: now}, web); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L2", Job: "db", Count: 1, Created: now}, []provisioner.Instance{other}); err != nil {
		t.Fatal(err)
	}
	var ups []provisioner.Update
	for _, in := range append(slices.Clone(web), other) {
		ups = append(ups, provisioner.Update{Instance: moved(in, nightshift.StateRunning, now.Add(time.Second)), Prev: nightshift.StateRequested})
	}
	gone := web[n-1].ID
	ups = append(ups, provisioner.Update{Instance: moved(ups[n-1].Instance, nightshift.StateTerminated, now.Add(2*time.Second)), Prev: nightshift.StateRunning})
	if _, err := s.UpdateInstances(ctx, ups); err != nil {
		t.Fatal(err)
	}
	report := map[string]string{other.ID: provisioner.HealthHealthy, "w-nobody": provisioner.HealthHealthy}
	var want []string
	for _, in := range web {
		report[in.ID] = provisioner.HealthHealthy
		if in.ID != gone {
			want = append(want, in.ID)
		}
	}
	set, err := s.SetHealths(ctx, "web", report)
	if err != nil || !slices.Equal(set, want) {
		t.Fatalf("SetHealths wrote %d ids (%v), want the %d running workers of web", len(set), err, len(want))
	}
	if set, err := s.SetHealths(ctx, "web", report); err != nil || len(set) != 0 {
		t.Fatalf("the same report again wrote %v, %v; want nothing", set, err)
	}
	health := func() map[string]string {
		t.Helper()
		all, err := s.Instances(ctx, provisioner.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, in := range all {
			out[in.ID] = in.Health
		}
		return out
	}
	got := health()
	for _, id := range want {
		if got[id] != provisioner.HealthHealthy {
			t.Fatalf("%s health %q, want healthy", id, got[id])
		}
	}
	if got[other.ID] != "" || got[gone] != "" {
		t.Fatalf("another job's worker %q, a terminated one %q: want both untouched", got[other.ID], got[gone])
	}

	// One record in the middle refuses the write: the whole report is
	// refused, the records before it included.
	bad := web[n/2].ID
	switch s.(type) {
	case *Store:
		exec(t, `CREATE TRIGGER refuse BEFORE UPDATE OF health ON instances WHEN NEW.id = '`+bad+`'
			BEGIN SELECT RAISE(ABORT, 'refused'); END`)
	case *PG:
		exec(t, `ALTER TABLE instances ADD CONSTRAINT refuse CHECK (id <> '`+bad+`' OR health <> 'unhealthy')`)
	default:
		t.Fatalf("no way to make %T refuse a write", s)
	}
	for _, id := range want {
		report[id] = provisioner.HealthUnhealthy
	}
	if set, err := s.SetHealths(ctx, "web", report); err == nil {
		t.Fatalf("SetHealths past a refused record wrote %d and succeeded, want an error", len(set))
	}
	got = health()
	for _, id := range want {
		if got[id] != provisioner.HealthHealthy {
			t.Fatalf("after a refused report %s health %q, want healthy as before", id, got[id])
		}
	}
}
