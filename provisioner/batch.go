package provisioner

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"

	"nightshift"
)

// maxBatch bounds the updates of one ledger transaction and the instances
// one dispatch takes from a queue: big enough that a burst of 10,000 costs
// a few dozen commits, small enough that one transaction never holds the
// ledger (SQLite's one writer) for long.
const maxBatch = 512

// step is one wanted transition: move id to next for reason if when
// (nil: always) accepts the current record, applying mutate to the new
// record before it is written.
type step struct {
	id     string
	next   nightshift.InstanceState
	reason string
	when   func(Instance) bool
	mutate func(*Instance)
}

// stepResult is what became of a step: the record after it (the current
// one when nothing changed), the state it left, and whether it was
// written.
type stepResult struct {
	inst    Instance
	from    nightshift.InstanceState
	changed bool
	err     error
}

type commitReq struct {
	ctx   context.Context
	steps []step
	res   []stepResult
	done  chan struct{}
}

// committer group-commits transitions. Callers queue their steps; one
// goroutine, started when work arrives and gone when there is none, takes
// everything queued, reads the records in one query, applies the steps
// and writes the changes in one transaction per maxBatch. Transitions
// that arrive while a commit is running share the next one, so the ledger
// does one commit per burst, not one per instance. Being the only writer
// of this process, it also serialises each read-check-write; the Store's
// compare-and-set backs that up across processes.
type committer struct {
	mu      sync.Mutex
	pending []*commitReq
	busy    bool
}

// transitionMany records steps, waits for them to be written, then logs
// and publishes each change (write-ahead: nothing is announced before it
// is recorded).
func (p *Provisioner) transitionMany(ctx context.Context, steps []step) []stepResult {
	if len(steps) == 0 {
		return nil
	}
	r := &commitReq{ctx: ctx, steps: steps, done: make(chan struct{})}
	c := &p.commits
	c.mu.Lock()
	c.pending = append(c.pending, r)
	if !c.busy {
		c.busy = true
		go p.commitLoop()
	}
	c.mu.Unlock()
	<-r.done
	p.announce(ctx, r.res)
	return r.res
}

func (p *Provisioner) commitLoop() {
	c := &p.commits
	for {
		c.mu.Lock()
		batch := c.pending
		c.pending = nil
		if len(batch) == 0 {
			c.busy = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		p.commit(batch)
		for _, r := range batch {
			close(r.done)
		}
	}
}

type stepRef struct{ req, step int }

// commit applies and writes one group of requests. A request whose
// context has ended is answered with its error and not written.
func (p *Provisioner) commit(batch []*commitReq) {
	var ids []string
	var ctx context.Context
	for _, r := range batch {
		r.res = make([]stepResult, len(r.steps))
		if err := r.ctx.Err(); err != nil {
			for k := range r.res {
				r.res[k].err = fmt.Errorf("instance %s: %w", r.steps[k].id, err)
			}
			continue
		}
		if ctx == nil {
			// The group outlives any one caller's cancellation: the
			// others' steps must still be written.
			ctx = context.WithoutCancel(r.ctx)
		}
		for _, s := range r.steps {
			ids = append(ids, s.id)
		}
	}
	if ctx == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, err := p.records(ctx, ids)
	if err != nil {
		for _, r := range batch {
			for k := range r.res {
				if r.res[k].err == nil {
					r.res[k].err = fmt.Errorf("instance %s: %w", r.steps[k].id, err)
				}
			}
		}
		return
	}
	now := p.clock.Now().UTC()
	var ups []Update
	var refs []stepRef
	var prevs []Instance
	for ri, r := range batch {
		if r.ctx.Err() != nil {
			continue
		}
		for k, s := range r.steps {
			in, ok := cur[s.id]
			if !ok {
				r.res[k].err = fmt.Errorf("instance %s: %w", s.id, ErrNotFound)
				continue
			}
			r.res[k].inst = in
			if s.when != nil && !s.when(in) {
				continue
			}
			out, ok := Apply(in, s.next, s.reason, now)
			if !ok {
				p.log.Debug("stale instance update ignored", "instance", s.id, "state", in.State, "update", s.next)
				continue
			}
			if s.mutate != nil {
				s.mutate(&out)
			}
			ups = append(ups, Update{Instance: out, Prev: in.State})
			refs = append(refs, stepRef{ri, k})
			prevs = append(prevs, in)
			r.res[k] = stepResult{inst: out, from: in.State, changed: true}
			// A later step of the same instance in this group builds on
			// this one.
			cur[s.id] = out
		}
	}
	for lo := 0; lo < len(ups); lo += maxBatch {
		hi := min(lo+maxBatch, len(ups))
		conflicts, err := p.cfg.Store.UpdateInstances(ctx, ups[lo:hi])
		for k := lo; k < hi; k++ {
			ref, u := refs[k], ups[k]
			res := &batch[ref.req].res[ref.step]
			switch {
			case err != nil:
				*res = stepResult{err: fmt.Errorf("instance %s: record %s: %w", u.Instance.ID, u.Instance.State, err)}
			case conflicts[k-lo] != nil:
				*res = stepResult{err: fmt.Errorf("instance %s: record %s: %w", u.Instance.ID, u.Instance.State, conflicts[k-lo])}
			}
			if res.err != nil {
				// The caller gets the record as it was before the step.
				res.inst = prevs[k]
			}
		}
	}
}

// records reads the current records of ids, a bounded number per query.
func (p *Provisioner) records(ctx context.Context, ids []string) (map[string]Instance, error) {
	out := make(map[string]Instance, len(ids))
	for lo := 0; lo < len(ids); lo += maxBatch {
		recs, err := p.cfg.Store.Instances(ctx, Filter{IDs: ids[lo:min(lo+maxBatch, len(ids))]})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			out[r.ID] = r
		}
	}
	return out, nil
}

