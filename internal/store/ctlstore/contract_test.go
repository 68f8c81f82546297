package ctlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/cmdledger"
	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
)

// testStore is what both implementations offer the tests.
type testStore interface {
	controller.Store
	Reconfigurations(ctx context.Context, job string) ([]Reconfiguration, error)
	HasJob(ctx context.Context, job string) (bool, error)
	Close() error
}

// backend opens a fresh, empty store of one implementation, and a way to
// open that same store again (as a restarted controller does).
type backend struct {
	name          string
	open          func(t *testing.T) (testStore, func(t *testing.T) testStore)
	insertSamples func(t *testing.T, s testStore, job string, start time.Time, n int)
}

func backends() []backend {
	return []backend{
		{
			name: "sqlite",
			open: func(t *testing.T) (testStore, func(t *testing.T) testStore) {
				path := filepath.Join(t.TempDir(), "c.db")
				return open(t, path), func(t *testing.T) testStore { return open(t, path) }
			},
			insertSamples: func(t *testing.T, st testStore, job string, start time.Time, n int) {
				tx, err := st.(*Store).db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					if _, err := tx.Exec(`INSERT INTO samples (time, job, desired, running, healthy) VALUES (?, ?, ?, 0, 0)`,
						nanos(start.Add(time.Duration(i)*time.Second)), job, i); err != nil {
						t.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "postgres",
			open: func(t *testing.T) (testStore, func(t *testing.T) testStore) {
				url, schema := pgtest.URL(), pgtest.Schema(t, "ctlstore")
				return openPG(t, url, schema, leader.Fence{}), func(t *testing.T) testStore { return openPG(t, url, schema, leader.Fence{}) }
			},
			insertSamples: func(t *testing.T, st testStore, job string, start time.Time, n int) {
				if _, err := st.(*PG).db.Pool.Exec(context.Background(), `INSERT INTO samples (time, job, desired, running, healthy)
					SELECT $1::bigint + i::bigint * 1000000000, $2, i, 0, 0 FROM generate_series(0, $3 - 1) AS i`, nanos(start), job, n); err != nil {
					t.Fatal(err)
				}
			},
		},
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

// TestContract holds both implementations of controller.Store to the same
// behaviour. PostgreSQL runs when it answers (NIGHTSHIFT_PG_URL or
// 127.0.0.1:5432); otherwise its half skips, or fails under
// NIGHTSHIFT_TEST_STRICT=1.
func TestContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range []struct {
				name string
				f    func(t *testing.T, b backend)
			}{
				{"DecisionsAndLaunches", testDecisionsAndLaunches},
				{"JobsReconfigFrozenDrainsEpoch", testJobsReconfigFrozenDrainsEpoch},
				{"SamplesRoundTripAndSince", testSamplesRoundTripAndSince},
				{"CompactSamplesThinsAndDrops", testCompactSamplesThinsAndDrops},
				{"DecisionsSinceOldestFirst", testDecisionsSinceOldestFirst},
				{"ConcurrentDecisionsGetDistinctSeqs", testConcurrentDecisions},
				{"HasJob", testHasJob},
				{"SilentSurvivesReopen", testSilentSurvivesReopen},
				{"Revisions", testRevisions},
				{"RolloutSurvivesReopen", testRolloutSurvivesReopen},
			} {
				t.Run(c.name, func(t *testing.T) {
					if b.name == "postgres" {
						pgtest.Need(t)
					}
					c.f(t, b)
				})
			}
		})
	}
}

// testConcurrentDecisions: decisions recorded at once from many
// goroutines get distinct sequence numbers, hence distinct launch ids, and
// every one is stored.
func testConcurrentDecisions(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := b.open(t)
	id := func(seq int64, i int) string { return fmt.Sprintf("web.d%d.%d", seq, i) }
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ids, err := s.RecordDecision(ctx, Decision{Time: t0, Job: "web", Engine: "n", Reason: "grow", Target: 1},
				[]PendingLaunch{{Count: 1, Spec: json.RawMessage(`{}`)}}, id, func(ids []string) (json.RawMessage, error) { return json.Marshal(ids) })
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[ids[0]] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	pend, err := s.PendingLaunches(ctx, "web")
	if len(seen) != n || len(pend) != n || err != nil {
		t.Errorf("%d distinct launch ids, %d pending launches (%v); want %d of each", len(seen), len(pend), err, n)
	}
}

