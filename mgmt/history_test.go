package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/runlayout"
	"nightshift/internal/store/ctlstore"
)

var h0 = time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)

// writeStore makes the store of controller service svc of run, as the
// controller would have left it, holding job with three samples and two
// decisions.
func writeStore(t *testing.T, home, run, svc, job string) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(runlayout.Of(home, run).Work(svc), "controller")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := ctlstore.Open(ctx, filepath.Join(dir, "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutJob(ctx, job, json.RawMessage(`{}`), json.RawMessage(`{}`), h0); err != nil {
		t.Fatal(err)
	}
	four := 4
	for i, s := range []controller.Sample{
		{Desired: 1, Running: 1, Healthy: 1},
		{Desired: 3, Running: 1, Healthy: 1, QueueDepth: &four},
		{Desired: 3, Running: 3, Healthy: 2, QueueDepth: &four},
	} {
		s.Time, s.Job = h0.Add(time.Duration(i)*time.Second), job
		if err := st.RecordSample(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	acts := []string{`[{"type":"launch","count":2,"reason":"backlog"}]`, `[]`}
	for i, a := range acts {
		d := controller.Decision{Time: h0.Add(time.Duration(i) * time.Second), Job: job, Engine: "n", Reason: "reason " + a, Target: 3}
		if _, _, err := st.RecordDecision(ctx, d, nil, nil, func([]string) (json.RawMessage, error) { return json.RawMessage(a), nil }); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHistory(t *testing.T) {
	home := t.TempDir()
	writeStore(t, home, "r", "ctl-a", "web")
	writeStore(t, home, "r", "ctl-b", "batch")
	ctx := context.Background()

	s, err := History(ctx, openHistory, home, "r", "batch", h0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if s.Run != "r" || s.Job != "batch" || len(s.Samples) != 2 || s.Samples[0].Desired != 3 || *s.Samples[1].QueueDepth != 4 {
		t.Errorf("samples since h0+1s: %+v", s)
	}
	if len(s.Decisions) != 1 || s.Decisions[0].Action != "none" {
		t.Errorf("decisions since h0+1s: %+v, want the one without action", s.Decisions)
	}
	s, err = History(ctx, openHistory, home, "r", "web", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Samples) != 3 || len(s.Decisions) != 2 {
		t.Fatalf("whole history: %d samples, %d decisions; want 3, 2", len(s.Samples), len(s.Decisions))
	}
	d := s.Decisions[0]
	if d.Action != "launch" || len(d.Actions) != 1 || d.Actions[0].Count != 2 || !d.Time.Equal(h0) || d.Target != 3 {
		t.Errorf("first decision %+v", d)
	}

	// The store is only read: nothing about it changes.
	file := filepath.Join(runlayout.Of(home, "r").Work("ctl-a"), "controller", "controller.db")
	before, _ := os.Stat(file)
	if _, err := History(ctx, openHistory, home, "r", "web", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(file); !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Error("History changed the store file")
	}

	for _, tc := range []struct{ run, job string }{{"r", "nope"}, {"other", "web"}} {
		if _, err := History(ctx, openHistory, home, tc.run, tc.job, time.Time{}); !errors.Is(err, ErrNoHistory) {
			t.Errorf("History(%s, %s): %v, want ErrNoHistory", tc.run, tc.job, err)
		}
	}
}

func TestHistoryBadStore(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(runlayout.Of(home, "r").Work("ctl"), "controller")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "controller.db"), []byte("not a database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := History(context.Background(), openHistory, home, "r", "web", time.Time{}); err == nil || errors.Is(err, ErrNoHistory) {
		t.Errorf("a corrupt store: %v, want an error other than no history", err)
	}
}

// openHistory is app.OpenHistory, which mgmt's tests cannot import.
func openHistory(ctx context.Context, file string) (HistoryStore, error) {
	st, err := ctlstore.OpenReadOnly(ctx, file)
	if err != nil {
		return nil, err
	}
	return st, nil
}
