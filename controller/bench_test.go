package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift"
	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/redact"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/mgmt"
	"nightshift/sitter"
)

// BenchmarkTick measures one decision round of a steady pool: snapshot
// build (with health assessment of every instance) plus the engine.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			r := newRig(b, npJob(b, n))
			ids := r.prov.seed("web", n, nightshift.StateRunning, t0.Add(-time.Hour))
			r.restart()
			for _, id := range ids {
				r.heartbeat("web", id, false)
			}
			ctx := context.Background()
			r.c.Tick(ctx)
			b.ResetTimer()
			for b.Loop() {
				r.c.Tick(ctx)
			}
			b.StopTimer()
			if got, _ := r.prov.launched(); got != 0 {
				b.Fatalf("steady pool launched %d", got)
			}
		})
	}
}

// BenchmarkHeartbeatIngest measures decoding and recording heartbeats
// (target: >= 10,000/s on one core).
func BenchmarkHeartbeatIngest(b *testing.B) {
	const n = 1000
	r := newRig(b, npJob(b, n))
	ids := r.prov.seed("web", n, nightshift.StateRunning, t0)
	r.restart()
	msgs := make([][]byte, n)
	for i, id := range ids {
		msgs[i] = heartbeatMessage(b, sitter.Heartbeat{InstanceID: id, Job: "web", Host: "h", Time: t0,
			Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: sitter.WorkBusy}}})
	}
	reg := ctlbus.Messages()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		hb, err := ctlbus.DecodeHeartbeat(reg, msgs[i%n])
		if err != nil {
			b.Fatal(err)
		}
		r.c.IngestHeartbeat(hb)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
}

func heartbeatMessage(t testing.TB, hb sitter.Heartbeat) []byte {
	env, err := envelope.NewEnvelope(ctlbus.TypeHeartbeat, 1, "r1", "sitter@h", ctlbus.HeartbeatBody(hb), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkIngestHeartbeats measures the controller's heartbeat path over
// the real broker at 10,000 workers: one op is a round of one heartbeat per
// worker, published raw to the run's events exchange, until the controller
// has ingested the last of them (a beat of a one-worker job sent after the
// round, read back with Status: the subscription queue is FIFO). The
// controller ticks every second meanwhile, as it does in a run. batch=1 is
// the path before batching (a lock and an ack per beat, 32 unacked);
// batch=512 is ctlbus's default.
func BenchmarkIngestHeartbeats(b *testing.B) {
	const n = 10000
	for _, batch := range []int{1, amqpbus.DefaultBatch} {
		b.Run(fmt.Sprintf("instances=%d/batch=%d", n, batch), func(b *testing.B) {
			bus, run := dialTestBus(b)
			probe := mustJob(b, "probe", map[string]any{
				"engine": "npreserving", "policy": map[string]any{"n": 1, "deployable": "worker"},
				"worker": map[string]any{"command": []any{"/bin/worker"}},
			})
			r := newRig(b, npJob(b, n), probe)
			ids := r.prov.seed("web", n, nightshift.StateRunning, t0.Add(-time.Hour))
			probeID := r.prov.seed("probe", 1, nightshift.StateRunning, t0.Add(-time.Hour))[0]
			r.restart()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: r.clock, Ledger: r.store.Commands(), HeartbeatBatch: batch,
				Signer: &envelope.Signer{Secret: []byte(strings.Repeat("k", 32)), Now: r.clock.Now}}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx) }()
			go func() {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						r.c.Tick(ctx)
					}
				}
			}()
			pub := newRawPublisher(b, run)
			beat := func(job, id string, busy bool) []byte {
				w := sitter.WorkIdle
				if busy {
					w = sitter.WorkBusy
				}
				return heartbeatMessage(b, sitter.Heartbeat{InstanceID: id, Job: job, Host: "h", Time: t0,
					Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: w}}})
			}
			msgs := make([][]byte, n)
			for i, id := range ids {
				msgs[i] = beat("web", id, true)
			}
			marks := [2][]byte{beat("probe", probeID, false), beat("probe", probeID, true)}
			// heard waits until the probe worker's last beat said busy.
			heard := func(busy bool, resend bool) {
				for {
					if resend {
						pub.send(ctlbus.HeartbeatKey("probe", probeID), marks[boolIndex(busy)])
					}
					st, err := r.c.Status("probe")
					if err != nil {
						b.Fatal(err)
					}
					if w := st[0].Workers; len(w) == 1 && w[0].HeartbeatAgeS != nil && w[0].Busy == busy {
						return
					}
					time.Sleep(2 * time.Millisecond)
					select {
					case err := <-served:
						b.Fatalf("serve: %v", err)
					default:
					}
				}
			}
			// The subscription is bound once a beat gets through.
			heard(true, true)
			busy := true
			cpu0 := processCPU(b)
			b.ResetTimer()
			for b.Loop() {
				busy = !busy
				for i, id := range ids {
					pub.send(ctlbus.HeartbeatKey("web", id), msgs[i])
				}
				pub.send(ctlbus.HeartbeatKey("probe", probeID), marks[boolIndex(busy)])
				heard(busy, false)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "heartbeats/s")
			// CPU of the whole test process (the raw publisher's share is
			// the same in both modes): robust where wall time is not on a
			// shared machine.
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/heartbeat")
			st, err := r.c.Status("web")
			if err != nil {
				b.Fatal(err)
			}
			for _, w := range st[0].Workers {
				if w.HeartbeatAgeS == nil || !w.Busy {
					b.Fatalf("worker %s not heard: %+v", w.ID, w)
				}
			}
			cancel()
			bus.Close()
			<-served
		})
	}
}

