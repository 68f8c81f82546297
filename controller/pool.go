package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"nightshift"
	"nightshift/decision"
	"nightshift/internal/backoff"
	"nightshift/internal/jobspec"
	"nightshift/internal/redact"
	"nightshift/provisioner"
	"nightshift/sitter"
)

const (
	// terminalKeep is how long a gone instance stays in the view, so late
	// heartbeats from it can still be judged zombie.
	terminalKeep = 10 * time.Minute
	// launchFailureWindow: an instance first seen already failed counts as
	// a failed launch only if it failed this recently, so failures read at
	// recovery do not hold a restarted controller's launches back.
	launchFailureWindow = 5 * time.Minute
)

// Pool is one job's view of its workers and the rules that move it: how
// instance records and heartbeats update the view, how health is judged,
// when failed launches hold further launches back, which decisions are no
// news, what a decision asks to store and send, and what a job's status
// reads. It is the controller's pure core, as Apply and PlanReconcile are
// the provisioner's: it does no I/O, takes no lock, starts no goroutine and
// reads no clock (methods that need the time take now). The Controller
// serialises calls to a Pool and performs what its methods return.
type Pool struct {
	job Job
	// started is when the controller started: health timers of running
	// instances start no earlier, or every worker looks missing right
	// after a restart.
	started time.Time
	// listeningSince is when the controller had recovered its view and
	// was listening for heartbeats (Listening): for a worker running
	// since before the start and not heard since, the last moment it
	// could have been heard and was not.
	listeningSince time.Time
	// deafSince is when the controller was first seen without its bus in
	// the current outage (zero while it hears); hearingSince is when it
	// last got its bus back, and hearingGrace how long after that a
	// worker not heard since may stay silent before it counts as missing.
	// Heartbeats cannot arrive while the controller is cut off, and the
	// sitters reconnect with back-off of their own after a broker
	// restart, so a silence that spans the outage is not the workers'.
	deafSince    time.Time
	hearingSince time.Time
	hearingGrace time.Duration
	// silence is the last JudgeSilence: a mass silence holds the
	// replacement of silent workers (HealthConfig.MassSilencePercent).
	silence MassSilence
	workers map[string]*worker
	pending []Launch
	// lastScaleAt feeds Snapshot.LastScaleAt (cooldowns).
	lastScaleAt time.Time
	depth       *int
	source      decision.DepthSource
	depthWhy    string // why depth is nil, for status
	// dnsProblem is the provisioner's last word on the job's DNS records
	// (provisioner.Status.DNSProblem), as of the last recovery or resync.
	dnsProblem string
	last       *LastDecision
	lastTarget int
	lastError  string
	// Launch failures in a row (instances that failed before running):
	// launches then back off exponentially, as an Auto Scaling group does,
	// instead of asking every tick for an image that does not exist.
	launchFailures    int
	lastLaunchFailure time.Time
	launchFailReason  string
	// Silent workers in a row: workers that reached running and sent no
	// heartbeat within boot_timeout. Replacing them changes nothing (the
	// sitter cannot reach the broker, or never starts), so after the job's
	// BlockAfterSilent of them the pool is blocked: it stops launching,
	// but for one probe launch at a time, the first boot_timeout after it
	// blocked and then further and further apart (SilentBackoff). Any
	// heartbeat, and a person's reconfigure or repair (Unblock), end it.
	silent      int
	silentCause string
	probes      int
	nextProbe   time.Time
	// probeLaunch is the launch id of the last probe: while it is pending
	// or its worker is live and not yet judged, no other probe goes.
	probeLaunch string
	// countedIDs are the most recent workers counted silent, and
	// restoredCounted those a restarted controller read from its store
	// (RestoreSilent): a worker counted before the restart is not counted
	// again when the provisioner reports it anew.
	countedIDs      []string
	restoredCounted map[string]bool
	// revision is the job's worker-spec revision in force.
	revision *RevisionStatus
}

// maxCountedIDs bounds SilentState.Counted: only workers still live can be
// counted twice, and a blocked pool has few.
const maxCountedIDs = 32

type worker struct {
	id, launchID, host string
	dnsName            string // the provisioner's name for it (a job's dns table)
	uid                uint32 // its uid of its own on a local host, 0 when none
	state              nightshift.InstanceState
	stateSince         time.Time
	launchedAt         time.Time
	lastHeartbeat      time.Time
	failedTasks        []string
	taskError          string // the failing task's last exit or start error
	heartbeatError     string
	// probeFailing is the running task whose health probe is unhealthy,
	// with the probe's last output; probe is every probe's state, shown.
	probeFailing string
	probe        string
	// readySince is since when (the controller's clock) every probe of
	// the worker's running tasks passes, or, without probes, since when
	// it is healthy: a rollout's min_ready runs from it.
	readySince    time.Time
	busy          bool
	restarts      int
	drainingSince time.Time
	// everOK: heard healthy at least once. A worker replaced before that
	// is a failed launch (countedFailed: counted once), so a pool whose
	// workers reach running but never work backs off instead of being
	// relaunched every boot_timeout forever.
	// A worker is everOK once healthy heartbeats span missing_timeout
	// (okSince is when the current healthy run began), so a task that
	// runs for a moment between crashes does not count.
	everOK, countedFailed bool
	okSince               time.Time
	// countedSilent: counted once as a silent worker (running past
	// boot_timeout, never heard).
	countedSilent bool
}

