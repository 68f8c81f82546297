package leader

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// fakeOps is a database whose renewals answer what the test says.
type fakeOps struct {
	mu       sync.Mutex
	renewErr error
	renewOK  bool
	renewals int
	released []Fence
}

func (f *fakeOps) acquire(context.Context, string, string, time.Duration) (int64, bool, time.Duration, error) {
	return 1, true, 0, nil
}

func (f *fakeOps) renew(context.Context, Fence, time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals++
	return f.renewOK, f.renewErr
}

func (f *fakeOps) release(_ context.Context, fc Fence) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, fc)
	return nil
}

func (f *fakeOps) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renewals
}

// advanceUntil moves the fake clock a step at a time, waiting each time
// for Hold to be blocked on its timer again, until Hold returns.
func advanceUntil(t *testing.T, clock *clockwork.FakeClock, step time.Duration, done <-chan error) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() { err := <-done; result <- err; cancel() }()
	for range 1000 {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			return <-result
		}
		clock.Advance(step)
	}
	t.Fatal("Hold never returned")
	return nil
}

func TestHold(t *testing.T) {
	const ttl = 15 * time.Second
	for _, tc := range []struct {
		name     string
		ok       bool
		err      error
		wantLost bool
		// minRenewals: failing renewals are retried until the TTL runs
		// out, not given up after one.
		minRenewals int
	}{
		{name: "taken over", ok: false, wantLost: true, minRenewals: 1},
		{name: "database unreachable past the TTL", err: errors.New("connection refused"), wantLost: true, minRenewals: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := clockwork.NewFakeClock()
			ops := &fakeOps{renewOK: tc.ok, renewErr: tc.err}
			l := newLease(Config{Schema: "s", Name: "provisioner", Holder: "a", TTL: ttl, Clock: clock}, ops)
			done := make(chan error, 1)
			f := Fence{Schema: "s", Name: "provisioner", Holder: "a", Epoch: 7}
			start := clock.Now()
			go func() { done <- l.Hold(context.Background(), f) }()
			err := advanceUntil(t, clock, time.Second, done)
			if !errors.Is(err, ErrLost) {
				t.Fatalf("Hold = %v, want ErrLost", err)
			}
			if n := ops.count(); n < tc.minRenewals {
				t.Errorf("%d renewals before giving up, want >= %d", n, tc.minRenewals)
			}
			if tc.err != nil && clock.Since(start) > ttl+time.Second {
				t.Errorf("gave up %v after the last renewal, want within the TTL %v", clock.Since(start), ttl)
			}
		})
	}
}

func TestHoldRenewsAndReleasesOnShutdown(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ops := &fakeOps{renewOK: true}
	l := newLease(Config{Schema: "s", Name: "c", Holder: "a", TTL: 3 * time.Second, Clock: clock}, ops)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	f := Fence{Schema: "s", Name: "c", Holder: "a", Epoch: 2}
	go func() { done <- l.Hold(ctx, f) }()
	// Ten TTLs of successful renewals keep the lease.
	for range 30 {
		if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	if n := ops.count(); n < 25 {
		t.Fatalf("%d renewals in 30 s with a 3 s TTL, want one a second", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Hold after shutdown = %v, want nil", err)
	}
	if len(ops.released) != 1 || ops.released[0] != f {
		t.Errorf("released %v, want %v", ops.released, f)
	}
}

// TestPausedHolderStopsWithoutRenewing: a holder whose process was paused
// past its TTL (the clock jumps) gives up on its first tick, without
// trying to renew what another candidate may hold by now.
func TestPausedHolderStopsWithoutRenewing(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ops := &fakeOps{renewOK: true}
	l := newLease(Config{Schema: "s", Name: "c", Holder: "a", TTL: 15 * time.Second, Clock: clock}, ops)
	done := make(chan error, 1)
	go func() { done <- l.Hold(context.Background(), Fence{Schema: "s", Name: "c", Holder: "a", Epoch: 1}) }()
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if err := <-done; !errors.Is(err, ErrLost) {
		t.Fatalf("Hold = %v, want ErrLost", err)
	}
	if n := ops.count(); n != 0 {
		t.Errorf("%d renewals after the pause, want none", n)
	}
}

// TestHoldCountsFromTheAcquire: a daemon that set up for longer than the
// TTL between taking the lease and holding it does not believe it still
// leads: Hold gives up at once, without renewing a lease that expired.
func TestHoldCountsFromTheAcquire(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ops := &fakeOps{renewOK: true}
	l := newLease(Config{Schema: "s", Name: "c", Holder: "a", TTL: 15 * time.Second, Clock: clock}, ops)
	f, ok, err := l.TryAcquire(context.Background())
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	clock.Advance(20 * time.Second)
	if err := l.Hold(context.Background(), f); !errors.Is(err, ErrLost) {
		t.Fatalf("Hold = %v, want ErrLost", err)
	}
	if n := ops.count(); n != 0 {
		t.Errorf("%d renewals of an expired tenure, want none", n)
	}
}

// heldOps is a lease another holder has, expiring left after each try
// until tries run out; then it is free.
type heldOps struct {
	fakeOps
	mu    sync.Mutex
	left  time.Duration
	held  int
	tries int
}

func (h *heldOps) acquire(context.Context, string, string, time.Duration) (int64, bool, time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tries++
	if h.tries <= h.held {
		return 0, false, h.left, nil
	}
	return 7, true, 0, nil
}

func (h *heldOps) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tries
}

// TestStandbyTriesAtTheExpiry: a standby that found the lease with 200 ms
// left tries again just after it expires, not a whole Retry (1 s) later,
// so a kill -9'd holder is replaced within the TTL, not TTL plus Retry.
// A lease with more than Retry left is still tried every Retry, so a
// release is seen as before.
func TestStandbyTriesAtTheExpiry(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration
		want time.Duration // when the second try is due
	}{
		{"expires before the next retry", 200 * time.Millisecond, 200*time.Millisecond + expiryMargin},
		{"expires after it", 5 * time.Second, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := clockwork.NewFakeClock()
			ops := &heldOps{left: tc.left, held: 1}
			l := newLease(Config{Schema: "s", Name: "controller", Holder: "b", TTL: 3 * time.Second, Retry: time.Second, Clock: clock}, ops)
			done := make(chan Fence, 1)
			go func() {
				f, err := l.Acquire(context.Background())
				if err != nil {
					t.Error(err)
				}
				done <- f
			}()
			clock.BlockUntil(1)
			if ops.count() != 1 {
				t.Fatalf("%d tries before waiting, want 1", ops.count())
			}
			clock.Advance(tc.want - time.Millisecond)
			if ops.count() != 1 {
				t.Fatalf("tried again %v after, before %v", tc.want-time.Millisecond, tc.want)
			}
			clock.Advance(time.Millisecond)
			select {
			case f := <-done:
				if f.Epoch != 7 {
					t.Fatalf("fence %+v, want epoch 7", f)
				}
			case <-time.After(10 * time.Second): // a deadlock guard, not a timing
				t.Fatalf("no second try %v after the first", tc.want)
			}
		})
	}
}
