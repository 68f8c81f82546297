package provisioner_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/jobspec"
	"nightshift/internal/store/provstore"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

// runningClock records when each instance reached running.
type runningClock struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (r *runningClock) InstanceChanged(_ context.Context, inst provisioner.Instance) error {
	if inst.State == nightshift.StateRunning {
		now := time.Now()
		r.mu.Lock()
		r.at[inst.ID] = now
		r.mu.Unlock()
	}
	return nil
}

// BenchmarkLaunch measures launching n instances (one launch request each)
// through the provisioner with the in-memory driver and a real SQLite store:
// throughput, request-to-running latency, and the cost of a record in memory
// and on disk.
func BenchmarkLaunch(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			var lat []time.Duration
			var elapsed time.Duration
			var memPer, diskPer float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				st, err := provstore.Open(context.Background(), filepath.Join(dir, "p.db"))
				if err != nil {
					b.Fatal(err)
				}
				ev := &runningClock{at: make(map[string]time.Time, n)}
				jobs := provisionertest.Jobs("web")
				p, err := provisioner.New(provisioner.Config{Run: "bench", Driver: provisionertest.NewDriver("bench"), Store: st,
					Events: ev, Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, Jobs: jobs})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- p.Run(ctx) }()
				<-p.Ready()
				requested := make(map[string]time.Time, n)
				req := provisionertest.Launch(jobs, "", "web", 1)
				b.StartTimer()

				t0 := time.Now()
				for j := range n {
					now := time.Now()
					req.LaunchID = fmt.Sprintf("L%d", j)
					insts, err := p.Launch(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					requested[insts[0].ID] = now
				}
				if err := p.WaitIdle(ctx); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(t0)

				b.StopTimer()
				for id, t := range requested {
					r, ok := ev.at[id]
					if !ok {
						b.Fatalf("%s never reached running", id)
					}
					lat = append(lat, r.Sub(t))
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				all, err := p.Describe(context.Background(), "")
				if err != nil || len(all.Instances) != n {
					b.Fatalf("describe: %d records, %v", len(all.Instances), err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				memPer = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(all)
				cancel()
				<-done
				st.Close()
				var disk int64
				for _, f := range []string{"p.db", "p.db-wal"} {
					if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
						disk += fi.Size()
					}
				}
				diskPer = float64(disk) / float64(n)
				b.StartTimer()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "launches/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(memPer, "heap-B/record")
			b.ReportMetric(diskPer, "disk-B/record")
		})
	}
}

// slowEvents stands in for provbus.Events, whose every publish waits for
// the broker's confirm: each call takes delay, and calls may overlap.
type slowEvents struct{ delay time.Duration }

func (e slowEvents) InstanceChanged(ctx context.Context, _ provisioner.Instance) error {
	if e.delay <= 0 {
		return nil
	}
	t := time.NewTimer(e.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return nil
}

// countingStore counts the ledger's write transactions, and the time
// spent writing health (what SetHealth holds the commit lock for).
type countingStore struct {
	*provstore.Store
	mu     sync.Mutex
	txs    int
	health time.Duration
}

func (c *countingStore) count() {
	c.mu.Lock()
	c.txs++
	c.mu.Unlock()
}

func (c *countingStore) commits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.txs
}

func (c *countingStore) CreateLaunch(ctx context.Context, l provisioner.Launch, insts []provisioner.Instance) ([]provisioner.Instance, bool, error) {
	c.count()
	return c.Store.CreateLaunch(ctx, l, insts)
}

func (c *countingStore) UpdateInstance(ctx context.Context, in provisioner.Instance, prev nightshift.InstanceState) error {
	c.count()
	return c.Store.UpdateInstance(ctx, in, prev)
}

func (c *countingStore) UpdateInstances(ctx context.Context, ups []provisioner.Update) ([]error, error) {
	c.count()
	return c.Store.UpdateInstances(ctx, ups)
}

func (c *countingStore) SetHealths(ctx context.Context, job string, healths map[string]string) ([]string, error) {
	c.count()
	t0 := time.Now()
	defer func() {
		c.mu.Lock()
		c.health += time.Since(t0)
		c.mu.Unlock()
	}()
	return c.Store.SetHealths(ctx, job, healths)
}

// cpuTime is the process's user and system CPU time so far: on a shared
// machine it says more about a change than wall time does.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// burstBench is a running provisioner on a fresh SQLite store for one
// iteration of a burst benchmark.
type burstBench struct {
	p      *provisioner.Provisioner
	st     *countingStore
	drv    *provisionertest.Driver
	jobs   map[string]jobspec.Spec
	cancel func()
}

func newBurstBench(b *testing.B, events provisioner.Events) *burstBench {
	b.Helper()
	db, err := provstore.Open(context.Background(), filepath.Join(b.TempDir(), "p.db"))
	if err != nil {
		b.Fatal(err)
	}
	st := &countingStore{Store: db}
	jobs := provisionertest.Jobs("web")
	drv := provisionertest.NewDriver("bench")
	p, err := provisioner.New(provisioner.Config{Run: "bench", Driver: drv, Store: st,
		Events: events, Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, Jobs: jobs})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	return &burstBench{p: p, st: st, drv: drv, jobs: jobs, cancel: func() { cancel(); <-done; st.Close() }}
}