func testHasJob(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := b.open(t)
	if err := s.PutJob(ctx, "a", []byte("{}"), []byte("{}"), t0); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.HasJob(ctx, "a"); !ok || err != nil {
		t.Errorf("HasJob(a) = %v, %v; want true", ok, err)
	}
	if ok, err := s.HasJob(ctx, "nope"); ok || err != nil {
		t.Errorf("HasJob(nope) = %v, %v; want false", ok, err)
	}
}

// testSilentSurvivesReopen: a job's block after silent workers, stored
// with SetSilent, is what Job returns after the store is opened again (a
// restarted controller), PutJob keeps it, the zero state clears it, and an
// unknown job is refused rather than silently ignored.
func testSilentSurvivesReopen(t *testing.T, b backend) {
	ctx := context.Background()
	s, reopen := b.open(t)
	if err := s.PutJob(ctx, "web", []byte("{}"), []byte("{}"), t0); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Job(ctx, "web"); err != nil || !rec.Silent.Equal(SilentState{}) {
		t.Fatalf("a new job's silent state %+v (err %v), want zero", rec.Silent, err)
	}
	want := SilentState{Count: 4, Cause: "worker w-4 reached running and sent no heartbeat", Counted: []string{"w-3", "w-4"},
		Probes: 1, NextProbe: t0.Add(40 * time.Second)}
	if err := s.SetSilent(ctx, "web", want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen(t)
	if err := s.PutJob(ctx, "web", []byte("{}"), []byte("{}"), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Job(ctx, "web")
	if err != nil || !rec.Silent.Equal(want) {
		t.Errorf("after reopen and PutJob, silent state %+v (err %v), want %+v", rec.Silent, err, want)
	}
	if err := s.SetSilent(ctx, "web", SilentState{}); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Job(ctx, "web"); err != nil || !rec.Silent.Equal(SilentState{}) {
		t.Errorf("after storing the zero state, silent state %+v (err %v)", rec.Silent, err)
	}
	if err := s.SetSilent(ctx, "nope", want); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetSilent of an unknown job: %v, want ErrNotFound", err)
	}
}

// TestPGFencedWrites: once another replica took the controller's lease
// over, every write of the deposed one fails with leader.ErrFenced (a
// decision, a sample, the frozen flag, the command ledger), nothing of it
// lands, and the new leader's writes succeed.
func TestPGFencedWrites(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "ctlfence")
	ctx := context.Background()
	base := openPG(t, url, schema, leader.Fence{})
	cand := func(holder string) *leader.Lease {
		l, err := leader.New(ctx, leader.Config{DB: base.DB().Pool, Schema: schema, Name: "controller", Holder: holder, TTL: time.Hour})
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
	acts := func(ids []string) (json.RawMessage, error) { return json.Marshal(ids) }
	id := func(seq int64, i int) string { return fmt.Sprintf("web.d%d.%d", seq, i) }
	if _, _, err := old.RecordDecision(ctx, Decision{Time: t0, Job: "web", Reason: "grow"}, []PendingLaunch{{Count: 1}}, id, acts); err != nil {
		t.Fatalf("leader's decision: %v", err)
	}
	if _, err := base.DB().Pool.Exec(ctx, `UPDATE leases SET expires_at = now()`); err != nil {
		t.Fatal(err)
	}
	fb, ok, err := b.TryAcquire(ctx)
	if !ok || err != nil || fb.Epoch != fa.Epoch+1 {
		t.Fatal(fb, ok, err)
	}
	_, _, errDecision := old.RecordDecision(ctx, Decision{Time: t0, Job: "web", Reason: "late"}, []PendingLaunch{{Count: 1}}, id, acts)
	_, errLedger := old.Commands().Start(ctx, cmdEntry())
	for what, err := range map[string]error{
		"RecordDecision": errDecision,
		"RecordSample":   old.RecordSample(ctx, Sample{Time: t0, Job: "web"}),
		"SetFrozen":      old.SetFrozen(ctx, true),
		"SetLaunchState": old.SetLaunchState(ctx, "web.d1.0", LaunchDone, ""),
		"ledger Start":   errLedger,
	} {
		if !errors.Is(err, leader.ErrFenced) {
			t.Errorf("deposed %s: %v, want ErrFenced", what, err)
		}
	}
	if ds, _ := base.Decisions(ctx, "web", 0); len(ds) != 1 {
		t.Errorf("%d decisions stored, want only the leader's 1", len(ds))
	}
	if pend, _ := base.PendingLaunches(ctx, "web"); len(pend) != 1 {
		t.Errorf("%d pending launches, want 1 (the deposed leader settled none)", len(pend))
	}
	if err := openPG(t, url, schema, fb).SetLaunchState(ctx, "web.d1.0", LaunchDone, ""); err != nil {
		t.Errorf("new leader's write: %v", err)
	}
}

func TestPGNewerSchemaIsRefused(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "ctlnewer")
	s := openPG(t, url, schema, leader.Fence{})
	if _, err := s.DB().Pool.Exec(context.Background(), `INSERT INTO schema_version (version, name) VALUES (99, 'future')`); err != nil {
		t.Fatal(err)
	}
	_, err := OpenPG(context.Background(), url, schema, leader.Fence{})
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), schema) {
		t.Fatalf("err = %v, want refusal of a newer schema naming it", err)
	}
}

