package provstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/provisioner"
)

func open(t *testing.T, file string) *Store {
	t.Helper()
	s, err := Open(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func requested(id, launch string, i int, now time.Time) provisioner.Instance {
	return provisioner.Instance{ID: id, Job: "web", LaunchID: launch, Index: i, Driver: "fake",
		State: nightshift.StateRequested, Reason: "asked", Created: now, Updated: now,
		History: []provisioner.Change{{State: nightshift.StateRequested, Reason: "asked", Time: now}}}
}

func TestOpenCreatesPrivateFileAndMigratesOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.db")
	s := open(t, file)
	if err := s.SetDisabled(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, f := range []string{file, file + "-wal", file + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			continue // -wal and -shm may be gone after a clean close
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s mode %v, want private", f, fi.Mode().Perm())
		}
	}
	s2 := open(t, file)
	var mode string
	s2.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	if d, err := s2.Disabled(context.Background()); err != nil || !d {
		t.Errorf("reopened store lost the disabled flag: %v %v", d, err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.db")
	s := open(t, file)
	s.db.Exec("PRAGMA user_version = 99")
	s.Close()
	_, err := Open(context.Background(), file)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("err = %v, want refusal of newer schema", err)
	}
}

func testLaunchIsRecordedOnce(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 123).UTC()
	l := provisioner.Launch{LaunchID: "L1", Job: "web", Count: 2, Spec: []byte(`{"a":1}`), Created: now}
	insts := []provisioner.Instance{requested("a", "L1", 0, now), requested("b", "L1", 1, now)}
	if _, created, err := s.CreateLaunch(ctx, l, insts); err != nil || !created {
		t.Fatalf("first CreateLaunch: created=%v err=%v", created, err)
	}
	again := []provisioner.Instance{requested("c", "L1", 0, now)}
	existing, created, err := s.CreateLaunch(ctx, l, again)
	if err != nil || created {
		t.Fatalf("second CreateLaunch: created=%v err=%v", created, err)
	}
	if len(existing) != 2 || existing[0].ID != "a" || existing[1].ID != "b" {
		t.Errorf("existing = %+v, want a, b", existing)
	}
	if _, err := s.Instance(ctx, "c"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("duplicate launch wrote instance c: %v", err)
	}
	got, err := s.Launch(ctx, "L1")
	if err != nil || string(got.Spec) != `{"a":1}` || got.Count != 2 || !got.Created.Equal(now) {
		t.Errorf("Launch = %+v, %v", got, err)
	}
	if _, err := s.Launch(ctx, "nope"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("missing launch: %v", err)
	}
}

func testUpdateIsCompareAndSetWithHistory(t *testing.T, s provisioner.Store, _ execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 1, Created: now},
		[]provisioner.Instance{requested("a", "L1", 0, now)})
	cur, _ := s.Instance(ctx, "a")
	next, _ := provisioner.Apply(cur, nightshift.StateRunning, "launched", now.Add(time.Second))
	next.Host, next.PID = "h", 7
	if err := s.UpdateInstance(ctx, next, nightshift.StateRequested); err != nil {
		t.Fatal(err)
	}
	// A writer that read the old state loses.
	stale, _ := provisioner.Apply(cur, nightshift.StateFailed, "late", now.Add(2*time.Second))
	if err := s.UpdateInstance(ctx, stale, nightshift.StateRequested); !errors.Is(err, provisioner.ErrConflict) {
		t.Fatalf("stale write: err = %v, want ErrConflict", err)
	}
	got, err := s.Instance(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != nightshift.StateRunning || got.Host != "h" || got.PID != 7 || len(got.History) != 2 ||
		got.History[1].State != nightshift.StateRunning || !got.History[1].Time.Equal(now.Add(time.Second)) {
		t.Errorf("after update: %+v", got)
	}
	live, _ := s.Instances(ctx, provisioner.Filter{LiveOnly: true})
	if len(live) != 1 {
		t.Errorf("live = %d, want 1", len(live))
	}
	term, _ := provisioner.Apply(got, nightshift.StateTerminated, "done", now.Add(3*time.Second))
	s.UpdateInstance(ctx, term, nightshift.StateRunning)
	if live, _ := s.Instances(ctx, provisioner.Filter{LiveOnly: true}); len(live) != 0 {
		t.Errorf("terminated instance still listed live")
	}
	if all, _ := s.Instances(ctx, provisioner.Filter{Job: "web"}); len(all) != 1 || len(all[0].History) != 3 {
		t.Errorf("all = %+v", all)
	}
}

func testCorruptStateIsReported(t *testing.T, s provisioner.Store, exec execFunc) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	s.CreateLaunch(ctx, provisioner.Launch{LaunchID: "L1", Job: "web", Count: 1, Created: now},
		[]provisioner.Instance{requested("a", "L1", 0, now)})
	exec(t, "UPDATE instances SET state = 'exploded' WHERE id = 'a'")
	_, err := s.Instance(ctx, "a")
	if err == nil || !strings.Contains(err.Error(), "instance a") || !strings.Contains(err.Error(), "exploded") {
		t.Errorf("err = %v, want one naming the instance and the bad state", err)
	}
}
