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
	"testing"
	"time"

	"nightshift"
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