func TestPGCommandLedger(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "ctlledger")
	ctx := context.Background()
	s := openPG(t, url, schema, leader.Fence{})
	if _, err := s.Commands().Start(ctx, cmdEntry()); err != nil {
		t.Fatal(err)
	}
	if err := s.Commands().Finish(ctx, "c1", []byte(`{"ok":true}`), t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	e, err := openPG(t, url, schema, leader.Fence{}).Commands().Lookup(ctx, "c1")
	if err != nil || e.State != "done" || string(e.Reply) != `{"ok":true}` {
		t.Fatalf("after reopening: %+v, %v", e, err)
	}
	m, err := pgMigrations.ReadFile("pgmigrations/0001_init.sql")
	if err != nil || !strings.Contains(string(m), pgdb.LedgerSchema) {
		t.Errorf("pgmigrations/0001_init.sql does not hold pgdb.LedgerSchema (%v)", err)
	}
}

func cmdEntry() cmdledger.Entry { return cmdledger.Entry{ID: "c1", Type: "t", Sig: "s", Started: t0} }

// TestPGReadOnly: mgmt's view of a controller on PostgreSQL, through the
// locator the controller leaves in its state directory: it reads the
// samples and decisions, the server refuses its writes, and a schema that
// was never created reads as missing (fs.ErrNotExist), as a missing file.
func TestPGReadOnly(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "ctlro")
	ctx := context.Background()
	w := openPG(t, url, schema, leader.Fence{})
	if err := w.PutJob(ctx, "a", []byte("{}"), []byte("{}"), t0); err != nil {
		t.Fatal(err)
	}
	if err := w.RecordSample(ctx, Sample{Time: t0, Job: "a", Desired: 2}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteLocator(dir, Locator{URL: url, Schema: schema}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, LocatorFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("locator: %v, want mode 0600", err)
	}
	r, err := OpenLocated(ctx, filepath.Join(dir, LocatorFile))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Samples(ctx, "a", time.Time{}); err != nil || len(got) != 1 || got[0].Desired != 2 {
		t.Errorf("read-only samples: %+v, %v", got, err)
	}
	if ok, err := r.HasJob(ctx, "a"); !ok || err != nil {
		t.Errorf("HasJob(a) = %v, %v", ok, err)
	}
	if err := r.RecordSample(ctx, Sample{Time: t0, Job: "a"}); err == nil {
		t.Error("a read-only store accepted a write")
	}
	if _, err := OpenPGReadOnly(ctx, url, schema+"_never"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing schema: %v, want fs.ErrNotExist", err)
	}
}

