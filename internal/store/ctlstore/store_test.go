package ctlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenModeAndWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (err %v), want wal", mode, err)
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "missing", "c.db")); err == nil {
		t.Error("open in a missing directory succeeded")
	}
}

func testDecisionsAndLaunches(t *testing.T, b backend) {
	ctx := context.Background()
	s, reopen := b.open(t)
	id := func(seq int64, i int) string { return fmt.Sprintf("web.d%d.%d", seq, i) }
	acts := func(ids []string) (json.RawMessage, error) { return json.Marshal(ids) }
	seq, ids, err := s.RecordDecision(ctx, Decision{Time: t0, Job: "web", Engine: "npreserving", Reason: "grow", Target: 3, Scaled: true},
		[]PendingLaunch{{Count: 2, Spec: json.RawMessage(`{"a":1}`)}, {Count: 1, Spec: json.RawMessage(`{}`)}}, id, acts)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 1 || len(ids) != 2 || ids[1] != "web.d1.1" {
		t.Fatalf("seq %d ids %v", seq, ids)
	}
	if _, _, err := s.RecordDecision(ctx, Decision{Time: t0.Add(time.Second), Job: "web", Engine: "npreserving", Reason: "hold", Target: 3}, nil, id, acts); err != nil {
		t.Fatal(err)
	}
	// A failing actions renderer rolls the whole decision back.
	_, _, err = s.RecordDecision(ctx, Decision{Time: t0, Job: "web", Reason: "x"}, []PendingLaunch{{Count: 1}}, id,
		func([]string) (json.RawMessage, error) { return nil, errors.New("boom") })
	if err == nil {
		t.Fatal("failing renderer: no error")
	}
	s.Close()
	s = reopen(t)
	ds, err := s.Decisions(ctx, "web", 0)
	if err != nil || len(ds) != 2 || ds[0].Reason != "hold" || ds[1].Reason != "grow" || !ds[1].Scaled {
		t.Fatalf("decisions %+v err %v, want hold then grow, newest first", ds, err)
	}
	if string(ds[1].Actions) != `["web.d1.0","web.d1.1"]` || !ds[1].Time.Equal(t0) {
		t.Fatalf("actions %s time %v", ds[1].Actions, ds[1].Time)
	}
	pend, err := s.PendingLaunches(ctx, "web")
	if err != nil || len(pend) != 2 || pend[0].Count != 2 || string(pend[0].Spec) != `{"a":1}` {
		t.Fatalf("pending %+v err %v", pend, err)
	}
	if err := s.SetLaunchState(ctx, "web.d1.0", LaunchDone, ""); err != nil {
		t.Fatal(err)
	}
	if pend, _ := s.PendingLaunches(ctx, "web"); len(pend) != 1 || pend[0].LaunchID != "web.d1.1" {
		t.Fatalf("after settling one: %+v", pend)
	}
	if ds, _ := s.Decisions(ctx, "web", 1); len(ds) != 1 {
		t.Fatalf("limit 1 gave %d", len(ds))
	}
}

func testJobsReconfigFrozenDrainsEpoch(t *testing.T, b backend) {
	ctx := context.Background()
	s, reopen := b.open(t)
	if _, err := s.Job(ctx, "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing job: %v, want ErrNotFound", err)
	}
	if err := s.PutJob(ctx, "web", json.RawMessage(`{"engine":"npreserving"}`), json.RawMessage(`{"n":2}`), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLastScaleAt(ctx, "web", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconfigured(ctx, Reconfiguration{Time: t0, Job: "web", Who: "ops", What: json.RawMessage(`{"n":"x"}`), Error: "bad n"}, json.RawMessage(`{"n":9}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconfigured(ctx, Reconfiguration{Time: t0, Job: "web", Who: "ops", What: json.RawMessage(`{"n":5}`)}, json.RawMessage(`{"n":5}`)); err != nil {
		t.Fatal(err)
	}
	j, err := s.Job(ctx, "web")
	if err != nil || string(j.Policy) != `{"n":5}` || !j.LastScaleAt.Equal(t0) {
		t.Fatalf("job %+v err %v: want the accepted policy only", j, err)
	}
	rs, _ := s.Reconfigurations(ctx, "web")
	if len(rs) != 2 || rs[0].Error != "bad n" || rs[1].Who != "ops" {
		t.Fatalf("reconfigurations %+v", rs)
	}
	if f, _ := s.Frozen(ctx); f {
		t.Fatal("new store frozen")
	}
	if err := s.SetFrozen(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDraining(ctx, "web", "i1", t0); err != nil {
		t.Fatal(err)
	}
	e1, err := s.Epoch(ctx)
	if err != nil || len(e1) != 8 {
		t.Fatalf("epoch %q err %v", e1, err)
	}
	s.Close()
	s = reopen(t)
	if f, _ := s.Frozen(ctx); !f {
		t.Fatal("frozen flag lost on reopen")
	}
	if d, _ := s.Draining(ctx, "web"); !d["i1"].Equal(t0) {
		t.Fatalf("drains %v", d)
	}
	if err := s.ClearDraining(ctx, "web", "i1"); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Draining(ctx, "web"); len(d) != 0 {
		t.Fatalf("drains after clear %v", d)
	}
	if e2, _ := s.Epoch(ctx); e2 != e1 {
		t.Fatalf("epoch changed on reopen: %q -> %q", e1, e2)
	}
	other, _ := b.open(t)
	if e3, _ := other.Epoch(ctx); e3 == e1 {
		t.Fatal("two stores share an epoch")
	}
}