// NewPool returns an empty view of job for a controller started at
// started.
func NewPool(job Job, started time.Time) *Pool {
	return &Pool{job: job, started: started, workers: map[string]*worker{}}
}

// SetRevision records the job's spec revision in force, for status.
func (p *Pool) SetRevision(r Revision) {
	p.revision = &RevisionStatus{Number: r.Number, Digest: r.Digest, Time: r.Time, Who: r.Who, Spec: r.Spec}
}

// Listening records that the controller, having recovered its view of the
// pool, listens for heartbeats from now on (only the first call counts).
// From then, a worker that was running before the controller started and
// is still unheard is judged by missing_timeout, as a worker that fell
// silent: its sitter had its first heartbeat's chance long ago (a
// predecessor heard it), so waiting boot_timeout for it would leave a
// worker killed during a controller's restart unreplaced for that long.
func (p *Pool) Listening(now time.Time) {
	if p.listeningSince.IsZero() {
		p.listeningSince = now
	}
}

// Deaf records that the controller is cut off from the bus at now.
func (p *Pool) Deaf(now time.Time) {
	if p.deafSince.IsZero() {
		p.deafSince = now
	}
	// Judged afresh once it hears again (with its hearing grace).
	p.silence = MassSilence{}
}

// Hearing records that the controller has its bus at now. After an outage
// it gives each worker not heard since then missing_timeout plus the
// outage's length (at most boot_timeout) to be heard again: a sitter's
// reconnect back-off grows with the outage it waited through.
func (p *Pool) Hearing(now time.Time) {
	if p.deafSince.IsZero() {
		return
	}
	hc := p.job.Health.WithDefaults()
	p.hearingSince = now
	p.hearingGrace = min(hc.MissingTimeout+now.Sub(p.deafSince), max(hc.BootTimeout, hc.MissingTimeout))
	p.deafSince = time.Time{}
}

// Restore takes what the store remembers of the job: when it last scaled
// and its latest decision (newest first; only the first is read).
func (p *Pool) Restore(lastScaleAt time.Time, latest []Decision) {
	p.lastScaleAt = lastScaleAt
	if len(latest) > 0 {
		p.last = &LastDecision{Time: latest[0].Time, Reason: latest[0].Reason}
		p.lastTarget, p.lastError = latest[0].Target, latest[0].Error
	}
}

// SortRecovered splits the launches still pending in the store after a
// restart: one whose id is found in the provisioner's records arrived and
// is done (it must not be resent); the others stay pending and are resent
// with the same id (the provisioner dedupes one that did arrive after all).
func SortRecovered(records []provisioner.Instance, pending []Launch) (done, still []Launch) {
	known := map[string]bool{}
	for _, inst := range records {
		known[inst.LaunchID] = true
	}
	for _, l := range pending {
		if known[l.LaunchID] {
			done = append(done, l)
		} else {
			still = append(still, l)
		}
	}
	return done, still
}