// testRevisions: a revision is stored whole once; a later put changes only
// its outcome, note and updated time; revisions list oldest first, per
// job, and survive reopening.
func testRevisions(t *testing.T, b backend) {
	ctx := context.Background()
	s, reopen := b.open(t)
	if got, err := s.Revisions(ctx, "web"); err != nil || len(got) != 0 {
		t.Fatalf("revisions of a fresh store = %v, %v", got, err)
	}
	r1 := Revision{Job: "web", Number: 1, Digest: "sha256:aa", Spec: json.RawMessage(`{"driver":"local"}`), Time: t0,
		Who: "plan", Outcome: "current", Updated: t0}
	r2 := Revision{Job: "web", Number: 2, Digest: "sha256:bb", Spec: json.RawMessage(`{"driver":"local","worker":{"env":{"VERSION":"2"}}}`),
		Time: t0.Add(time.Minute), Who: "ns.r.mgmt", Outcome: "current", Updated: t0.Add(time.Minute)}
	other := Revision{Job: "db", Number: 1, Digest: "sha256:cc", Spec: json.RawMessage(`{}`), Time: t0, Who: "plan", Outcome: "current", Updated: t0}
	for _, r := range []Revision{r2, r1, other} {
		if err := s.PutRevision(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// The outcome changes; what the revision is does not.
	changed := r1
	changed.Outcome, changed.Note, changed.Updated = "superseded", "revision 2 rolled out", t0.Add(2*time.Minute)
	changed.Digest, changed.Who = "sha256:ff", "someone else"
	if err := s.PutRevision(ctx, changed); err != nil {
		t.Fatal(err)
	}
	s = reopen(t)
	got, err := s.Revisions(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	want1 := r1
	want1.Outcome, want1.Note, want1.Updated = changed.Outcome, changed.Note, changed.Updated
	want := []Revision{want1, r2}
	if len(got) != 2 {
		t.Fatalf("revisions %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Job != w.Job || g.Number != w.Number || g.Digest != w.Digest || string(g.Spec) != string(w.Spec) || !g.Time.Equal(w.Time) ||
			g.Who != w.Who || g.Outcome != w.Outcome || g.Note != w.Note || !g.Updated.Equal(w.Updated) {
			t.Errorf("revision %d = %+v, want %+v", i, g, w)
		}
	}
}

// testRolloutSurvivesReopen: a job's latest rollout is kept whole, a later
// put replaces it, and it is there after reopening; a job without one is
// not found.
func testRolloutSurvivesReopen(t *testing.T, b backend) {
	ctx := context.Background()
	s, reopen := b.open(t)
	if _, err := s.Rollout(ctx, "work"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rollout of a fresh store: %v, want not found", err)
	}
	r := controller.Rollout{Job: "work", From: 1, To: 2, Phase: controller.RolloutRolling, Who: "ns.r.mgmt", Started: t0,
		Config: controller.RolloutConfig{MaxSurge: 2, MinReady: 5 * time.Second, FailureThreshold: 1}}
	if err := s.PutRollout(ctx, r, t0); err != nil {
		t.Fatal(err)
	}
	r.Phase, r.Failed, r.Reason = controller.RolloutRollingBack, []string{"work-ab-0"}, "rolling back to revision 1: probe failed"
	if err := s.PutRollout(ctx, r, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRollout(ctx, controller.Rollout{Job: "other", From: 3, To: 4, Phase: controller.RolloutDone}, t0); err != nil {
		t.Fatal(err)
	}
	s = reopen(t)
	got, err := s.Rollout(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != r.Phase || got.From != 1 || got.To != 2 || got.Config != r.Config || !got.Started.Equal(t0) ||
		len(got.Failed) != 1 || got.Failed[0] != "work-ab-0" || got.Reason != r.Reason || got.Who != r.Who {
		t.Errorf("rollout after reopening %+v, want %+v", got, r)
	}
}
