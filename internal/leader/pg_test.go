package leader_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
)

// migrations are a store of one table the candidates write to.
var migrations = fstest.MapFS{"m/0001_writes.sql": {Data: []byte(
	`CREATE TABLE writes (id BIGSERIAL PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL);`)}}

func openStore(t *testing.T, url, schema string, f leader.Fence) *pgdb.DB {
	t.Helper()
	db, err := pgdb.Open(context.Background(), pgdb.Config{URL: url, Schema: schema, Migrations: migrations, Dir: "m", Fence: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func write(ctx context.Context, db *pgdb.DB) error {
	f := db.Fence()
	return db.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO writes (holder, epoch) VALUES ($1, $2)`, f.Holder, f.Epoch)
		return err
	})
}

func candidate(t *testing.T, db *pgdb.DB, holder string, ttl time.Duration) *leader.Lease {
	t.Helper()
	l, err := leader.New(context.Background(), leader.Config{DB: db.Pool, Schema: db.Schema, Name: "provisioner", Holder: holder,
		TTL: ttl, Retry: ttl / 10})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTakeoverFencesTheOldLeader: A leads and writes; A stops renewing (as
// a paused process does); B takes over at epoch+1 once the lease expires
// by the database's clock, and from then on every write of A fails with
// ErrFenced while B's succeed.
func TestTakeoverFencesTheOldLeader(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "leader")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := openStore(t, url, schema, leader.Fence{})
	const ttl = time.Second
	a, b := candidate(t, base, "a", ttl), candidate(t, base, "b", ttl)
	fa, ok, err := a.TryAcquire(ctx)
	if err != nil || !ok || fa.Epoch != 1 {
		t.Fatalf("A TryAcquire = %+v %v %v, want epoch 1", fa, ok, err)
	}
	if _, ok, err := b.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("B took a held lease: ok=%v err=%v", ok, err)
	}
	storeA := openStore(t, url, schema, fa)
	if err := write(ctx, storeA); err != nil {
		t.Fatalf("leader's write: %v", err)
	}
	// A pauses: no more renewals. B waits as a standby.
	fb, err := b.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fb.Epoch != fa.Epoch+1 || fb.Holder != "b" {
		t.Fatalf("B holds %+v, want epoch %d", fb, fa.Epoch+1)
	}
	storeB := openStore(t, url, schema, fb)
	if err := write(ctx, storeB); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
	if err := write(ctx, storeA); !errors.Is(err, leader.ErrFenced) {
		t.Fatalf("deposed leader's write: %v, want ErrFenced", err)
	}
	// A's renewal, however late, does not bring it back.
	holdCtx, stop := context.WithCancel(ctx)
	defer stop()
	if err := a.Hold(holdCtx, fa); !errors.Is(err, leader.ErrLost) {
		t.Fatalf("deposed Hold = %v, want ErrLost", err)
	}
	var epochs []int64
	rows, _ := base.Pool.Query(ctx, `SELECT epoch FROM writes ORDER BY id`)
	epochs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || fmt.Sprint(epochs) != "[1 2]" {
		t.Fatalf("writes by epoch %v (%v), want [1 2]", epochs, err)
	}
	if h, e, live, err := leader.Current(ctx, base.Pool, schema, "provisioner"); err != nil || h != "b" || e != 2 || !live {
		t.Errorf("Current = %s %d %v %v, want b 2 live", h, e, live, err)
	}
}

// TestReleaseHandsOverAtOnce: a leader shutting down releases the lease,
// and the standby takes it without waiting out the TTL.
func TestReleaseHandsOverAtOnce(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "leader")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := openStore(t, url, schema, leader.Fence{})
	// A TTL far beyond the test's deadline: only the release can explain
	// a takeover.
	a, b := candidate(t, base, "a", time.Hour), candidate(t, base, "b", time.Hour)
	fa, ok, err := a.TryAcquire(ctx)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	holdCtx, stop := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- a.Hold(holdCtx, fa) }()
	stop()
	if err := <-held; err != nil {
		t.Fatalf("Hold after shutdown: %v", err)
	}
	fb, ok, err := b.TryAcquire(ctx)
	if err != nil || !ok || fb.Epoch != 2 {
		t.Fatalf("B after release: %+v %v %v, want epoch 2", fb, ok, err)
	}
	if err := write(ctx, openStore(t, url, schema, fa)); !errors.Is(err, leader.ErrFenced) {
		t.Fatalf("released leader's write: %v, want ErrFenced", err)
	}
}

// The helper process of TestSIGSTOPedLeaderIsFenced: it takes the lease,
// says so, then writes in a loop, printing each outcome, while Hold renews.
func TestHelperCandidate(t *testing.T) {
	url, schema := os.Getenv("LEADER_HELPER_URL"), os.Getenv("LEADER_HELPER_SCHEMA")
	if url == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	base := openStore(t, url, schema, leader.Fence{})
	l := candidate(t, base, "helper", time.Second)
	f, err := l.Acquire(ctx)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	st := openStore(t, url, schema, f)
	lost := make(chan error, 1)
	go func() { lost <- l.Hold(ctx, f) }()
	fmt.Println("leader", f.Epoch)
	for {
		select {
		case err := <-lost:
			fmt.Println("lost", err)
			os.Exit(3)
		default:
		}
		err := write(ctx, st)
		switch {
		case errors.Is(err, leader.ErrFenced):
			fmt.Println("fenced")
		case err != nil:
			fmt.Println("error", err)
		default:
			fmt.Println("wrote")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSIGSTOPedLeaderIsFenced: a real leader process is paused with
// SIGSTOP; this test takes over once the lease expired, writes, and
// resumes the old leader with SIGCONT. The old leader's writes are
// refused (ErrFenced) and it gives up with ErrLost, exiting non-zero;
// no write of epoch 1 lands after the first of epoch 2.
func TestSIGSTOPedLeaderIsFenced(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "leader")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := openStore(t, url, schema, leader.Fence{})
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperCandidate$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LEADER_HELPER_URL="+url, "LEADER_HELPER_SCHEMA="+schema)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGCONT); cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("helper ended before %q", want)
				}
				if strings.HasPrefix(l, want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q from the helper", want)
			}
		}
	}
	next("leader 1")
	next("wrote")
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b := candidate(t, base, "b", time.Second)
	fb, err := b.Acquire(ctx)
	if err != nil || fb.Epoch != 2 {
		t.Fatalf("takeover: %+v %v, want epoch 2", fb, err)
	}
	if err := write(ctx, openStore(t, url, schema, fb)); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
	// Drain what the helper printed before it stopped.
	for drained := false; !drained; {
		select {
		case <-lines:
		default:
			drained = true
		}
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("old leader exit: %v, want status 3 (lease lost); output after SIGCONT: %q", err, rest)
	}
	for _, l := range rest {
		if l == "wrote" {
			t.Errorf("old leader wrote after being deposed; output after SIGCONT: %q", rest)
			break
		}
	}
	rows, _ := base.Pool.Query(ctx, `SELECT epoch FROM writes WHERE id > (SELECT MIN(id) FROM writes WHERE epoch = 2) AND epoch = 1`)
	late, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(late) != 0 {
		t.Errorf("%d writes of epoch 1 after epoch 2's first (%v)", len(late), err)
	}
}

// TestHolderSurvivesDroppedConnections: the server drops the holder's
// connections (a database restart, a proxy timing out) again and again;
// renewals retry on fresh connections within the TTL, so the holder keeps
// its lease at the same epoch and nobody else gets it.
func TestHolderSurvivesDroppedConnections(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "leader")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := openStore(t, url, schema, leader.Fence{})
	app := "lease-holder-" + schema
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const ttl = 2 * time.Second
	a, err := leader.New(ctx, leader.Config{DB: pool, Schema: schema, Name: "controller", Holder: "a", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	b, err := leader.New(ctx, leader.Config{DB: base.Pool, Schema: schema, Name: "controller", Holder: "b", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	fa, ok, err := a.TryAcquire(ctx)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	holdCtx, stop := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- a.Hold(holdCtx, fa) }()
	// Drop A's connections for two TTLs, four times a TTL; meanwhile B
	// keeps trying.
	var dropped int64
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); {
		var n int64
		if err := base.Pool.QueryRow(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		dropped += n
		if _, ok, err := b.TryAcquire(ctx); ok || err != nil {
			t.Fatalf("B took the lease while A renews: ok=%v err=%v", ok, err)
		}
		time.Sleep(ttl / 4) // pacing of the fault, not an assertion
	}
	stop()
	if err := <-held; err != nil {
		t.Fatalf("A's Hold = %v, want it kept through dropped connections", err)
	}
	if dropped == 0 {
		t.Fatal("no connection of A's was dropped: the test proved nothing")
	}
	if h, e, _, err := leader.Current(ctx, base.Pool, schema, "controller"); err != nil || h != "a" || e != fa.Epoch {
		t.Errorf("lease after the faults: %s epoch %d (%v), want a epoch %d", h, e, err, fa.Epoch)
	}
}

// TestStandbyTakesOverAtTheExpiry: with a Retry far beyond the test's
// deadline, a standby still takes over a lease its holder stopped
// renewing, because it tries again when the database says the lease
// expires rather than a Retry later.
func TestStandbyTakesOverAtTheExpiry(t *testing.T) {
	url := pgtest.Need(t)
	schema := pgtest.Schema(t, "leader")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := openStore(t, url, schema, leader.Fence{})
	a := candidate(t, base, "a", time.Second)
	if _, ok, err := a.TryAcquire(ctx); err != nil || !ok {
		t.Fatal(ok, err)
	}
	b, err := leader.New(ctx, leader.Config{DB: base.Pool, Schema: base.Schema, Name: "provisioner", Holder: "b",
		TTL: time.Second, Retry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fb, err := b.Acquire(ctx)
	if err != nil || fb.Epoch != 2 {
		t.Fatalf("standby: %+v %v, want epoch 2 once A's lease expired", fb, err)
	}
}
