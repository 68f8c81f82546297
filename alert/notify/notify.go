// Package notify is the I/O side of package alert: it journals alert
// events in the run's alert journal and delivers them to the sinks a plan
// configures (an HTTP webhook with a generic, Slack or Alertmanager body;
// a command that gets the event on stdin), each from its own goroutine
// behind a bounded queue, with retries by internal/backoff, a timeout per
// attempt and a rate limit. Publish never blocks: a slow or failing sink
// delays no decision of the controller, and what cannot be queued is
// dropped, counted and journaled.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"nightshift/alert"
	"nightshift/internal/backoff"
)

// DefaultQueueLen bounds each sink's queue.
const DefaultQueueLen = 64

// DefaultRetry is the back-off between a sink's attempts.
var DefaultRetry = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2}

// Options configure a Dispatcher.
type Options struct {
	// Journal records every event and delivery; nil records nothing.
	Journal *Journal
	Log     *slog.Logger
	// HTTP sends webhooks (its own timeout is not used: each attempt has
	// the sink's); nil means a plain client.
	HTTP *http.Client
	// QueueLen bounds each sink's queue (default DefaultQueueLen).
	QueueLen int
	// Retry is the back-off between attempts (default DefaultRetry).
	Retry backoff.Policy
	// Redact hides secrets in what leaves the process; nil leaves text
	// as it is.
	Redact func(string) string
	// Now is the clock for the rate limit and records; nil is time.Now.
	Now func() time.Time
}

// Stats counts what became of events, over every sink.
type Stats struct {
	Delivered, Failed, DroppedQueue, DroppedRate int64
}

// Dispatcher fans events out to sinks. Configure it, Run it, Publish to it;
// all methods are safe for concurrent use.
type Dispatcher struct {
	o Options

	mu      sync.Mutex
	ctx     context.Context // set by Run; nil before
	cfg     alert.Config
	workers map[string]*worker
	wg      sync.WaitGroup

	delivered, failed, droppedQueue, droppedRate atomic.Int64
}

type worker struct {
	queue chan alert.Event
	// cancel stops the worker's goroutine; nil until Run starts it.
	cancel context.CancelFunc
	sink   atomic.Pointer[alert.Sink]
	// sent holds the times of the last minute's deliveries, for the rate
	// limit; only the worker's goroutine touches it.
	sent []time.Time
}

// New returns a dispatcher with no sinks.
func New(o Options) *Dispatcher {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{}
	}
	if o.QueueLen <= 0 {
		o.QueueLen = DefaultQueueLen
	}
	if o.Retry.Initial <= 0 {
		o.Retry = DefaultRetry
	}
	if o.Redact == nil {
		o.Redact = func(s string) string { return s }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Dispatcher{o: o, workers: map[string]*worker{}}
}

// Configure replaces the sinks and the rate limit. A sink kept by name
// keeps its queue; a removed one stops after its current attempt and its
// queued events are dropped.
func (d *Dispatcher) Configure(cfg alert.Config) {
	cfg = cfg.WithDefaults()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg = cfg
	d.sync()
}

// Run starts a goroutine per sink and waits until ctx ends and every
// sink's goroutine has stopped.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.ctx != nil {
		d.mu.Unlock()
		return errors.New("notify: Run called twice")
	}
	d.ctx = ctx
	d.sync()
	d.mu.Unlock()
	<-ctx.Done()
	d.wg.Wait()
	return ctx.Err()
}

// sync makes the workers match d.cfg, and starts their goroutines once
// Run has begun (events published before are queued); d.mu is held.
func (d *Dispatcher) sync() {
	want := map[string]bool{}
	for _, s := range d.cfg.Sinks {
		if s.Disabled {
			continue
		}
		want[s.Name] = true
		w, ok := d.workers[s.Name]
		if !ok {
			w = &worker{queue: make(chan alert.Event, d.o.QueueLen)}
			d.workers[s.Name] = w
		}
		sink := s
		w.sink.Store(&sink)
		if d.ctx != nil && w.cancel == nil {
			ctx, cancel := context.WithCancel(d.ctx)
			w.cancel = cancel
			d.wg.Go(func() { d.loop(ctx, w) })
		}
	}
	for name, w := range d.workers {
		if !want[name] {
			if w.cancel != nil {
				w.cancel()
			}
			delete(d.workers, name)
		}
	}
}