func boolIndex(v bool) int {
	if v {
		return 1
	}
	return 0
}

// rawPublisher publishes events without confirms, as fast as the broker
// takes them, with the connection's user as user_id (as a Bus does).
type rawPublisher struct {
	t        testing.TB
	ch       *amqp.Channel
	exchange string
	user     string
}

func newRawPublisher(t testing.TB, run string) *rawPublisher {
	uri, err := amqp.ParseURI(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return &rawPublisher{t: t, ch: ch, exchange: amqpbus.EventsExchange(run), user: uri.Username}
}

func (p *rawPublisher) send(key string, body []byte) {
	err := p.ch.PublishWithContext(context.Background(), p.exchange, key, false, false,
		amqp.Publishing{UserId: p.user, ContentType: "application/json", Body: body})
	if err != nil {
		p.t.Fatal(err)
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMgmtStatus measures `mgmt status` of a pool of 10,000 workers
// over the real broker, as far as the pools go: the controller's status
// handler (ctlbus.Server), the reply through RabbitMQ, the client's
// decode, then what the CLI does with it. json is `mgmt status --json`
// (every worker, encoded through the redactor); table is the table
// (mgmt.Redact, then mgmt.WriteTableWidth). One worker in a hundred has
// never been heard, so the table has problem rows to list. reply-KiB is
// the size of the pools' part of the reply the table path asked for.
func BenchmarkMgmtStatus(b *testing.B) {
	const n = 10000
	bus, _ := dialTestBus(b)
	r := newRig(b, npJob(b, n))
	ids := r.prov.seed("web", n, nightshift.StateRunning, t0.Add(-time.Hour))
	r.restart()
	for i, id := range ids {
		if i%100 != 0 {
			r.heartbeat("web", id, i%3 == 0)
		}
	}
	r.c.Tick(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: r.clock, Ledger: r.store.Commands(),
		Signer: &envelope.Signer{Secret: []byte(strings.Repeat("k", 32)), Now: r.clock.Now}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	cl := &ctlbus.Client{Bus: bus, Sender: "mgmt", Clock: r.clock, Timeout: 10 * time.Second}
	// The command consumer is up once a status answers.
	for {
		if _, err := cl.Status(ctx, "web"); err == nil {
			break
		}
		select {
		case err := <-served:
			b.Fatalf("serve: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	red := redact.NewRedactor("not-a-secret-of-this-run")
	for _, mode := range []string{"json", "table"} {
		b.Run(fmt.Sprintf("workers=%d/%s", n, mode), func(b *testing.B) {
			var replyBytes int
			for b.Loop() {
				var jobs []controller.JobStatus
				var err error
				if mode == "json" {
					jobs, err = cl.Status(ctx, "")
				} else {
					jobs, err = tableJobs(ctx, cl)
				}
				if err != nil {
					b.Fatal(err)
				}
				st := &mgmt.RunStatus{Run: "r1", State: "ready", Levels: []mgmt.LevelStatus{}, Jobs: jobs}
				mgmt.NotReady(st)
				if mode == "json" {
					if got := len(jobs[0].Workers); got != n {
						b.Fatalf("--json listed %d workers, want %d", got, n)
					}
					if err := red.EncodeJSON(io.Discard, st); err != nil {
						b.Fatal(err)
					}
					continue
				}
				raw, _ := json.Marshal(jobs)
				replyBytes = len(raw)
				clean, err := mgmt.Redact(st, red)
				if err != nil {
					b.Fatal(err)
				}
				if err := mgmt.WriteTableWidth(io.Discard, clean, 0); err != nil {
					b.Fatal(err)
				}
			}
			if mode == "table" {
				b.ReportMetric(float64(replyBytes)/1024, "reply-KiB")
			}
		})
	}
}

// tableJobs is what the table of `mgmt status` asks the controller for:
// the pools summarized (mgmtbus.Conn.Summaries).
func tableJobs(ctx context.Context, cl *ctlbus.Client) ([]controller.JobStatus, error) {
	return cl.Summary(ctx, "")
}
