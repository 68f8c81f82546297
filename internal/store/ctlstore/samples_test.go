package ctlstore

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

func depth(n int) *int { return &n }

func testSamplesRoundTripAndSince(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := b.open(t)
	want := []Sample{
		{Time: t0, Job: "a", Desired: 1, Running: 0, Healthy: 0, QueueDepth: nil},
		{Time: t0.Add(time.Second), Job: "a", Desired: 3, Running: 1, Healthy: 1, QueueDepth: depth(40)},
		{Time: t0.Add(2 * time.Second), Job: "a", Desired: 3, Running: 3, Healthy: 2, QueueDepth: depth(0)},
	}
	for _, sm := range want {
		if err := s.RecordSample(ctx, sm); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordSample(ctx, Sample{Time: t0, Job: "b", Desired: 9}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Samples(ctx, "a", t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d samples since t0+1s, want 2: %+v", len(got), got)
	}
	for i, g := range got {
		w := want[i+1]
		if !g.Time.Equal(w.Time) || g.Job != w.Job || g.Desired != w.Desired || g.Running != w.Running || g.Healthy != w.Healthy ||
			g.QueueDepth == nil || *g.QueueDepth != *w.QueueDepth {
			t.Errorf("sample %d = %+v, want %+v", i, g, w)
		}
	}
	all, err := s.Samples(ctx, "a", time.Time{})
	if err != nil || len(all) != 3 || all[0].QueueDepth != nil {
		t.Errorf("all samples of a: %+v, %v; want 3, the first with no depth", all, err)
	}
}

func testCompactSamplesThinsAndDrops(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := b.open(t)
	// Three hours of a sample a second, t0 on a minute boundary.
	start := t0
	b.insertSamples(t, s, "a", start, 3*3600)
	if err := s.RecordSample(ctx, Sample{Time: start, Job: "b"}); err != nil {
		t.Fatal(err)
	}
	now := start.Add(3 * time.Hour)
	thin, drop := now.Add(-time.Hour), now.Add(-150*time.Minute)
	for range 2 { // compacting again changes nothing
		if err := s.CompactSamples(ctx, "a", thin, time.Minute, drop); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Samples(ctx, "a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// 30 minutes thinned to one a minute (from drop to thin), then the
	// last hour at one a second.
	if want := 90 + 3600; len(got) != want {
		t.Fatalf("%d samples after compaction, want %d", len(got), want)
	}
	if !got[0].Time.Equal(drop) {
		t.Errorf("oldest sample at %v, want %v", got[0].Time, drop)
	}
	for i := 1; i < 90; i++ {
		if d := got[i].Time.Sub(got[i-1].Time); d != time.Minute {
			t.Fatalf("thinned samples %d and %d are %v apart, want 1m", i-1, i, d)
		}
		if got[i].Time.Second() != 0 {
			t.Fatalf("thinned sample %v is not the first of its minute", got[i].Time)
		}
	}
	if d := got[90].Time.Sub(got[89].Time); d != time.Minute {
		t.Errorf("first unthinned sample %v after the last thinned one, want 1m", d)
	}
	if b, _ := s.Samples(ctx, "b", time.Time{}); len(b) != 1 {
		t.Errorf("job b has %d samples, want its 1 untouched", len(b))
	}
	if err := s.CompactSamples(ctx, "a", thin, 0, drop); err == nil {
		t.Error("a zero thinning period was accepted")
	}
}

func testDecisionsSinceOldestFirst(t *testing.T, b backend) {
	ctx := context.Background()
	s, _ := b.open(t)
	for i := range 5 {
		d := Decision{Time: t0.Add(time.Duration(i) * time.Minute), Job: "a", Engine: "n", Reason: "r" + string(rune('0'+i)), Target: i}
		if _, _, err := s.RecordDecision(ctx, d, nil, nil, func([]string) (json.RawMessage, error) { return json.RawMessage("[]"), nil }); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DecisionsSince(ctx, "a", t0.Add(2*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Reason != "r2" || got[2].Reason != "r4" {
		t.Errorf("decisions since t0+2m: %+v, want r2, r3, r4", got)
	}
	got, _ = s.DecisionsSince(ctx, "a", time.Time{}, 2)
	if len(got) != 2 || got[0].Reason != "r3" || got[1].Reason != "r4" {
		t.Errorf("newest 2 decisions: %+v, want r3, r4", got)
	}
}

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	w := open(t, path)
	if err := w.RecordSample(ctx, Sample{Time: t0, Job: "a", Desired: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Epoch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.PutJob(ctx, "a", []byte("{}"), []byte("{}"), t0); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Samples(ctx, "a", time.Time{}); err != nil || len(got) != 1 || got[0].Desired != 2 {
		t.Errorf("read-only samples: %+v, %v", got, err)
	}
	if ok, err := r.HasJob(ctx, "a"); !ok || err != nil {
		t.Errorf("HasJob(a) = %v, %v; want true", ok, err)
	}
	if ok, err := r.HasJob(ctx, "nope"); ok || err != nil {
		t.Errorf("HasJob(nope) = %v, %v; want false", ok, err)
	}
	if err := r.RecordSample(ctx, Sample{Time: t0, Job: "a"}); err == nil {
		t.Error("a read-only store accepted a write")
	}
	if _, err := OpenReadOnly(ctx, filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Error("a missing store opened read-only")
	}
}