// launch launches n and waits until all are running; it returns how long
// the Launch call itself took (what a controller waits for its reply).
func (bb *burstBench) launch(b *testing.B, id string, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	if _, err := bb.p.Launch(ctx, provisionertest.Launch(bb.jobs, id, "web", n)); err != nil {
		b.Fatal(err)
	}
	reply := time.Since(t0)
	if err := bb.p.WaitIdle(ctx); err != nil {
		b.Fatal(err)
	}
	return reply
}

// burstEvents are the event sinks the burst benchmarks run with: none,
// and one whose publishes take a millisecond, about what a confirmed
// publish to a local broker costs.
var burstEvents = []struct {
	name  string
	delay time.Duration
}{{"none", 0}, {"1ms", time.Millisecond}}

// BenchmarkLaunchBurst measures one launch request for n instances, as a
// controller sends when a pool grows from empty (nsbench -run scale's
// 0 -> 10,000): from the request to every instance recorded running, with
// the in-memory driver and a real SQLite store.
func BenchmarkLaunchBurst(b *testing.B) {
	for _, ev := range burstEvents {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("events=%s/instances=%d", ev.name, n), func(b *testing.B) {
				var elapsed, cpu, reply time.Duration
				var commits int
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					bb := newBurstBench(b, slowEvents{ev.delay})
					b.StartTimer()
					t0, c0, n0 := time.Now(), cpuTime(b), bb.st.commits()
					reply += bb.launch(b, "burst", n)
					elapsed += time.Since(t0)
					cpu += cpuTime(b) - c0
					commits += bb.st.commits() - n0
					b.StopTimer()
					if live := len(bb.drv.Live()); live != n {
						b.Fatalf("%d live, want %d", live, n)
					}
					bb.cancel()
					b.StartTimer()
				}
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "launches/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/launch")
				b.ReportMetric(float64(commits)/float64(n*b.N), "commits/launch")
				b.ReportMetric(float64(reply.Microseconds())/1000/float64(b.N), "reply-ms")
			})
		}
	}
}

// BenchmarkTerminateAll measures terminate_all of n running instances
// (mgmt teardown): from the command to every instance recorded terminated.
func BenchmarkTerminateAll(b *testing.B) {
	for _, ev := range burstEvents {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("events=%s/instances=%d", ev.name, n), func(b *testing.B) {
				var elapsed, cpu, reply time.Duration
				var commits int
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					bb := newBurstBench(b, slowEvents{ev.delay})
					bb.launch(b, "burst", n)
					ctx := context.Background()
					b.StartTimer()
					t0, c0, n0 := time.Now(), cpuTime(b), bb.st.commits()
					if _, err := bb.p.TerminateAll(ctx); err != nil {
						b.Fatal(err)
					}
					reply += time.Since(t0)
					if err := bb.p.WaitIdle(ctx); err != nil {
						b.Fatal(err)
					}
					elapsed += time.Since(t0)
					cpu += cpuTime(b) - c0
					commits += bb.st.commits() - n0
					b.StopTimer()
					if live := len(bb.drv.Live()); live != 0 {
						b.Fatalf("%d live after terminate_all", live)
					}
					bb.cancel()
					b.StartTimer()
				}
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "terminations/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/termination")
				b.ReportMetric(float64(commits)/float64(n*b.N), "commits/termination")
				b.ReportMetric(float64(reply.Microseconds())/1000/float64(b.N), "reply-ms")
			})
		}
	}
}

// BenchmarkSetHealth measures a health report that changes every worker
// of a pool of 10,000 (the first report after a controller restart, or a
// whole pool turning), with a real SQLite ledger: each iteration turns
// the whole pool, healthy and unhealthy in turn. Besides the call's time:
// the ledger writes it costs, and how long they took, which is how long
// it holds launches and terminations back (the commit lock).
func BenchmarkSetHealth(b *testing.B) {
	const n = 10000
	bb := newBurstBench(b, slowEvents{})
	defer bb.cancel()
	bb.launch(b, "pool", n)
	ids := bb.drv.Live()
	ctx := context.Background()
	n0 := bb.st.commits()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := provisioner.HealthBody{Job: "web", Healthy: ids}
		if i%2 == 1 {
			r = provisioner.HealthBody{Job: "web", Unhealthy: ids}
		}
		if err := bb.p.SetHealth(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	bb.st.mu.Lock()
	held := bb.st.health
	bb.st.mu.Unlock()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/report")
	b.ReportMetric(float64(held.Microseconds())/1000/float64(b.N), "write-ms/report")
	b.ReportMetric(float64(bb.st.commits()-n0)/float64(b.N), "commits/report")
}
