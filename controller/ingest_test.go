package controller_test

import (
	"errors"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/sitter"
)

// A batch of heartbeats that sat in the broker past missing_timeout (the
// consumer behind at size) still counts: beats are timed by their arrival,
// so the workers stay healthy and nothing is replaced.
func TestLateHeartbeatBatchKeepsWorkersHealthy(t *testing.T) {
	r := newRig(t, npJob(t, 3))
	ids := r.prov.seed("web", 3, nightshift.StateRunning, t0.Add(-time.Hour))
	r.restart()
	for _, id := range ids {
		r.heartbeat("web", id, false)
	}
	r.tick()
	sent := r.clock.Now()
	// The next beats were sent at once but reach the controller 10 s
	// later, well past missing_timeout (3 s), all in one batch.
	r.clock.Advance(10 * time.Second)
	var late []sitter.Heartbeat
	for _, id := range ids {
		late = append(late, sitter.Heartbeat{InstanceID: id, Job: "web", Host: "h", Time: sent,
			Tasks: []sitter.TaskStatus{{Name: "work", State: sitter.StateRunning, Work: sitter.WorkIdle}}})
	}
	r.c.IngestHeartbeats(late)
	r.tick()
	if n, _ := r.prov.launched(); n != 0 {
		t.Errorf("launched %d after a late batch, want none", n)
	}
	if got := r.prov.terminated(); len(got) != 0 {
		t.Errorf("terminated %v after a late batch, want none", got)
	}
	st, err := r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range st[0].Workers {
		if w.Health != string(nightshift.HealthOK) {
			t.Errorf("worker %s health %q after its late beat arrived, want ok", w.ID, w.Health)
		}
	}
}

// Inside a batch each heartbeat is still judged by its own publisher: a
// beat sent by another worker's user, by the simulator for a job that is
// not simulated, by no user, or malformed is refused alone, and the
// genuine beats around it go in.
func TestHeartbeatBatchDropsForgedBeats(t *testing.T) {
	bus, run := dialTestBus(t)
	r := newRig(t, npJob(t, 3))
	ids := r.prov.seed("web", 3, nightshift.StateRunning, t0.Add(-time.Hour))
	r.restart()
	srv := &ctlbus.Server{Bus: bus, Controller: r.c, Clock: r.clock}
	beat := func(id string, failed bool) []byte {
		ts := sitter.TaskStatus{Name: "work", State: sitter.StateRunning, Work: sitter.WorkBusy}
		if failed {
			ts = sitter.TaskStatus{Name: "work", State: sitter.StateFailed, Reason: "forged"}
		}
		return heartbeatMessage(t, sitter.Heartbeat{InstanceID: id, Job: "web", Host: "h", Time: t0, Tasks: []sitter.TaskStatus{ts}})
	}
	del := func(user, id string, body []byte) amqpbus.Delivery {
		return amqpbus.Delivery{UserID: user, RoutingKey: ctlbus.HeartbeatKey("web", id), Body: body}
	}
	batch := []amqpbus.Delivery{
		del(busid.WorkerUser(run, ids[0]), ids[0], beat(ids[0], false)),
		del(busid.WorkerUser(run, ids[0]), ids[1], beat(ids[1], true)), // another worker's user
		del(busid.SimulatorUser(run), ids[2], beat(ids[2], true)),      // job web is not simulated
		del("", ids[2], beat(ids[2], true)),                            // no user at all
		del(busid.WorkerUser(run, ids[1]), ids[1], []byte(`{"type":`)), // malformed
		del(busid.WorkerUser(run, ids[0]), ids[0], beat(ids[0], false)),
	}
	errs := srv.Heartbeats(batch)
	if len(errs) != len(batch) {
		t.Fatalf("results %v for %d deliveries", errs, len(batch))
	}
	for i, err := range errs {
		wantRefused := i >= 1 && i <= 4
		if got := errors.Is(err, amqpbus.ErrReject); got != wantRefused || (!wantRefused && err != nil) {
			t.Errorf("delivery %d: %v, refused %v, want refused %v", i, err, got, wantRefused)
		}
	}
	st, err := r.c.Status("web")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range st[0].Workers {
		heard := w.HeartbeatAgeS != nil
		switch w.ID {
		case ids[0]:
			if !heard || !w.Busy {
				t.Errorf("worker %s: heard %v busy %v, want its own beats in", w.ID, heard, w.Busy)
			}
		default:
			if heard || w.Health == string(nightshift.HealthProcessError) {
				t.Errorf("worker %s: heard %v, health %q after forged beats only", w.ID, heard, w.Health)
			}
		}
	}
}

// A big launch whose reply is lost while its instances show up a few at a
// time (the provisioner records them over seconds) is not launched again:
// until all of its instances are in the view, the rest still count as
// pending, and the launch is resent under its own id rather than settled.
func TestPartlySeenLaunchIsNotLaunchedAgain(t *testing.T) {
	r := newRig(t, npJob(t, 10))
	r.prov.failLaunch, r.prov.lostReply = 2, true
	r.tick()
	_, calls := r.prov.launched()
	if len(calls) != 1 || calls[0].Count != 10 {
		t.Fatalf("first round: calls %+v, want one launch of 10", calls)
	}
	first := calls[0].LaunchID
	// Three of its ten instances are announced before any reply.
	for _, id := range r.prov.ids("web", true)[:3] {
		r.c.HandleInstance(r.prov.setState(id, nightshift.StateRunning))
	}
	st, _ := r.c.Status("web")
	if got := st[0].Counts["pending_launch"]; got != 7 {
		t.Errorf("pending_launch %d with 3 of 10 seen, want 7", got)
	}
	r.tick() // the reply is lost again
	r.tick() // now it arrives
	n, calls := r.prov.launched()
	if n != 10 {
		t.Errorf("%d instances launched, want the 10 of the first launch only", n)
	}
	for _, c := range calls {
		if c.LaunchID != first {
			t.Errorf("launch %s of %d sent while %s was under way", c.LaunchID, c.Count, first)
		}
	}
	st, _ = r.c.Status("web")
	if got, ok := st[0].Counts["pending_launch"]; ok && got != 0 {
		t.Errorf("pending_launch %d after the reply, want none", got)
	}
}
