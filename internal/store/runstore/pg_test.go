package runstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/internal/store/runstore/storetest"
)

func openPGAt(t *testing.T, schema string) *PG {
	t.Helper()
	s, err := OpenPG(testCtx(t), pgtest.URL(), schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPGContract runs the bootlevel.Store contract on PostgreSQL, a fresh
// schema per case.
func TestPGContract(t *testing.T) {
	pgtest.Need(t)
	storetest.Run(t, func(t *testing.T) bootlevel.Store { return openPGAt(t, pgtest.Schema(t, "runstore")) })
}

// TestPGDurable runs the durable half: a "path" names a schema, so two
// stores opened on one path share it as two processes would.
func TestPGDurable(t *testing.T) {
	pgtest.Need(t)
	var mu sync.Mutex
	schemas := map[string]string{}
	storetest.RunDurable(t,
		func(t *testing.T, path string) bootlevel.Store {
			mu.Lock()
			schema, ok := schemas[path]
			if !ok {
				schema = pgtest.Schema(t, "runstore")
				schemas[path] = schema
			}
			mu.Unlock()
			return openPGAt(t, schema)
		},
		func(s bootlevel.Store) error { return s.(*PG).Close() })
}

// TestPGEventsAppendOnly: the database itself refuses to change or drop
// an event of a run that exists; deleting the run takes its events along.
func TestPGEventsAppendOnly(t *testing.T) {
	pgtest.Need(t)
	ctx := testCtx(t)
	s := openPGAt(t, pgtest.Schema(t, "runstore"))
	if err := s.CreateRun(ctx, storetest.NewRun("r")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: "r", Kind: "level.start"}); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`UPDATE events SET kind = 'forged'`, `DELETE FROM events`} {
		if _, err := s.DB().Pool.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want refused as append-only", stmt, err)
		}
	}
	if err := s.DeleteRun(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.DB().Pool.QueryRow(context.Background(), `SELECT COUNT(*) FROM events`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d events left after deleting their run (%v)", n, err)
	}
	if _, err := s.Events(ctx, "r", 0); !errors.Is(err, bootlevel.ErrNotFound) {
		t.Errorf("events of a deleted run: %v, want ErrNotFound", err)
	}
}

// TestPGPagingNeverSkipsAnEvent: while writers append to one run at once,
// a reader pages with Events(afterSeq) from the last seq it saw. Every
// event must reach it: with sequence numbers drawn before commit, an event
// committed after a later-numbered one would fall behind the reader's
// cursor, which the run row's lock prevents.
func TestPGPagingNeverSkipsAnEvent(t *testing.T) {
	pgtest.Need(t)
	ctx := testCtx(t)
	s := openPGAt(t, pgtest.Schema(t, "runstore"))
	if err := s.CreateRun(ctx, storetest.NewRun("r")); err != nil {
		t.Fatal(err)
	}
	const writers, each = 6, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: "r", Kind: "w", Level: w, Message: strconv.Itoa(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[int64]bool{}
	var after int64
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		evs, err := s.Events(ctx, "r", after)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			seen[e.Seq] = true
			after = e.Seq
		}
		if finished && len(evs) == 0 {
			break
		}
	}
	all, err := s.Events(ctx, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*each {
		t.Fatalf("%d events stored, want %d", len(all), writers*each)
	}
	var missed []int64
	for _, e := range all {
		if !seen[e.Seq] {
			missed = append(missed, e.Seq)
		}
	}
	if len(missed) > 0 {
		t.Errorf("the paging reader never saw events %v", missed)
	}
}
