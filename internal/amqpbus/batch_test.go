package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
)

// batchRecorder is a BatchHandler that records what it was handed and
// answers each delivery by its routing key's suffix: "reject" dead-letters,
// "retry" fails once (then succeeds), "panic" panics; anything else is done.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]string // routing keys, per batch
	seen    map[string]int
	hold    chan struct{} // while set, the first batch waits on it
	holding chan struct{} // closed when the first batch is held
}

func (r *batchRecorder) handle(ctx context.Context, ds []Delivery) []error {
	r.mu.Lock()
	keys := make([]string, len(ds))
	for i, d := range ds {
		keys[i] = d.RoutingKey
		if d.Redelivered {
			keys[i] += "!redelivered"
		}
	}
	r.batches = append(r.batches, keys)
	hold := r.hold
	r.hold = nil
	r.mu.Unlock()
	if hold != nil {
		close(r.holding)
		<-hold
	}
	var errs []error
	for i, d := range ds {
		var err error
		switch d.RoutingKey {
		case "ev.reject":
			err = fmt.Errorf("%w: refused", ErrReject)
		case "ev.panic":
			panic("boom")
		case "ev.retry":
			r.mu.Lock()
			r.seen[d.RoutingKey]++
			if r.seen[d.RoutingKey] == 1 {
				err = errors.New("not yet")
			}
			r.mu.Unlock()
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(ds))
			}
			errs[i] = err
		}
	}
	return errs
}

func (r *batchRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

func (r *batchRecorder) largest() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.batches {
		n = max(n, len(b))
	}
	return n
}

// waitFor polls until the recorder has seen n deliveries.
func (r *batchRecorder) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.all()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d deliveries %v, want %d", len(got), got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A stream that backs up while the handler is busy is handed over in one
// batch, in order, and settled: nothing done is delivered again, a
// rejected delivery is dropped alone, and a failed one alone is redelivered.
func TestSubscribeBatchSettlesEachDeliveryByItsResult(t *testing.T) {
	f := newFixture(t)
	ready := make(readyCounter, 4)
	cfg := f.config("")
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	release := make(chan struct{})
	rec := &batchRecorder{seen: map[string]int{}, hold: release, holding: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.SubscribeBatch(ctx, []string{"ev.#"}, 64, 0, rec.handle) }()
	ready.wait(t, 1)
	pub := func(key string) {
		t.Helper()
		if err := b.Publish(ctx, key, f.envelope("launch", launch{Count: 1})); err != nil {
			t.Fatal(err)
		}
	}
	pub("ev.first")
	<-rec.holding
	// These queue up behind the held first batch.
	for i := range 20 {
		pub(fmt.Sprintf("ev.%02d", i))
	}
	pub("ev.reject")
	pub("ev.retry")
	pub("ev.last")
	// Let the broker hand them all over before the first batch settles.
	time.Sleep(300 * time.Millisecond)
	close(release)
	got := rec.waitFor(t, 1+20+3+1)
	if n := rec.largest(); n < 2 {
		t.Errorf("largest batch %d: a backed-up stream should be handed over in batches", n)
	}
	want := []string{"ev.first"}
	for i := range 20 {
		want = append(want, fmt.Sprintf("ev.%02d", i))
	}
	want = append(want, "ev.reject", "ev.retry", "ev.last", "ev.retry!redelivered")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries\n got %v\nwant %v (in order, the failed one again at the end)", got, want)
	}
	// Nothing acked comes back; the rejected one is gone.
	time.Sleep(300 * time.Millisecond)
	if got := rec.all(); len(got) != len(want) {
		t.Fatalf("after settling: %v, want nothing more", got[len(want):])
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("SubscribeBatch returned %v", err)
	}
}

// A handler that panics loses its batch (dead-lettered, as a panicking
// Handler's message is) and the consumer goes on with the next.
func TestSubscribeBatchSurvivesPanic(t *testing.T) {
	f := newFixture(t)
	ready := make(readyCounter, 4)
	cfg := f.config("")
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	rec := &batchRecorder{seen: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.SubscribeBatch(ctx, []string{"ev.#"}, 8, 0, rec.handle)
	ready.wait(t, 1)
	for _, k := range []string{"ev.panic", "ev.after"} {
		if err := b.Publish(ctx, k, f.envelope("launch", launch{Count: 1})); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.waitFor(t, 2)
	time.Sleep(200 * time.Millisecond)
	got = rec.all()
	if got[len(got)-1] != "ev.after" {
		t.Fatalf("deliveries %v: want ev.after handled after the panic", got)
	}
	for _, k := range got {
		if k == "ev.panic!redelivered" {
			t.Fatalf("deliveries %v: the batch that panicked came back", got)
		}
	}
}

// A consumer whose connection dies while it holds an unacked batch does not
// get that batch again after the reconnect: its exclusive queue went with
// the connection, so a stale heartbeat is never handed over as a new one.
func TestSubscribeBatchConnectionLossRedeliversNothing(t *testing.T) {
	amqptest.NeedRabbitmqctl(t)
	f := newFixture(t)
	ready := make(readyCounter, 4)
	cfg := f.config("batch-" + f.run)
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	release := make(chan struct{})
	rec := &batchRecorder{seen: map[string]int{}, hold: release, holding: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.SubscribeBatch(ctx, []string{"ev.#"}, 8, 0, rec.handle)
	ready.wait(t, 1)
	if err := b.Publish(ctx, "ev.old", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Fatal(err)
	}
	<-rec.holding
	f.killConnection(b)
	close(release) // its ack goes nowhere
	ready.wait(t, 1)
	if err := b.Publish(ctx, "ev.new", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 2)
	time.Sleep(300 * time.Millisecond)
	if got := rec.all(); fmt.Sprint(got) != fmt.Sprint([]string{"ev.old", "ev.new"}) {
		t.Fatalf("deliveries %v, want ev.old once, then ev.new", got)
	}
}

// With maxAge, events that waited longer behind a busy consumer are
// dropped by the broker: the consumer gets what is fresh, not a backlog.
func TestSubscribeBatchDropsEventsOlderThanMaxAge(t *testing.T) {
	f := newFixture(t)
	ready := make(readyCounter, 4)
	cfg := f.config("")
	cfg.OnConsume = ready.hook
	b := f.dial(cfg)
	release := make(chan struct{})
	rec := &batchRecorder{seen: map[string]int{}, hold: release, holding: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.SubscribeBatch(ctx, []string{"ev.#"}, 1, 300*time.Millisecond, rec.handle)
	ready.wait(t, 1)
	pub := func(key string) {
		t.Helper()
		if err := b.Publish(ctx, key, f.envelope("launch", launch{Count: 1})); err != nil {
			t.Fatal(err)
		}
	}
	pub("ev.first")
	<-rec.holding
	const stale = 200
	for i := range stale {
		pub(fmt.Sprintf("ev.stale%03d", i))
	}
	time.Sleep(time.Second) // all of them past maxAge, but what the broker already handed over
	close(release)
	pub("ev.fresh")
	testsupport.Eventually(t, 10*time.Second, func() error {
		if !slices.Contains(rec.all(), "ev.fresh") {
			return errors.New("the event published after the consumer caught up was not delivered")
		}
		return nil
	})
	got := 0
	for _, k := range rec.all() {
		if strings.HasPrefix(k, "ev.stale") {
			got++
		}
	}
	// The consumer's prefetch window was delivered before it expired;
	// everything behind it must have been dropped.
	if got > stale/2 {
		t.Fatalf("%d of %d stale events delivered after waiting past maxAge, want only the prefetched few", got, stale)
	}
}
