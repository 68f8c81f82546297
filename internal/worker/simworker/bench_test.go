package simworker_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

// BenchmarkSimHeartbeats measures how many heartbeats the simulator's
// sinks push through the real broker to a subscriber, and at what CPU cost
// in this process, with 10,000 simulated sitters sharing 4 connections as
// nsbench's scale scenario runs them. Every sitter sends back to back, so
// beats/s is the simulator's ceiling: at 10,000 instances on 1 s beats it
// must stay well above 10,000.
//
//	go test ./internal/worker/simworker -run '^$' -bench SimHeartbeats -benchtime 100000x
func BenchmarkSimHeartbeats(b *testing.B) {
	// confirmed is how the simulator published before: each beat waits
	// for its broker confirm, as a real sitter's does.
	b.Run("confirmed", func(b *testing.B) { benchSimHeartbeats(b, false) })
	b.Run("unconfirmed", func(b *testing.B) { benchSimHeartbeats(b, true) })
}

func benchSimHeartbeats(b *testing.B, unconfirmed bool) {
	amqptest.NeedBroker(b)
	const instances, conns = 10000, 4
	run := fmt.Sprintf("simbench-%d", time.Now().UnixNano())
	amqptest.DeleteAtEnd(b, amqptest.Topology{Queues: []string{amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.DeadLetterExchange(run), amqpbus.EventsExchange(run)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dial := func(name string, onConsume func(string)) *amqpbus.Bus {
		bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: name, Run: run, Log: slog.New(slog.DiscardHandler), OnConsume: onConsume})
		if err != nil {
			b.Fatalf("dial %s: %v", name, err)
		}
		b.Cleanup(func() { _ = bus.Close() })
		return bus
	}
	var got atomic.Int64
	consuming := make(chan string, 1)
	sub := dial("controller", func(q string) { consuming <- q })
	go func() {
		_ = sub.Subscribe(ctx, []string{sitterbus.HeartbeatKey("*", "*")}, func(context.Context, amqpbus.Delivery) error {
			got.Add(1)
			return nil
		})
	}()
	<-consuming
	sinks := make([]sitter.HeartbeatSink, conns)
	for i := range sinks {
		sinks[i] = &sitterbus.Sink{Bus: dial(fmt.Sprintf("sim-%d", i), nil), Sender: "sim", Timeout: time.Second, Unconfirmed: unconfirmed}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var sent, dropped atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("sim-%05d", i)
			sink := sinks[i%conns]
			<-start
			for left.Add(-1) >= 0 {
				hb := sitter.Heartbeat{InstanceID: id, Job: "scale", Host: "sim", Time: time.Now().UTC(), LimitMode: "none",
					Tasks: []sitter.TaskStatus{{Name: "crunch", State: sitter.StateRunning, Work: sitter.WorkIdle}}}
				if err := sink.SendHeartbeat(ctx, hb); err != nil {
					if dropped.Add(1) == 1 {
						b.Logf("first drop: %v", err)
					}
				} else {
					sent.Add(1)
				}
			}
		}()
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(sent.Load())/elapsed.Seconds(), "beats/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/beat")
	b.ReportMetric(float64(dropped.Load()), "dropped")
	// Let the subscriber catch up, so the next round starts on an idle broker.
	for deadline := time.Now().Add(10 * time.Second); got.Load() < sent.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