// announce logs and publishes the changes of a commit, and syncs DNS once
// for all of them.
func (p *Provisioner) announce(ctx context.Context, res []stepResult) {
	sync := false
	for _, r := range res {
		if !r.changed {
			continue
		}
		p.logChange(r.inst, r.from)
		p.publish(ctx, r.inst)
		if r.inst.State.Rank() >= nightshift.StateTerminating.Rank() && r.from.Rank() < nightshift.StateRunning.Rank() && p.launchQ.Processing(r.inst.ID) {
			// Its launch may be waiting for a driver slot: skip it.
			p.stopMu.Lock()
			p.stopLaunch[r.inst.ID] = true
			p.stopMu.Unlock()
		}
		sync = sync || p.movesDNS(r.inst)
	}
	if sync {
		p.syncDNSSoon(ctx)
	}
}

// Event lanes: changes are published off the path that records them, by
// eventLanes goroutines at most, so a burst is not paced by the broker's
// confirm round trip (one publish waits for it). An instance always uses
// the same lane, so its events go out in the order they were recorded.
// Beyond maxPendingEvents waiting, recording waits for publishing: a
// broker that is down slows the provisioner rather than filling memory.
const (
	eventLanes       = 32
	maxPendingEvents = 1 << 16
)

type eventQueue struct {
	mu      sync.Mutex
	space   sync.Cond
	lanes   [eventLanes]eventLane
	pending int
}

type eventLane struct {
	items  []Instance
	active bool
}

// publish queues an event of a recorded change; a lane goroutine,
// started when the lane has work and gone when it has none, sends it.
func (p *Provisioner) publish(ctx context.Context, inst Instance) {
	q := &p.eventQ
	h := fnv.New32a()
	h.Write([]byte(inst.ID))
	lane := &q.lanes[h.Sum32()%eventLanes]
	q.mu.Lock()
	for q.pending >= maxPendingEvents {
		q.space.Wait()
	}
	lane.items = append(lane.items, inst)
	q.pending++
	start := !lane.active
	lane.active = true
	q.mu.Unlock()
	if start {
		go p.drainLane(context.WithoutCancel(ctx), lane)
	}
}

func (p *Provisioner) drainLane(ctx context.Context, lane *eventLane) {
	q := &p.eventQ
	for {
		q.mu.Lock()
		if len(lane.items) == 0 {
			lane.items = nil
			lane.active = false
			q.mu.Unlock()
			p.notify()
			return
		}
		inst := lane.items[0]
		lane.items[0] = Instance{}
		lane.items = lane.items[1:]
		q.mu.Unlock()
		if err := p.events.InstanceChanged(ctx, inst); err != nil {
			p.log.Warn("publish instance event failed", "instance", inst.ID, "state", inst.State, "err", err)
		}
		q.mu.Lock()
		q.pending--
		q.space.Broadcast()
		q.mu.Unlock()
	}
}

// eventsPending counts events recorded but not yet published.
func (p *Provisioner) eventsPending() int {
	p.eventQ.mu.Lock()
	defer p.eventQ.mu.Unlock()
	return p.eventQ.pending
}
