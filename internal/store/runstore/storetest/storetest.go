// Package storetest owns the contract test suite of bootlevel.Store, so that
// every Store implementation is held to the same behaviour the engine relies
// on: round-trips, ordering, paging, ErrNotFound/ErrExists, concurrency and
// cascading deletes. Durable stores also run RunDurable.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"nightshift/bootlevel"
)

// base is a fixed instant with nanoseconds and a non-UTC zone, to prove that
// stores keep nanoseconds and hand times back in UTC.
var base = time.Date(2026, 11, 21, 22, 30, 15, 123456789, time.FixedZone("CET", 3600))

// NewRun is a populated run for tests.
func NewRun(name string) bootlevel.Run {
	return bootlevel.Run{
		Name:     name,
		PlanPath: "/plans/" + name + ".toml",
		PlanHash: "5f2b" + name,
		State:    bootlevel.RunBooting,
		Plan:     []byte(`{"name":"` + name + `","levels":[]}`),
		Created:  base,
		Updated:  base.Add(time.Second),
	}
}

// NewService is a populated service record for tests.
func NewService(run, name string, level int) bootlevel.ServiceRecord {
	return bootlevel.ServiceRecord{
		Run:        run,
		Name:       name,
		Level:      level,
		State:      bootlevel.ServiceReady,
		Attributes: map[string]string{"port": "8080", "url": "amqp://guest:guest@127.0.0.1:5672/", "quote": `"a b" $(x); y`},
		Host:       bootlevel.Host{Hostname: "h-" + name, InstanceID: "i-0123", Attrs: map[string]string{"az": "eu-west-1a"}},
		Error:      "",
		LogPath:    "/var/log/nightshift/" + name + ".log",
		Restarts:   2,
		Started:    base.Add(2 * time.Second),
		ReadyAt:    base.Add(3 * time.Second),
		Updated:    base.Add(4 * time.Second),
	}
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantRun compares runs field by field with time.Equal and demands UTC.
func wantRun(t *testing.T, got, want bootlevel.Run) {
	t.Helper()
	if got.Name != want.Name || got.PlanPath != want.PlanPath || got.PlanHash != want.PlanHash || got.State != want.State {
		t.Errorf("run = %+v, want %+v", got, want)
	}
	if !bytes.Equal(got.Plan, want.Plan) {
		t.Errorf("run %s plan = %q, want %q", want.Name, got.Plan, want.Plan)
	}
	wantTime(t, "run "+want.Name+" created", got.Created, want.Created)
	wantTime(t, "run "+want.Name+" updated", got.Updated, want.Updated)
}

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
	if !got.IsZero() && got.Location() != time.UTC {
		t.Errorf("%s location = %v, want UTC", what, got.Location())
	}
}

func wantService(t *testing.T, got, want bootlevel.ServiceRecord) {
	t.Helper()
	g, w := got, want
	for _, p := range []*bootlevel.ServiceRecord{&g, &w} {
		p.Started, p.ReadyAt, p.Ended, p.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("service = %+v\nwant %+v", got, want)
	}
	wantTime(t, "service "+want.Name+" started", got.Started, want.Started)
	wantTime(t, "service "+want.Name+" ready_at", got.ReadyAt, want.ReadyAt)
	wantTime(t, "service "+want.Name+" ended", got.Ended, want.Ended)
	wantTime(t, "service "+want.Name+" updated", got.Updated, want.Updated)
}

func names(recs []bootlevel.ServiceRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Name
	}
	return out
}

