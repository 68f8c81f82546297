package mgmtbus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/store/provstore"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/worker/simworker"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provbus"
	"nightshift/provisioner/provisionertest"
	"nightshift/sitter"
)

// discardBeats is a heartbeat sink that sends nothing: teardown does not
// depend on the beats, and the machine is shared.
type discardBeats struct{}

func (discardBeats) SendHeartbeat(context.Context, sitter.Heartbeat) error { return nil }

// simPool is a real provisioner with the sim driver and a SQLite ledger,
// served over the real broker (its instance events published there), and
// a Conn to it as `mgmt teardown` has.
type simPool struct {
	p    *provisioner.Provisioner
	drv  *simworker.Driver
	conn *Conn
	jobs map[string]jobspec.Spec
	stop func()
}

func newSimPool(tb testing.TB) *simPool {
	tb.Helper()
	amqptest.NeedBroker(tb)
	run := amqptest.UniqueName(tb, "tdbench")
	amqptest.DeleteAtEnd(tb, amqptest.Topology{Queues: []string{amqpbus.CommandQueue(run, provisioner.Component), amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.EventsExchange(run), amqpbus.DeadLetterExchange(run)}})
	ctx, cancel := context.WithCancel(context.Background())
	dial := func(name string, onConsume func(string)) *amqpbus.Bus {
		b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: slog.New(slog.DiscardHandler), OnConsume: onConsume})
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	st, err := provstore.Open(ctx, filepath.Join(tb.TempDir(), "p.db"))
	if err != nil {
		tb.Fatal(err)
	}
	consuming := make(chan string, 4)
	srvBus := dial("provisioner", func(q string) { consuming <- q })
	drv, err := simworker.New(simworker.Config{Run: run, Sinks: []sitter.HeartbeatSink{discardBeats{}}, BootDelay: time.Millisecond, HeartbeatInterval: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	jobs := map[string]jobspec.Spec{"load": {Driver: simworker.Name, Worker: map[string]any{"name": "work"}}}
	secret := []byte("0123456789abcdef0123456789abcdef")
	p, err := provisioner.New(provisioner.Config{Run: run, Driver: drv, Store: st, Events: provbus.Events{Bus: srvBus},
		Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, Jobs: jobs})
	if err != nil {
		tb.Fatal(err)
	}
	srv := &provbus.Server{Bus: srvBus, Provisioner: p, Log: slog.New(slog.DiscardHandler),
		Signer: &envelope.Signer{Secret: secret}, Ledger: st.Commands()}
	done := make(chan struct{}, 2)
	go func() { p.Run(ctx); done <- struct{}{} }()
	go func() { srv.Serve(ctx); done <- struct{}{} }()
	select {
	case <-consuming:
	case <-time.After(10 * time.Second):
		tb.Fatal("provisioner never started consuming")
	}
	bus := dial("mgmt", nil)
	signer := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(1024)}
	conn := &Conn{run: run, bus: bus, signer: signer, prov: client.New(bus, signer, "mgmt", slog.New(slog.DiscardHandler))}
	return &simPool{p: p, drv: drv, conn: conn, jobs: jobs, stop: func() {
		cancel()
		<-done
		<-done
		drv.Close()
		bus.Close()
		srvBus.Close()
		st.Close()
	}}
}

// up launches n and waits until the simulator holds them all.
func (s *simPool) up(tb testing.TB, n int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := s.p.Launch(ctx, provisionertest.Launch(s.jobs, "up", "load", n)); err != nil {
		tb.Fatal(err)
	}
	if err := s.p.WaitIdle(ctx); err != nil {
		tb.Fatal(err)
	}
	if live := s.drv.Stats().Live; live != n {
		tb.Fatalf("%d simulated workers live, want %d", live, n)
	}
}

// BenchmarkTerminateAllOverBus measures the pools' part of `mgmt
// teardown`: Conn.TerminateAll (terminate_all, then polling until nothing
// is live) against a real provisioner with the sim driver and a SQLite
// ledger over the real broker, at n workers. progress-reports counts the
// polls that saw a new live count.
//
//	go test -run '^$' -bench '^BenchmarkTerminateAllOverBus$' -benchtime 1x ./mgmt/mgmtbus
func BenchmarkTerminateAllOverBus(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			var took, cpu time.Duration
			var polls int
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := newSimPool(b)
				s.up(b, n)
				b.StartTimer()
				t0 := time.Now()
				c0 := processCPU(b)
				gone, err := s.conn.TerminateAll(context.Background(), "", func(int) { polls++ })
				cpu += processCPU(b) - c0
				took += time.Since(t0)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if len(gone) != n || s.drv.Stats().Live != 0 {
					b.Fatalf("%d reported gone, %d simulated still live; want %d and 0", len(gone), s.drv.Stats().Live, n)
				}
				s.stop()
				b.StartTimer()
			}
			b.ReportMetric(took.Seconds()/float64(b.N), "s/teardown")
			b.ReportMetric(float64(polls)/float64(b.N), "progress-reports")
			// CPU of the whole test process (provisioner, simulator,
			// mgmt's side): what the polls cost, robust where wall time
			// is not on a shared machine.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/teardown")
		})
	}
}

func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