// Publish journals evs and queues each for every sink. It never blocks: an
// event a sink's full queue cannot take is dropped for that sink.
func (d *Dispatcher) Publish(evs ...alert.Event) {
	if len(evs) == 0 {
		return
	}
	now := d.o.Now()
	recs := make([]Record, 0, len(evs))
	for i := range evs {
		ev := d.redacted(evs[i])
		evs[i] = ev
		recs = append(recs, Record{Time: now, Event: &ev})
	}
	d.journal(recs...)
	d.mu.Lock()
	workers := make(map[string]*worker, len(d.workers))
	for n, w := range d.workers {
		workers[n] = w
	}
	d.mu.Unlock()
	for _, name := range sortedKeys(workers) {
		w := workers[name]
		for _, ev := range evs {
			select {
			case w.queue <- ev:
			default:
				d.droppedQueue.Add(1)
				d.o.Log.Warn("alert dropped: sink queue full", "sink", name, "key", ev.Key, "status", ev.Status)
				d.journal(Record{Time: now, Delivery: &Delivery{Sink: name, Key: ev.Key, Status: ev.Status, Result: Dropped, Error: "queue full"}})
			}
		}
	}
}

// Stats reports what became of the events so far.
func (d *Dispatcher) Stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Failed: d.failed.Load(), DroppedQueue: d.droppedQueue.Load(), DroppedRate: d.droppedRate.Load()}
}

func (d *Dispatcher) redacted(ev alert.Event) alert.Event {
	ev.Summary = d.o.Redact(ev.Summary)
	if ev.Details != nil {
		det := make(map[string]any, len(ev.Details))
		for k, v := range ev.Details {
			if s, ok := v.(string); ok {
				v = d.o.Redact(s)
			}
			det[k] = v
		}
		ev.Details = det
	}
	return ev
}

func (d *Dispatcher) journal(recs ...Record) {
	if err := d.o.Journal.Append(recs...); err != nil {
		d.o.Log.Warn("alert journal", "err", err)
	}
}

func (d *Dispatcher) loop(ctx context.Context, w *worker) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.queue:
			d.deliver(ctx, w, ev)
		}
	}
}

func (d *Dispatcher) deliver(ctx context.Context, w *worker, ev alert.Event) {
	s := *w.sink.Load()
	now := d.o.Now()
	d.mu.Lock()
	limit := d.cfg.RateLimit
	d.mu.Unlock()
	w.sent = slices.DeleteFunc(w.sent, func(t time.Time) bool { return now.Sub(t) >= time.Minute })
	if len(w.sent) >= limit {
		d.droppedRate.Add(1)
		d.o.Log.Warn("alert dropped: rate limit", "sink", s.Name, "key", ev.Key, "per_minute", limit)
		d.journal(Record{Time: now, Delivery: &Delivery{Sink: s.Name, Key: ev.Key, Status: ev.Status, Result: Dropped,
			Error: fmt.Sprintf("rate limit of %d a minute", limit)}})
		return
	}
	w.sent = append(w.sent, now)
	send := d.sender(s)
	retry := backoff.Backoff{Policy: d.o.Retry}
	var err error
	attempts := 0
	for attempts <= s.Retries {
		attempts++
		actx, cancel := context.WithTimeout(ctx, s.Timeout)
		err = send(actx, ev)
		cancel()
		var perm permanent
		if err == nil || errors.As(err, &perm) || ctx.Err() != nil || attempts > s.Retries {
			break
		}
		delay := retry.Next()
		d.o.Log.Info("alert delivery failed; retrying", "sink", s.Name, "key", ev.Key, "attempt", attempts, "in", delay, "err", d.o.Redact(err.Error()))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	rec := Delivery{Sink: s.Name, Key: ev.Key, Status: ev.Status, Result: Delivered, Attempts: attempts}
	if err != nil {
		rec.Result, rec.Error = Failed, d.o.Redact(err.Error())
		d.failed.Add(1)
		d.o.Log.Warn("alert delivery failed", "sink", s.Name, "key", ev.Key, "attempts", attempts, "err", rec.Error)
	} else {
		d.delivered.Add(1)
		d.o.Log.Info("alert delivered", "sink", s.Name, "key", ev.Key, "status", ev.Status, "attempts", attempts)
	}
	d.journal(Record{Time: d.o.Now(), Delivery: &rec})
}

// permanent marks a failure another attempt cannot fix (a 4xx answer).
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

func (d *Dispatcher) sender(s alert.Sink) func(context.Context, alert.Event) error {
	if s.Type == alert.SinkCommand {
		return func(ctx context.Context, ev alert.Event) error { return runCommand(ctx, s.Command, ev) }
	}
	return func(ctx context.Context, ev alert.Event) error { return postWebhook(ctx, d.o.HTTP, s, ev) }
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// DeliverNow journals ev and delivers it to every configured sink at once,
// with the sinks' retries, returning when all are done or ctx ends. It is
// for a process that is about to exit (mgmt teardown), where nothing is
// left to block; it does not need Run.
func (d *Dispatcher) DeliverNow(ctx context.Context, ev alert.Event) {
	ev = d.redacted(ev)
	d.journal(Record{Time: d.o.Now(), Event: &ev})
	d.mu.Lock()
	var ws []*worker
	for _, name := range sortedKeys(d.workers) {
		ws = append(ws, d.workers[name])
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { d.deliver(ctx, w, ev) })
	}
	wg.Wait()
}