// Recover rebuilds the view after a restart from the provisioner's records
// of the job, the launches still pending and the stored drains. It returns
// the drains of instances that are gone, which the caller forgets.
func (p *Pool) Recover(records []provisioner.Instance, still []Launch, drains map[string]time.Time, now time.Time) (gone []string) {
	p.pending = still
	for _, inst := range records {
		if inst.Job == p.job.Name {
			p.ApplyInstance(inst, now)
		}
	}
	for id, since := range drains {
		if w, ok := p.workers[id]; ok && !w.state.Terminal() {
			w.drainingSince = since
		} else {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	return gone
}

// ApplyInstance applies a provisioner instance record or event and reports
// whether the view changed (then a prompt decision round is due). Stale or
// duplicate states are ignored: the ladder only moves forward. An instance
// that fails before it ever ran is a failed launch and lengthens the
// launch back-off; one that reaches running resets it.
func (p *Pool) ApplyInstance(inst provisioner.Instance, now time.Time) bool {
	since := inst.Updated
	if since.IsZero() {
		since = now
	}
	w, ok := p.workers[inst.ID]
	if !ok {
		launched := inst.Created
		if launched.IsZero() {
			launched = since
		}
		p.workers[inst.ID] = &worker{id: inst.ID, launchID: inst.LaunchID, host: inst.Host, dnsName: inst.DNSName, uid: inst.WorkerUID, state: inst.State, stateSince: since, launchedAt: launched}
		// First seen already failed: the launch itself failed (a refusal comes
		// back in the launch reply). Old failures read at recovery are older
		// than any back-off and only lengthen the next one a little.
		if inst.State == nightshift.StateFailed && now.Sub(since) < launchFailureWindow {
			p.launchFailed(since, inst.Reason)
		}
		return true
	}
	if inst.Host != "" {
		w.host = inst.Host
	}
	if inst.DNSName != "" {
		w.dnsName = inst.DNSName
	}
	if inst.WorkerUID != 0 {
		w.uid = inst.WorkerUID
	}
	if w.state == inst.State || !w.state.CanMoveTo(inst.State) {
		return false
	}
	switch {
	case inst.State == nightshift.StateFailed && w.state.Rank() < nightshift.StateRunning.Rank():
		p.launchFailed(since, inst.Reason)
	}
	w.state, w.stateSince = inst.State, since
	return true
}

// BlockedAfter is how many failed launches in a row make a pool show as
// blocked: its launches still back off from the first failure, but from
// here on a person should know that something in the job's spec, image or
// network is wrong rather than unlucky.
const BlockedAfter = 3

func (p *Pool) launchFailed(at time.Time, reason string) {
	p.launchFailures++
	p.lastLaunchFailure = at
	p.launchFailReason = reason
}

// Heartbeat records a sitter heartbeat received at now (the controller's
// clock: hosts' clocks may be skewed). Healthy heartbeats for
// missing_timeout end the launch back-off: the job's workers can work. It
// reports whether the heartbeat
// changed something an engine acts on (first heartbeat, busy flipped,
// failed tasks changed), which is when a prompt round is due; steady
// heartbeats wait for the tick. Heartbeats from instances the view does
// not know yet are dropped: the next one, after the launch reply or
// instance event, is not.
func (p *Pool) Heartbeat(hb sitter.Heartbeat, now time.Time) bool {
	w, ok := p.workers[hb.InstanceID]
	if !ok {
		return false
	}
	busy, restarts := false, 0
	var failed []string
	taskErr, probeFailing, probe := "", "", ""
	probed, allHealthy := false, true
	for _, t := range hb.Tasks {
		if t.Probe != nil && t.State == sitter.StateRunning {
			probed = true
			allHealthy = allHealthy && t.Probe.State == sitter.ProbeHealthy
		}
		if pr := t.Probe; pr != nil && t.State == sitter.StateRunning {
			line := fmt.Sprintf("%s: %s (%s)", t.Name, pr.State, pr.Output)
			if pr.State == sitter.ProbeUnhealthy && probeFailing == "" {
				probeFailing = fmt.Sprintf("%s: probe failed %d in a row: %s", t.Name, pr.Failures, pr.Output)
			}
			if probe == "" || pr.State != sitter.ProbeHealthy {
				probe = line
			}
		}
		if t.State == sitter.StateRunning && t.Work == sitter.WorkBusy {
			busy = true
		}
		// A task waiting out its back-off after CrashLoopFailures failed
		// runs in a row cannot start or keeps exiting: the worker is no
		// more healthy than one whose task the sitter gave up on.
		if t.State == sitter.StateFailed || (t.State == sitter.StateBackoff && t.Failures >= CrashLoopFailures) {
			failed = append(failed, t.Name)
			if taskErr == "" {
				taskErr = t.Name + ": " + t.Reason
			}
		}
		restarts += t.Restarts
	}
	switch {
	case len(failed) > 0 || probeFailing != "" || w.state != nightshift.StateRunning:
		w.okSince = time.Time{}
	case w.okSince.IsZero():
		w.okSince = now
	}
	if !w.okSince.IsZero() && now.Sub(w.okSince) >= p.job.Health.WithDefaults().MissingTimeout {
		w.everOK = true
		p.launchFailures = 0
	}
	// Any heartbeat, even a late one or one reporting a failed task, shows
	// that the job's workers can reach the broker: the silent block ends.
	p.silent, p.probes, p.nextProbe, p.probeLaunch = 0, 0, time.Time{}, ""
	changed := w.lastHeartbeat.IsZero() || w.busy != busy || len(w.failedTasks) != len(failed) ||
		(w.probeFailing == "") != (probeFailing == "")
	w.lastHeartbeat, w.busy, w.failedTasks, w.restarts, w.taskError = now, busy, failed, restarts, taskErr
	w.probeFailing, w.probe = probeFailing, probe
	switch {
	case probed && !allHealthy, !probed && w.okSince.IsZero(), len(failed) > 0:
		w.readySince = time.Time{}
	case w.readySince.IsZero():
		w.readySince = now
	}
	if hb.Host != "" {
		w.host = hb.Host
	}
	return changed
}

// Observe records the latest queue depth reading; depth nil means
// unavailable, and why then says why, for status.
func (p *Pool) Observe(depth *int, source decision.DepthSource, why string) {
	p.depth, p.source, p.depthWhy = depth, source, why
	if depth != nil {
		p.depthWhy = ""
	}
}

// Snapshot builds the engine's input at now: every known instance with its
// health, launches sent but not yet seen as instances, the queue depth and
// the last scale time.
func (p *Pool) Snapshot(now time.Time) decision.Snapshot {
	s := decision.Snapshot{
		Pool: p.job.Name, Now: now, Queue: p.job.Queue.Name,
		Depth: p.depth, Source: p.source, LastScaleAt: p.lastScaleAt,
		Instances: make([]decision.Instance, 0, len(p.workers)),
	}
	s.PendingLaunches = p.owed()
	for _, w := range p.workers {
		s.Instances = append(s.Instances, decision.Instance{
			ID: w.id, State: w.state, Health: p.health(w, now),
			Busy: w.busy || p.drainUnconfirmed(w), LaunchedAt: w.launchedAt, DrainingSince: w.drainingSince,
		})
	}
	// Map order is random; engines break ties by id, but a stable order
	// keeps persisted snapshots and reasons reproducible.
	slices.SortFunc(s.Instances, func(a, b decision.Instance) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return s
}

// drainUnconfirmed reports whether w drains but no heartbeat has shown it
// idle since: only a heartbeat received a full heartbeat interval after
// the drain was sent was sampled after the worker could see its drain
// file, and a worker that has seen it takes no new item. Until then an
// "idle" heartbeat may predate an item the worker took, so the engines see
// the worker as busy and do not terminate it (drain_timeout still does).
func (p *Pool) drainUnconfirmed(w *worker) bool {
	if w.drainingSince.IsZero() {
		return false
	}
	interval := p.job.Health.HeartbeatInterval
	if interval <= 0 {
		interval = decision.DefaultHeartbeatInterval
	}
	return w.lastHeartbeat.Before(w.drainingSince.Add(interval))
}

// MassSilence is a pool's share of silent workers, when it is a mass
// silence (see decision.HealthConfig.MassSilencePercent).
type MassSilence struct {
	Silent  int       `json:"silent"`
	Running int       `json:"running"`
	Since   time.Time `json:"since"`
	// Until is when the hold ends: silent workers are replaced again
	// from then on, whatever the share.
	Until time.Time `json:"until"`
	// Held says silent workers are not being replaced now.
	Held bool `json:"held"`
}

// JudgeSilence counts the running workers silent at now and decides
// whether this is a mass silence, which holds their replacement until
// boot_timeout after it began. Called once per decision round, before
// Snapshot: health reads its outcome per worker.
func (p *Pool) JudgeSilence(now time.Time) {
	hc := p.job.Health.WithDefaults()
	p.silence.Held = false // judge each worker on its own first
	running, silent := 0, 0
	for _, w := range p.workers {
		if w.state != nightshift.StateRunning {
			continue
		}
		running++
		if p.assess(w, now) == nightshift.HealthMissing {
			silent++
		}
	}
	if silent < decision.MassSilenceMin || silent*100 <= hc.MassSilencePercent*running {
		p.silence = MassSilence{}
		return
	}
	if p.silence.Since.IsZero() {
		p.silence.Since = now
		p.silence.Until = now.Add(hc.BootTimeout)
	}
	p.silence.Silent, p.silence.Running = silent, running
	p.silence.Held = now.Before(p.silence.Until)
}

// Silence is the pool's mass silence, nil when there is none. While the
// controller is cut off from its bus, rounds stop and the last judgement
// would go stale: every silence is then the controller's own, which the
// deafness (and its alert) already says.
func (p *Pool) Silence() *MassSilence {
	if p.silence.Since.IsZero() || !p.deafSince.IsZero() {
		return nil
	}
	s := p.silence
	return &s
}

func (p *Pool) health(w *worker, now time.Time) nightshift.Health {
	h := p.assess(w, now)
	if h == nightshift.HealthMissing && p.silence.Held && w.state == nightshift.StateRunning {
		return nightshift.HealthUnknown
	}
	return h
}

func (p *Pool) assess(w *worker, now time.Time) nightshift.Health {
	since := w.stateSince
	// Timers start no earlier than our own start, or every worker looks
	// missing right after a restart.
	if since.Before(p.started) && w.state == nightshift.StateRunning {
		since = p.started
	}
	h := decision.Assess(decision.InstanceView{
		ID: w.id, State: w.state, StateSince: since, LastHeartbeat: w.lastHeartbeat,
		FailedTasks: w.failedTasks, HeartbeatError: w.heartbeatError, ProbeFailing: w.probeFailing,
	}, now, p.job.Health)
	if (h == nightshift.HealthBooting || h == nightshift.HealthNeverHeard) && w.stateSince.Before(p.started) && !p.listeningSince.IsZero() {
		h = nightshift.HealthUnknown
		if now.Sub(p.listeningSince) > p.job.Health.WithDefaults().MissingTimeout {
			h = nightshift.HealthMissing
		}
	}
	// Silent through the controller's own outage: not known missing until
	// the grace after it ends has run out, nor while it lasts.
	if (h == nightshift.HealthMissing || h == nightshift.HealthNeverHeard) && w.state == nightshift.StateRunning &&
		w.lastHeartbeat.Before(p.lastCutOff()) && p.withinHearingGrace(now) {
		return nightshift.HealthUnknown
	}
	return h
}

// lastCutOff is when the controller last lost or got back its bus: a
// heartbeat older than that may have been followed by ones it never saw.
func (p *Pool) lastCutOff() time.Time {
	if !p.deafSince.IsZero() {
		return p.deafSince
	}
	return p.hearingSince
}

func (p *Pool) withinHearingGrace(now time.Time) bool {
	if !p.deafSince.IsZero() {
		return true
	}
	return !p.hearingSince.IsZero() && now.Sub(p.hearingSince) <= p.hearingGrace
}

// Prune forgets instances gone for longer than terminalKeep.
func (p *Pool) Prune(now time.Time) {
	for id, w := range p.workers {
		if w.state.Terminal() && now.Sub(w.stateSince) > terminalKeep {
			delete(p.workers, id)
		}
	}
}

// launchBackoff is the curve launches back off by after failed launches:
// 1s, doubling, at most 5 minutes, without jitter (one controller, so no
// herd to spread).
var launchBackoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute}

// LaunchBackoff is the pause after n launch failures in a row.
func LaunchBackoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return launchBackoff.Delay(n, 0)
}

// Hold drops the launch actions of d while the pool backs off after failed
// launches, saying why in the reason; terminations and drains go ahead.
func (p *Pool) Hold(d decision.Decision, now time.Time) decision.Decision {
	if p.launchFailures == 0 {
		return d
	}
	until := p.lastLaunchFailure.Add(LaunchBackoff(p.launchFailures))
	if !now.Before(until) {
		return d
	}
	kept := d.Actions[:0:0]
	held := false
	for _, a := range d.Actions {
		if _, ok := a.(decision.Launch); ok {
			held = true
			continue
		}
		kept = append(kept, a)
	}
	if !held {
		return d
	}
	d.Actions = kept
	d.Reason = fmt.Sprintf("launch back-off after %d failed launch(es) (last: %s): next launch in %s; engine: %s",
		p.launchFailures, p.launchFailReason, until.Sub(now).Round(100*time.Millisecond), d.Reason)
	return d
}

// countNeverHealthy counts each worker that d terminates as unhealthy
// before it was ever heard healthy because its task never ran (a crash
// loop) as a failed launch, with why. A worker never heard from at all is
// a silent worker instead (countSilent).
func (p *Pool) countNeverHealthy(d decision.Decision, now time.Time) {
	for _, a := range d.Actions {
		t, ok := a.(decision.Terminate)
		if !ok {
			continue
		}
		for _, id := range t.IDs {
			w, ok := p.workers[id]
			if !ok || w.everOK || w.countedFailed || w.state != nightshift.StateRunning {
				continue
			}
			switch p.health(w, now) {
			case nightshift.HealthProcessError:
				w.countedFailed = true
				p.launchFailed(now, fmt.Sprintf("worker %s never ran its task: %s", id, w.taskError))
			case nightshift.HealthProbeFailed:
				// A version that never passes its probe is as broken as one
				// that never starts: back off rather than relaunch it
				// every failure_threshold intervals.
				w.countedFailed = true
				p.launchFailed(now, fmt.Sprintf("worker %s never passed its health probe: %s", id, w.probeFailing))
			}
		}
	}
}

// silentBackoffMax caps the wait between probe launches of a blocked pool.
const silentBackoffMax = 30 * time.Minute

// SilentBackoff is the wait before the probe-th probe launch of a pool
// blocked by silent workers (from the block for the first, from the last
// probe for the others): boot_timeout, doubling, at most 30 minutes.
func SilentBackoff(bootTimeout time.Duration, probe int) time.Duration {
	return backoff.Policy{Initial: bootTimeout, Max: silentBackoffMax}.Delay(probe, 0)
}

// blockAfterSilent is the job's threshold of silent workers in a row.
func (p *Pool) blockAfterSilent() int {
	if p.job.BlockAfterSilent > 0 {
		return p.job.BlockAfterSilent
	}
	return jobspec.DefaultBlockAfterSilent
}

// SilentBlocked reports whether the pool is blocked because its workers
// reach running and never send a heartbeat.
func (p *Pool) SilentBlocked() bool { return p.silent >= p.blockAfterSilent() }

// countSilent counts, once each, the workers running past boot_timeout
// that were never heard from. The one that reaches the job's threshold
// blocks the pool; its first probe may go boot_timeout later.
func (p *Pool) countSilent(now time.Time) {
	hc := p.job.Health.WithDefaults()
	// Every round looks at every worker: keep the common case (heard, or
	// counted already) cheap and sort only the newly silent, so the last
	// cause named is the same whatever the map's order.
	var ids []string
	for id, w := range p.workers {
		if !w.countedSilent && w.state == nightshift.StateRunning && w.lastHeartbeat.IsZero() &&
			p.health(w, now) == nightshift.HealthNeverHeard {
			if p.restoredCounted[id] {
				w.countedSilent = true
				continue
			}
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		w := p.workers[id]
		w.countedSilent = true
		p.countedIDs = append(p.countedIDs, id)
		if n := len(p.countedIDs); n > maxCountedIDs {
			p.countedIDs = slices.Clone(p.countedIDs[n-maxCountedIDs:])
		}
		was := p.SilentBlocked()
		p.silent++
		p.silentCause = fmt.Sprintf("worker %s reached running and sent no heartbeat within boot_timeout %s", id, hc.BootTimeout)
		if !was && p.SilentBlocked() {
			p.probes, p.probeLaunch = 0, ""
			p.nextProbe = now.Add(SilentBackoff(hc.BootTimeout, 1))
		}
	}
}

// probeInFlight reports whether the last probe launch is still pending or
// its worker is live and not yet judged.
func (p *Pool) probeInFlight() bool {
	if p.probeLaunch == "" {
		return false
	}
	for _, l := range p.pending {
		if l.LaunchID == p.probeLaunch {
			return true
		}
	}
	for _, w := range p.workers {
		if w.launchID == p.probeLaunch && !w.countedSilent && w.lastHeartbeat.IsZero() &&
			w.state.Live() && w.state != nightshift.StateTerminating && !w.state.Terminal() {
			return true
		}
	}
	return false
}

// SilentCheck says what to look at when a job's workers never send a
// heartbeat, by where they run.
func SilentCheck(driver string) string {
	switch driver {
	case DriverEC2:
		return "check the sitter URL the instances install the agent from (instance.sitter_url), that the AMI (instance.image_id) boots it, and that the security group lets the instance reach the broker's AMQP port"
	case DriverSim:
		return "check that the provisioner's simulator can reach the broker (its log)"
	default:
		return "check the provisioner's worker command (it must start `sitter agent`), the sitter binary it names, and the instance's stderr under runs/<run>/instances/<id>/"
	}
}

// holdSilent drops the launch actions of d while the pool is blocked by
// silent workers, but for one probe launch of one worker when its time
// has come and no other probe is out; probe says d carries it.
func (p *Pool) holdSilent(d decision.Decision, now time.Time) (_ decision.Decision, probe bool) {
	if !p.SilentBlocked() {
		return d, false
	}
	kept := d.Actions[:0:0]
	held := false
	for _, a := range d.Actions {
		l, ok := a.(decision.Launch)
		if !ok {
			kept = append(kept, a)
			continue
		}
		if !probe && !now.Before(p.nextProbe) && !p.probeInFlight() {
			probe = true
			held = held || l.Count > 1
			l.Count = 1
			l.Reason = "probe: " + l.Reason
			kept = append(kept, l)
			continue
		}
		held = true
	}
	if !held && !probe {
		return d, false
	}
	d.Actions = kept
	what := fmt.Sprintf("launches held, next probe launch at %s", p.nextProbe.UTC().Format(time.RFC3339))
	if probe {
		what = fmt.Sprintf("probe launch %d of one worker", p.probes+1)
	} else if p.probeInFlight() {
		what = "launches held while probe launch " + fmt.Sprint(p.probes) + " boots"
	}
	d.Reason = fmt.Sprintf("blocked: %d workers in a row never sent a heartbeat (last: %s); %s; %s; engine: %s",
		p.silent, p.silentCause, what, SilentCheck(p.job.Driver), d.Reason)
	return d, probe
}

// Silent returns the pool's block after silent workers as the controller
// stores it.
func (p *Pool) Silent() SilentState {
	return SilentState{Count: p.silent, Cause: p.silentCause, Counted: slices.Clone(p.countedIDs), Probes: p.probes, NextProbe: p.nextProbe}
}

// RestoreSilent sets the pool's block after silent workers from what a
// previous controller stored: the count and probes go on from there, and
// the workers it counted are not counted again. The probe in flight, if
// any, is judged like any other worker.
func (p *Pool) RestoreSilent(s SilentState) {
	p.silent, p.silentCause, p.probes, p.nextProbe = s.Count, s.Cause, s.Probes, s.NextProbe
	p.countedIDs = slices.Clone(s.Counted)
	p.restoredCounted = make(map[string]bool, len(s.Counted))
	for _, id := range s.Counted {
		p.restoredCounted[id] = true
	}
}

// Unblock ends the pool's blocks at once, as a person's reconfigure of the
// job or repair of the run asks: the silent and failed-launch counts start
// again from zero, and launches go at the next round.
func (p *Pool) Unblock() {
	p.silent, p.probes, p.nextProbe, p.probeLaunch = 0, 0, time.Time{}, ""
	p.launchFailures = 0
}

// Plan is what one decision asks of the controller, in order: store Record
// with Launches in one transaction (each launch gets its id there), then
// carry out the decision's terminations and drains, then send the pending
// launches (LaunchSteps).
type Plan struct {
	// Decision is the engine's decision after the launch back-off hold.
	Decision decision.Decision
	// Skip is set when the decision is no news: no actions, and the same
	// reason, target and error as the last one stored. Nothing is stored
	// or done, so the history stays readable.
	Skip     bool
	Record   Decision
	Launches []PendingLaunch
	// Probe says the (one) launch is a blocked pool's probe.
	Probe bool
}

// Plan applies the launch back-off hold and the same-reason skip to the
// engine's decision d taken at now, and renders what to store.
func (p *Pool) Plan(d decision.Decision, now time.Time) (Plan, error) {
	p.countNeverHealthy(d, now)
	p.countSilent(now)
	d = p.Hold(d, now)
	d, probe := p.holdSilent(d, now)
	if m := p.silence; m.Held {
		// Counts left out: they move every round, and a reason that
		// changes each time would store a decision each round.
		d.Reason += fmt.Sprintf("; mass silence since %s: more than %d%% of running workers silent at once, not replaced until %s",
			m.Since.UTC().Format(time.TimeOnly), p.job.Health.WithDefaults().MassSilencePercent, m.Until.UTC().Format(time.TimeOnly))
	}
	if len(d.Actions) == 0 && p.last != nil && p.last.Reason == d.Reason && p.lastTarget == d.Target && p.lastError == d.Error {
		return Plan{Decision: d, Skip: true}, nil
	}
	job := p.job
	var launches []PendingLaunch
	for _, a := range d.Actions {
		if l, ok := a.(decision.Launch); ok {
			spec, err := json.Marshal(provisioner.EngineSpec{Deployable: l.Spec.Deployable, Site: l.Spec.Site, Allocation: l.Spec.Allocation, Vars: l.Spec.Vars})
			if err != nil {
				return Plan{}, fmt.Errorf("job %s: encode launch spec: %w", job.Name, err)
			}
			for _, n := range launchParts(l.Count) {
				launches = append(launches, PendingLaunch{Count: n, Spec: spec})
			}
		}
	}
	return Plan{
		Decision: d,
		Record:   Decision{Time: now, Job: job.Name, Engine: d.Engine, Reason: d.Reason, Target: d.Target, Scaled: d.Scaled, Error: d.Error},
		Launches: launches,
		Probe:    probe && len(launches) == 1,
	}, nil
}

// Recorded notes that plan was stored as decision seq with launch ids ids
// (in the order of plan.Launches): the launches become pending, and the
// decision becomes the last one (and the last scale, when it scaled).
func (p *Pool) Recorded(plan Plan, seq int64, ids []string) {
	d, now := plan.Decision, plan.Record.Time
	p.last = &LastDecision{Time: now, Reason: d.Reason}
	p.lastTarget, p.lastError = d.Target, d.Error
	for i, l := range plan.Launches {
		p.pending = append(p.pending, Launch{LaunchID: ids[i], Job: p.job.Name, Seq: seq, Count: l.Count, Spec: l.Spec, State: LaunchPending, Created: now})
	}
	if plan.Probe && len(ids) == 1 {
		p.probes++
		p.probeLaunch = ids[0]
		p.nextProbe = now.Add(SilentBackoff(p.job.Health.WithDefaults().BootTimeout, p.probes+1))
	}
	if d.Scaled {
		p.lastScaleAt = now
	}
}

// LaunchStep is what to do with one pending launch: settle it as done
// without sending (its instance records are already in the view), or send
// it (again; the provisioner dedupes by launch id).
type LaunchStep struct {
	Launch Launch
	Settle bool
}

// LaunchSteps says, for every pending launch in order, whether to settle or
// send it: a launch all of whose instances are in the view is done; one
// only partly seen is sent again, and the provisioner's reply settles it.
func (p *Pool) LaunchSteps() []LaunchStep {
	if len(p.pending) == 0 {
		return nil
	}
	seen := p.launchSeen()
	steps := make([]LaunchStep, 0, len(p.pending))
	for _, l := range p.pending {
		steps = append(steps, LaunchStep{Launch: l, Settle: seen[l.LaunchID] >= l.Count})
	}
	return steps
}

// launchSeen counts the instances of each pending launch in the view.
func (p *Pool) launchSeen() map[string]int {
	if len(p.pending) == 0 {
		return nil
	}
	seen := make(map[string]int, len(p.pending))
	for _, l := range p.pending {
		seen[l.LaunchID] = 0
	}
	for _, w := range p.workers {
		if n, ok := seen[w.launchID]; ok {
			seen[w.launchID] = n + 1
		}
	}
	return seen
}

// owed is how many instances the pending launches still owe the view: each
// one's count less those of its instances already seen. A launch of
// thousands is carried out over seconds, its instances showing up as the
// provisioner records them; settled at its first instance, the rest of it
// went uncounted and the engine launched them again (at 10,000, 8,331 more
// on top of a launch of 10,000 still under way).
func (p *Pool) owed() int {
	seen := p.launchSeen()
	n := 0
	for _, l := range p.pending {
		n += max(0, l.Count-seen[l.LaunchID])
	}
	return n
}

// Settled removes a launch that is done or refused from the pending ones.
func (p *Pool) Settled(launchID string) {
	p.pending = slices.DeleteFunc(p.pending, func(l Launch) bool { return l.LaunchID == launchID })
}

// Drained notes that instance id was told to drain at now; a drain already
// in progress keeps its start.
func (p *Pool) Drained(id string, now time.Time) {
	if w, ok := p.workers[id]; ok && w.drainingSince.IsZero() {
		w.drainingSince = now
	}
}

// Status reports the job at now in the shape of mgmt.JobStatus; engine and
// policy are the job's engine name and the configuration in force.
func (p *Pool) Status(now time.Time, policy map[string]any, frozen bool) JobStatus {
	js := JobStatus{
		Name: p.job.Name, Engine: p.job.Engine, Policy: redactPolicy(policy), Desired: p.lastTarget,
		Counts: map[string]int{}, QueueDepth: p.depth, QueueSource: string(p.source), QueueError: p.depthWhy, DNSError: p.dnsProblem, MassSilence: p.Silence(),
		LastDecision: p.last, Workers: []WorkerStatus{}, Frozen: frozen,
	}
	js.Blocked = p.blocked()
	if p.revision != nil {
		r := *p.revision
		js.Revision = &r
	}
	drainTimeout, hasTimeout := policyDuration(policy, "drain_timeout")
	if n := p.owed(); n > 0 || len(p.pending) > 0 {
		js.Counts["pending_launch"] = n
	}
	for _, id := range slices.Sorted(maps.Keys(p.workers)) {
		w := p.workers[id]
		h := p.health(w, now)
		js.Counts[string(w.state)]++
		if w.state.Terminal() {
			continue
		}
		if !w.drainingSince.IsZero() {
			js.Counts["draining"]++
		}
		ws := WorkerStatus{ID: id, State: string(w.state), Health: string(h), Host: w.host, DNSName: w.dnsName, UID: w.uid, Restarts: w.restarts, Busy: w.busy}
		switch h {
		case nightshift.HealthProcessError:
			ws.Error = w.taskError
		case nightshift.HealthProbeFailed:
			ws.Error = w.probeFailing
		}
		ws.Probe = w.probe
		ws.Revision = RevisionOfLaunch(w.launchID)
		if !w.drainingSince.IsZero() {
			since := w.drainingSince
			ws.DrainingSince = &since
			if hasTimeout {
				deadline := since.Add(drainTimeout)
				ws.DrainDeadline = &deadline
			}
		}
		if !w.lastHeartbeat.IsZero() {
			age := now.Sub(w.lastHeartbeat).Seconds()
			ws.HeartbeatAgeS = &age
		}
		js.Workers = append(js.Workers, ws)
	}
	return js
}

// blocked says why the pool's launches are held, or nil: silent workers
// first (their block holds launches longer), then failed launches.
func (p *Pool) blocked() *Blocked {
	switch {
	case p.SilentBlocked():
		return &Blocked{Cause: BlockedNoHeartbeat, FailedLaunches: p.silent, LastCause: p.silentCause,
			NextLaunch: p.nextProbe, Probes: p.probes, Check: SilentCheck(p.job.Driver)}
	case p.launchFailures >= BlockedAfter:
		return &Blocked{Cause: BlockedLaunchFailures, FailedLaunches: p.launchFailures, LastCause: p.launchFailReason,
			NextLaunch: p.lastLaunchFailure.Add(LaunchBackoff(p.launchFailures)),
			Check:      "check the job's worker command and image, and the instance's reason for failing"}
	}
	return nil
}

// policyDuration reads a duration the engine's rendered configuration
// holds under key (engines render durations as strings, "5m0s").
func policyDuration(policy map[string]any, key string) (time.Duration, bool) {
	v, ok := policy[key].(string)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	return d, err == nil
}

// actionRecords renders d's actions as stored with their decision, the
// i-th launch carrying the i-th launch id.
// launchParts splits a launch of count instances into the counts of the
// launches that carry it: one launch request may ask for
// provisioner.MaxCount at most, so a bigger step is several, each with its
// own id.
func launchParts(count int) []int {
	var out []int
	for left := count; left > 0; left -= provisioner.MaxCount {
		out = append(out, min(left, provisioner.MaxCount))
	}
	return out
}

func actionRecords(acts []decision.Action, launchIDs []string) []actionRecord {
	out := make([]actionRecord, 0, len(acts))
	li := 0
	for _, a := range acts {
		switch a := a.(type) {
		case decision.Launch:
			// Plan split the launch (launchParts), one id each: one
			// record per id, in the same order.
			for _, n := range launchParts(a.Count) {
				r := actionRecord{Type: "launch", Count: n, Reason: a.Reason}
				if li < len(launchIDs) {
					r.LaunchID = launchIDs[li]
				}
				li++
				out = append(out, r)
			}
		case decision.Terminate:
			out = append(out, actionRecord{Type: "terminate", IDs: a.IDs, Reason: a.Reason})
		case decision.Drain:
			out = append(out, actionRecord{Type: "drain", IDs: a.IDs, Reason: a.Reason})
		}
	}
	return out
}

// redactPolicy hides secret-looking values (vars may carry credentials).
func redactPolicy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = redact.Value(k, v)
		case map[string]string:
			out[k] = redact.Map(v)
		case map[string]any:
			out[k] = redactPolicy(v)
		default:
			out[k] = v
		}
	}
	return out
}

// RolloutSnapshot is the pool at now as a rollout sees it, desired being
// the size its engine wants.
func (p *Pool) RolloutSnapshot(now time.Time, desired int) RolloutSnapshot {
	s := RolloutSnapshot{Now: now, Desired: desired}
	s.PendingLaunches = p.owed()
	for _, id := range slices.Sorted(maps.Keys(p.workers)) {
		w := p.workers[id]
		h := p.health(w, now)
		rw := RolloutWorker{ID: id, Revision: RevisionOfLaunch(w.launchID), State: w.state, Health: h,
			Busy: w.busy || p.drainUnconfirmed(w), Draining: !w.drainingSince.IsZero(), ReadySince: w.readySince}
		switch h {
		case nightshift.HealthProcessError:
			rw.Error = w.taskError
		case nightshift.HealthProbeFailed:
			rw.Error = w.probeFailing
		}
		s.Workers = append(s.Workers, rw)
	}
	return s
}
