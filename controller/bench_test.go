package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller/ctlbus"
	"nightshift/internal/envelope"
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