// Run runs the contract suite; newStore returns a fresh, empty store and
// arranges its closing with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) bootlevel.Store) {
	t.Run("RunRoundTrip", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		want := NewRun("r1")
		if err := s.CreateRun(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRun(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		wantRun(t, got, want)

		// A run with no plan yet and zero-valued fields round-trips too.
		empty := bootlevel.Run{Name: "r0", State: bootlevel.RunBooting, Created: base}
		if err := s.CreateRun(ctx, empty); err != nil {
			t.Fatal(err)
		}
		got, err = s.GetRun(ctx, "r0")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Plan) != 0 {
			t.Errorf("plan = %q, want empty", got.Plan)
		}
		wantTime(t, "r0 created", got.Created, base)
	})

	t.Run("CreateRunExists", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		if err := s.CreateRun(ctx, NewRun("dup")); err != nil {
			t.Fatal(err)
		}
		other := NewRun("dup")
		other.PlanPath = "/other.toml"
		err := s.CreateRun(ctx, other)
		if !errors.Is(err, bootlevel.ErrExists) {
			t.Fatalf("second CreateRun = %v, want ErrExists", err)
		}
		if !bytes.Contains([]byte(err.Error()), []byte("dup")) {
			t.Errorf("error %q does not name the run", err)
		}
		got, err := s.GetRun(ctx, "dup")
		if err != nil {
			t.Fatal(err)
		}
		if got.PlanPath != NewRun("dup").PlanPath {
			t.Errorf("duplicate create overwrote the run: plan_path = %q", got.PlanPath)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		checks := []struct {
			name string
			call func() error
		}{
			{"GetRun", func() error { _, err := s.GetRun(ctx, "ghost"); return err }},
			{"UpdateRun", func() error { return s.UpdateRun(ctx, NewRun("ghost")) }},
			{"PutService", func() error { return s.PutService(ctx, NewService("ghost", "web", 1)) }},
			{"Services", func() error { _, err := s.Services(ctx, "ghost"); return err }},
			{"AppendEvent", func() error {
				_, err := s.AppendEvent(ctx, bootlevel.Event{Run: "ghost", Time: base, Kind: "level.start"})
				return err
			}},
			{"Events", func() error { _, err := s.Events(ctx, "ghost", 0); return err }},
			{"DeleteRun", func() error { return s.DeleteRun(ctx, "ghost") }},
		}
		for _, c := range checks {
			err := c.call()
			if !errors.Is(err, bootlevel.ErrNotFound) {
				t.Errorf("%s on unknown run = %v, want ErrNotFound", c.name, err)
				continue
			}
			if !bytes.Contains([]byte(err.Error()), []byte("ghost")) {
				t.Errorf("%s error %q does not name the run", c.name, err)
			}
		}
	})

	t.Run("EmptyRunHasNoServicesOrEvents", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		if err := s.CreateRun(ctx, NewRun("e")); err != nil {
			t.Fatal(err)
		}
		svcs, err := s.Services(ctx, "e")
		if err != nil || len(svcs) != 0 {
			t.Errorf("Services = %v, %v; want none, nil", svcs, err)
		}
		evs, err := s.Events(ctx, "e", 0)
		if err != nil || len(evs) != 0 {
			t.Errorf("Events = %v, %v; want none, nil", evs, err)
		}
	})

	t.Run("UpdateRun", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		r := NewRun("u")
		if err := s.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.State = bootlevel.RunTerminated
		r.Plan = []byte(`{"name":"u2"}`)
		r.PlanHash = "beef"
		r.PlanPath = "/moved.toml"
		r.Updated = base.Add(time.Hour + 7)
		created := r.Created
		r.Created = base.Add(99 * time.Hour) // not mutable: must be ignored
		if err := s.UpdateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRun(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		r.Created = created
		wantRun(t, got, r)
	})

	t.Run("ListRuns", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		if runs, err := s.ListRuns(ctx); err != nil || len(runs) != 0 {
			t.Fatalf("ListRuns on empty store = %v, %v", runs, err)
		}
		for i, n := range []string{"b", "a", "c"} {
			r := NewRun(n)
			r.Created = base.Add(time.Duration(i) * time.Minute)
			if err := s.CreateRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		runs, err := s.ListRuns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range runs {
			got = append(got, r.Name)
		}
		if want := []string{"b", "a", "c"}; !reflect.DeepEqual(got, want) {
			t.Errorf("ListRuns order = %v, want %v (oldest first)", got, want)
		}
	})

	t.Run("ServiceRoundTripAndReplace", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		if err := s.CreateRun(ctx, NewRun("r")); err != nil {
			t.Fatal(err)
		}
		cases := []bootlevel.ServiceRecord{
			NewService("r", "full", 1),
			{Run: "r", Name: "bare", Level: 2, State: bootlevel.ServicePending},
			{Run: "r", Name: "emptymap", Level: 3, State: bootlevel.ServiceFailed, Attributes: map[string]string{},
				Error: "boot: exit 3\nline two", Ended: base.Add(time.Nanosecond)},
		}
		for _, rec := range cases {
			if err := s.PutService(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Services(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(cases) {
			t.Fatalf("Services = %d records, want %d", len(got), len(cases))
		}
		for i := range cases {
			wantService(t, got[i], cases[i])
		}

		// Put again with the same key replaces every field.
		repl := NewService("r", "full", 1)
		repl.State = bootlevel.ServiceTerminated
		repl.Attributes = map[string]string{"only": "this"}
		repl.Host = bootlevel.Host{Hostname: "other"}
		repl.Restarts = 5
		repl.Ended = base.Add(time.Hour)
		repl.Error = "gone"
		if err := s.PutService(ctx, repl); err != nil {
			t.Fatal(err)
		}
		got, err = s.Services(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(cases) {
			t.Fatalf("replace added a record: %v", names(got))
		}
		wantService(t, got[0], repl)
	})

	t.Run("ServicesOrderByLevelThenName", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		if err := s.CreateRun(ctx, NewRun("o")); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRun(ctx, NewRun("other")); err != nil {
			t.Fatal(err)
		}
		put := []struct {
			name  string
			level int
		}{{"web", 3}, {"db", 1}, {"cache", 2}, {"api", 3}, {"broker", 1}, {"z", 10}, {"a", 2}}
		for _, p := range put {
			if err := s.PutService(ctx, NewService("o", p.name, p.level)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutService(ctx, NewService("other", "intruder", 1)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Services(ctx, "o")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"broker", "db", "a", "cache", "api", "web", "z"}
		if !reflect.DeepEqual(names(got), want) {
			t.Errorf("Services order = %v, want %v", names(got), want)
		}
	})

	t.Run("EventsSeqOrderAndPaging", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		for _, n := range []string{"ev", "noise"} {
			if err := s.CreateRun(ctx, NewRun(n)); err != nil {
				t.Fatal(err)
			}
		}
		var want []bootlevel.Event
		for i := 0; i < 10; i++ {
			e := bootlevel.Event{
				Run: "ev", Time: base.Add(time.Duration(-i) * time.Second), // time order is not seq order
				Level: i % 3, Service: fmt.Sprintf("svc%d", i), Step: bootlevel.StepBoot,
				Kind: "service.state", State: string(bootlevel.ServiceBooting), Message: fmt.Sprintf("msg %d 'q' \"d\"", i),
				Seq: 999, // assigned by the store, input ignored
			}
			got, err := s.AppendEvent(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) > 0 && got.Seq <= want[len(want)-1].Seq {
				t.Fatalf("seq %d not above previous %d", got.Seq, want[len(want)-1].Seq)
			}
			e.Seq = got.Seq
			want = append(want, e)
			// Interleave another run's events: seqs are global, paging per run.
			if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: "noise", Time: base, Kind: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.Events(ctx, "ev", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Fatalf("Events = %d, want %d", len(all), len(want))
		}
		for i := range want {
			g, w := all[i], want[i]
			wantTime(t, fmt.Sprintf("event %d time", i), g.Time, w.Time)
			g.Time, w.Time = time.Time{}, time.Time{}
			if g != w {
				t.Errorf("event %d = %+v, want %+v", i, g, w)
			}
		}
		for _, after := range []int{0, 1, 4, 9, 10} {
			var afterSeq int64
			if after > 0 {
				afterSeq = want[after-1].Seq
			}
			page, err := s.Events(ctx, "ev", afterSeq)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) != len(want)-after {
				t.Errorf("Events after seq %d = %d events, want %d", afterSeq, len(page), len(want)-after)
				continue
			}
			for i, e := range page {
				if e.Seq != want[after+i].Seq {
					t.Errorf("Events after %d [%d] seq = %d, want %d", afterSeq, i, e.Seq, want[after+i].Seq)
				}
			}
		}
	})

	t.Run("ConcurrentPutService", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		if err := s.CreateRun(ctx, NewRun("c")); err != nil {
			t.Fatal(err)
		}
		const workers, each = 20, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers*(each+2))
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if err := s.PutService(ctx, NewService("c", fmt.Sprintf("w%02d-s%d", w, i), w%4)); err != nil {
						errs <- err
					}
				}
				shared := NewService("c", "shared", 0)
				shared.Restarts = w
				if err := s.PutService(ctx, shared); err != nil {
					errs <- err
				}
				if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: "c", Time: base, Kind: "w", Message: fmt.Sprint(w)}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		got, err := s.Services(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != workers*each+1 {
			t.Fatalf("Services = %d, want %d", len(got), workers*each+1)
		}
		for _, g := range got {
			if g.Name == "shared" && (g.Restarts < 0 || g.Restarts >= workers) {
				t.Errorf("shared restarts = %d, not one of the written values", g.Restarts)
			}
		}
		evs, err := s.Events(ctx, "c", 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for _, e := range evs {
			if seen[e.Seq] {
				t.Errorf("duplicate seq %d", e.Seq)
			}
			seen[e.Seq] = true
		}
		if len(evs) != workers {
			t.Errorf("Events = %d, want %d", len(evs), workers)
		}
	})

	t.Run("DeleteRunCascades", func(t *testing.T) {
		s, ctx := newStore(t), ctxFor(t)
		for _, n := range []string{"gone", "kept"} {
			if err := s.CreateRun(ctx, NewRun(n)); err != nil {
				t.Fatal(err)
			}
			if err := s.PutService(ctx, NewService(n, "web", 1)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: n, Time: base, Kind: "level.start"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteRun(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetRun(ctx, "gone"); !errors.Is(err, bootlevel.ErrNotFound) {
			t.Errorf("GetRun after delete = %v, want ErrNotFound", err)
		}
		// Re-creating the name must not resurrect the old services/events.
		if err := s.CreateRun(ctx, NewRun("gone")); err != nil {
			t.Fatal(err)
		}
		if svcs, err := s.Services(ctx, "gone"); err != nil || len(svcs) != 0 {
			t.Errorf("Services of re-created run = %v, %v; want none", names(svcs), err)
		}
		if evs, err := s.Events(ctx, "gone", 0); err != nil || len(evs) != 0 {
			t.Errorf("Events of re-created run = %d, %v; want none", len(evs), err)
		}
		if svcs, err := s.Services(ctx, "kept"); err != nil || len(svcs) != 1 {
			t.Errorf("other run's services = %v, %v; want 1", names(svcs), err)
		}
		if evs, err := s.Events(ctx, "kept", 0); err != nil || len(evs) != 1 {
			t.Errorf("other run's events = %d, %v; want 1", len(evs), err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.CreateRun(ctx, NewRun("never")); err == nil {
			t.Error("CreateRun with a cancelled context succeeded")
		}
		if _, err := s.GetRun(ctxFor(t), "never"); !errors.Is(err, bootlevel.ErrNotFound) {
			t.Errorf("run written despite cancelled context: GetRun = %v", err)
		}
	})
}

// RunDurable checks what a file-backed store must add to the contract: data
// survives reopening, and two open stores on one file see each other's
// writes. open opens the store at path and arranges its closing with
// t.Cleanup; close closes it early.
func RunDurable(t *testing.T, open func(t *testing.T, path string) bootlevel.Store, closeStore func(bootlevel.Store) error) {
	t.Run("ReopenKeepsData", func(t *testing.T) {
		path, ctx := filepath.Join(t.TempDir(), "state", "runs.db"), ctxFor(t)
		s := open(t, path)
		if err := s.CreateRun(ctx, NewRun("keep")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutService(ctx, NewService("keep", "db", 1)); err != nil {
			t.Fatal(err)
		}
		ev, err := s.AppendEvent(ctx, bootlevel.Event{Run: "keep", Time: base, Kind: "level.start", Level: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := closeStore(s); err != nil {
			t.Fatal(err)
		}
		s = open(t, path)
		got, err := s.GetRun(ctx, "keep")
		if err != nil {
			t.Fatal(err)
		}
		wantRun(t, got, NewRun("keep"))
		svcs, err := s.Services(ctx, "keep")
		if err != nil || len(svcs) != 1 {
			t.Fatalf("Services after reopen = %v, %v", names(svcs), err)
		}
		wantService(t, svcs[0], NewService("keep", "db", 1))
		// Seqs keep growing across reopen: pagers hold on to them.
		ev2, err := s.AppendEvent(ctx, bootlevel.Event{Run: "keep", Time: base, Kind: "level.ready", Level: 1})
		if err != nil {
			t.Fatal(err)
		}
		if ev2.Seq <= ev.Seq {
			t.Errorf("seq after reopen = %d, want > %d", ev2.Seq, ev.Seq)
		}
	})

	t.Run("TwoStoresOneFile", func(t *testing.T) {
		path, ctx := filepath.Join(t.TempDir(), "runs.db"), ctxFor(t)
		writer, reader := open(t, path), open(t, path)
		if err := writer.CreateRun(ctx, NewRun("shared")); err != nil {
			t.Fatal(err)
		}
		var last int64
		for i := 0; i < 5; i++ {
			if err := writer.PutService(ctx, NewService("shared", fmt.Sprintf("s%d", i), i)); err != nil {
				t.Fatal(err)
			}
			ev, err := writer.AppendEvent(ctx, bootlevel.Event{Run: "shared", Time: base, Kind: "service.state", Service: fmt.Sprintf("s%d", i)})
			if err != nil {
				t.Fatal(err)
			}
			// The reader sees every committed write at once, as mgmt tailing a launch would.
			evs, err := reader.Events(ctx, "shared", last)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Seq != ev.Seq {
				t.Fatalf("reader got %+v after seq %d, want just seq %d", evs, last, ev.Seq)
			}
			last = ev.Seq
			svcs, err := reader.Services(ctx, "shared")
			if err != nil || len(svcs) != i+1 {
				t.Fatalf("reader Services = %v, %v; want %d", names(svcs), err, i+1)
			}
		}
		// And the other way round.
		r := NewRun("shared")
		r.State = bootlevel.RunTerminating
		if err := reader.UpdateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := writer.GetRun(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != bootlevel.RunTerminating {
			t.Errorf("writer sees state %q, want %q", got.State, bootlevel.RunTerminating)
		}
		if err := reader.CreateRun(ctx, NewRun("shared")); !errors.Is(err, bootlevel.ErrExists) {
			t.Errorf("CreateRun through second store = %v, want ErrExists", err)
		}
	})
}
