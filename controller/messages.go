package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"nightshift"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/provisioner"
)

// Component is the controller's name on the bus.
const Component = "controller"

// Message types, all version 1. Reconfigure, freeze, unfreeze and unblock
// change what runs, so they must be signed with the run secret.
const (
	TypeReconfigure = "controller.reconfigure"
	TypeFreeze      = "controller.freeze"
	TypeUnfreeze    = "controller.unfreeze"
	TypeUnblock     = "controller.unblock"
	TypeRollout     = "controller.rollout"
	TypeStatus      = "controller.status"
	TypeDecisions   = "controller.decisions"
	TypeReply       = "controller.reply"
)

// ReconfigureBody changes a job's engine configuration (merged with the
// engine's Reconfigure rules).
type ReconfigureBody struct {
	Job    string         `json:"job"`
	Values map[string]any `json:"values"`
}

// Validate implements envelope.Validator.
func (b *ReconfigureBody) Validate() error {
	return envelope.FirstError(
		envelope.Require("job", b.Job != ""),
		envelope.Check("values", len(b.Values) > 0, "must hold at least one key"))
}

// Rollout actions.
const (
	RolloutStart = "start"
	RolloutUndo  = "undo"
)

// RolloutBody starts a rollout of Job (Action start, with Request) or
// turns its rollout back (undo). It changes what workers run, so it is
// signed, and only mgmt may send it.
type RolloutBody struct {
	Job     string         `json:"job"`
	Action  string         `json:"action"`
	Request RolloutRequest `json:"request,omitzero"`
}

// Validate implements envelope.Validator.
func (b *RolloutBody) Validate() error {
	c := b.Request.Config
	return envelope.FirstError(
		envelope.Require("job", b.Job != ""),
		envelope.Check("action", b.Action == RolloutStart || b.Action == RolloutUndo, fmt.Sprintf("%q is not one of start, undo", b.Action)),
		envelope.Check("request", b.Action != RolloutStart || len(b.Request.Set) > 0 || b.Request.Spec != nil, "a start needs set or spec"),
		envelope.Check("request.set", len(b.Request.Set) <= 100, "at most 100 keys"),
		envelope.Check("request.config.max_surge", c.MaxSurge >= 0 && c.MaxSurge <= 1000, "want 0..1000"),
		envelope.Check("request.config.max_unavailable", c.MaxUnavailable >= 0 && c.MaxUnavailable <= 1000, "want 0..1000"),
		envelope.Check("request.config.min_ready", c.MinReady >= 0 && c.MinReady <= 24*time.Hour, "want 0..24h"),
		envelope.Check("request.config.failure_threshold", c.FailureThreshold >= 0 && c.FailureThreshold <= 1000, "want 0..1000"))
}

// FreezeBody stops the controller acting (teardown); UnfreezeBody resumes.
type FreezeBody struct{}

// Validate implements envelope.Validator.
func (*FreezeBody) Validate() error { return nil }

// UnfreezeBody resumes acting after FreezeBody.
type UnfreezeBody struct{}

// Validate implements envelope.Validator.
func (*UnfreezeBody) Validate() error { return nil }

// UnblockBody ends a job's block (or every job's, when Job is empty) at
// once: `mgmt repair` sends it after a person fixed what the block's
// reason names. It changes what is launched, so it is signed.
type UnblockBody struct {
	Job string `json:"job,omitempty"`
}

// Validate implements envelope.Validator.
func (*UnblockBody) Validate() error { return nil }

// StatusBody asks for the status of one job, or all when Job is empty.
type StatusBody struct {
	Job string `json:"job,omitempty"`
	// Summary asks for each pool of more than MaxWorkerRows workers as a
	// WorkerSummary and its first MaxWorkerRows problem workers, not
	// every worker: the table of `mgmt status` shows no more, and at
	// 10,000 workers the whole list is megabytes to encode, send, decode
	// and redact (issue 18). `mgmt status --json` leaves it false.
	Summary bool `json:"summary,omitempty"`
}

// Validate implements envelope.Validator.
func (*StatusBody) Validate() error { return nil }

// DecisionsBody asks for a job's decision history, newest first.
type DecisionsBody struct {
	Job   string `json:"job"`
	Limit int    `json:"limit,omitempty"`
}

// Validate implements envelope.Validator.
func (b *DecisionsBody) Validate() error {
	return envelope.FirstError(
		envelope.Require("job", b.Job != ""),
		envelope.Check("limit", b.Limit >= 0 && b.Limit <= 10000, "want 0..10000"))
}

// DecisionRecord is one persisted decision: time, job, engine, reason,
// actions (JSON, with launch ids), target.
type DecisionRecord = Decision

// Reply answers every controller command. Error is empty on success.
type Reply struct {
	Error     string           `json:"error,omitempty"`
	Frozen    bool             `json:"frozen"`
	Jobs      []JobStatus      `json:"jobs,omitempty"`
	Decisions []DecisionRecord `json:"decisions,omitempty"`
	// Rollout is the rollout a rollout command started or turned back.
	Rollout *Rollout `json:"rollout,omitempty"`
}

// Validate implements envelope.Validator.
func (*Reply) Validate() error { return nil }

// RegisterMessages adds the controller's own commands and its reply to r;
// ctlbus.Messages adds the sitters' and the provisioner's messages the
// controller also speaks.
func RegisterMessages(r *envelope.Registry) {
	r.Register(TypeReconfigure, 1, func() envelope.Validator { return &ReconfigureBody{} }, true)
	r.Register(TypeFreeze, 1, func() envelope.Validator { return &FreezeBody{} }, true)
	r.Register(TypeUnfreeze, 1, func() envelope.Validator { return &UnfreezeBody{} }, true)
	r.Register(TypeUnblock, 1, func() envelope.Validator { return &UnblockBody{} }, true)
	r.Register(TypeRollout, 1, func() envelope.Validator { return &RolloutBody{} }, true)
	r.Register(TypeStatus, 1, func() envelope.Validator { return &StatusBody{} }, false)
	r.Register(TypeDecisions, 1, func() envelope.Validator { return &DecisionsBody{} }, false)
	r.Register(TypeReply, 1, func() envelope.Validator { return &Reply{} }, false)
}

// JobStatus is the JSON shape of mgmt.JobStatus (kept as a copy so mgmt
// can depend on this package and not the other way round).
type JobStatus struct {
	Name        string         `json:"name"`
	Engine      string         `json:"engine"`
	Policy      map[string]any `json:"policy,omitempty"`
	Desired     int            `json:"desired"`
	Counts      map[string]int `json:"counts,omitempty"`
	QueueDepth  *int           `json:"queue_depth"`
	QueueSource string         `json:"queue_source,omitempty"`
	// QueueError says why QueueDepth is null, when the job has a queue:
	// not declared yet, broker unreachable, ...
	QueueError string `json:"queue_error,omitempty"`
	// DNSError says why the job's DNS records are not being kept, as the
	// provisioner last reported it (at most ResyncEvery old).
	DNSError string `json:"dns_error,omitempty"`
	// MassSilence is set while more than mass_silence_percent of the
	// job's running workers are silent at once: blamed on the bus or
	// the controller, they are not replaced until its Until.
	MassSilence  *MassSilence   `json:"mass_silence,omitempty"`
	LastDecision *LastDecision  `json:"last_decision,omitempty"`
	Workers      []WorkerStatus `json:"workers"`
	// Frozen is an addition to mgmt.JobStatus; an older mgmt ignores it,
	// as it does every field it does not know: replies are decoded
	// without refusing unknown fields (envelope.Registry.DecodeReply).
	Frozen bool `json:"frozen,omitempty"`
	// Blocked is set while launches are held: the job's
	// block_after_silent workers in a row never sent a heartbeat, or
	// BlockedAfter launches in a row failed, none healthy since.
	Blocked *Blocked `json:"blocked,omitempty"`
	// Revision is the job's worker-spec revision in force: what new
	// workers run.
	Revision *RevisionStatus `json:"revision,omitempty"`
	// Rollout is the job's latest rollout, in progress or ended; nil
	// when it never had one.
	Rollout *Rollout `json:"rollout,omitempty"`
	// Summary is set when the status was asked for with
	// StatusBody.Summary and the pool has more than MaxWorkerRows
	// workers; Workers then holds only its first problem workers.
	Summary *WorkerSummary `json:"summary,omitempty"`
}

// MaxWorkerRows is how many workers of a pool the table of `mgmt status`
// lists one a line. A bigger pool (thousands of workers) is summarized
// instead (WorkerSummary), with a row for each worker that is not running
// and healthy, up to this many.
const MaxWorkerRows = 50

// WorkerSummary is what the table of `mgmt status` shows of a big pool.
type WorkerSummary struct {
	// Workers is how many workers it counts: all that JobStatus.Workers
	// would list without the summary.
	Workers int `json:"workers"`
	// ByStateHealth counts them by "state/health".
	ByStateHealth map[string]int `json:"by_state_health"`
	// Healthy counts those running, healthy and not draining: what a
	// pool's readiness compares with its desired size.
	Healthy  int `json:"healthy"`
	Busy     int `json:"busy"`
	Draining int `json:"draining"`
	// HeartbeatMedianS and HeartbeatOldestS are the ages of the heard
	// workers' last heartbeats; nil when none was heard.
	HeartbeatMedianS *float64 `json:"heartbeat_median_s,omitempty"`
	HeartbeatOldestS *float64 `json:"heartbeat_oldest_s,omitempty"`
	// Problems counts the workers not running and healthy (or draining,
	// or with an error to show).
	Problems int `json:"problems"`
}

// Problem reports a worker that gets a row of its own in a summarized
// pool: not running and healthy, draining, or with an error to show.
func (w WorkerStatus) Problem() bool {
	return w.State != string(nightshift.StateRunning) || w.Health != string(nightshift.HealthOK) || w.DrainingSince != nil || w.Error != ""
}

// Healthy reports a worker that counts towards the pool's desired size.
func (w WorkerStatus) Healthy() bool {
	return w.State == string(nightshift.StateRunning) && w.Health == string(nightshift.HealthOK) && w.DrainingSince == nil
}

// SummarizeWorkers summarizes ws and returns its first rows problem
// workers, in the order of ws.
func SummarizeWorkers(ws []WorkerStatus, rows int) (WorkerSummary, []WorkerStatus) {
	s := WorkerSummary{Workers: len(ws), ByStateHealth: map[string]int{}}
	var ages []float64
	var odd []WorkerStatus
	for _, wk := range ws {
		s.ByStateHealth[wk.State+"/"+wk.Health]++
		if wk.Busy {
			s.Busy++
		}
		if wk.DrainingSince != nil {
			s.Draining++
		}
		if wk.Healthy() {
			s.Healthy++
		}
		if wk.HeartbeatAgeS != nil {
			ages = append(ages, *wk.HeartbeatAgeS)
		}
		if wk.Problem() {
			s.Problems++
			if len(odd) < rows {
				odd = append(odd, wk)
			}
		}
	}
	if len(ages) > 0 {
		slices.Sort(ages)
		median, oldest := ages[len(ages)/2], ages[len(ages)-1]
		s.HeartbeatMedianS, s.HeartbeatOldestS = &median, &oldest
	}
	return s, odd
}

// Summarize replaces the workers of a pool of more than MaxWorkerRows
// with their summary and first problem workers (StatusBody.Summary); a
// smaller pool keeps every worker, each a row of the table.
func (js *JobStatus) Summarize() {
	if len(js.Workers) <= MaxWorkerRows {
		return
	}
	s, odd := SummarizeWorkers(js.Workers, MaxWorkerRows)
	if odd == nil {
		odd = []WorkerStatus{}
	}
	js.Summary, js.Workers = &s, odd
}

// Why a pool is blocked (Blocked.Cause).
const (
	// BlockedNoHeartbeat: workers reach running and never send a
	// heartbeat; launches stop but for a probe now and then.
	BlockedNoHeartbeat = "no_heartbeat"
	// BlockedLaunchFailures: instances fail before running, or their task
	// never runs; launches back off.
	BlockedLaunchFailures = "launch_failures"
)

// Blocked says why a pool's launches are held and until when.
type Blocked struct {
	Cause string `json:"cause"`
	// FailedLaunches counts the failed launches (for no_heartbeat: the
	// silent workers) in a row.
	FailedLaunches int       `json:"failed_launches"`
	LastCause      string    `json:"last_cause"`
	NextLaunch     time.Time `json:"next_launch"`
	// Probes counts the probe launches sent since a no_heartbeat block.
	Probes int `json:"probes,omitempty"`
	// Check says what a person should look at.
	Check string `json:"check,omitempty"`
}

// LastDecision is the last decision of a job, with its reason.
type LastDecision struct {
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
}

// WorkerStatus is one worker of a job.
type WorkerStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Health string `json:"health"`
	Host   string `json:"host,omitempty"`
	// DNSName is the worker's name in its job's DNS zone (the job's dns
	// table), which a replacement takes over; empty without one.
	DNSName string `json:"dns_name,omitempty"`
	// UID is the Unix uid of the worker's own when a root provisioner runs
	// it on its host under one (provisioner.Instance.WorkerUID); 0, left
	// out, when it runs as a named user or elsewhere.
	UID           uint32   `json:"uid,omitempty"`
	HeartbeatAgeS *float64 `json:"heartbeat_age_s"`
	Restarts      int      `json:"restarts"`
	// Error is the failing task's last exit or start error when health is
	// process_error.
	Error string `json:"error,omitempty"`
	// Revision is the job's spec revision the worker was launched with
	// (0: unknown, launched by an older controller).
	Revision int `json:"revision,omitempty"`
	// Probe is the worker's health probe as its last heartbeat said
	// ("work: healthy (HTTP 200)"), a failing or starting one first;
	// empty when its tasks have none.
	Probe string `json:"probe,omitempty"`
	// Busy is what the worker's last heartbeat said: a task running with
	// work busy. Scale-in drains busy workers instead of terminating them.
	Busy bool `json:"busy"`
	// DrainingSince is when the controller told the worker to drain (it
	// was chosen for scale-in while busy); nil when it is not draining.
	DrainingSince *time.Time `json:"draining_since,omitempty"`
	// DrainDeadline is DrainingSince plus the engine's drain_timeout: a
	// worker still busy then is terminated anyway, and the decision says
	// so. Nil when not draining or the engine has no drain_timeout.
	DrainDeadline *time.Time `json:"drain_deadline,omitempty"`
}

// CrashLoopFailures is how many failed runs in a row make a task in
// back-off count as failing (health process_error): one crash is the
// sitter's to absorb, a loop is the pool's to replace.
const CrashLoopFailures = 3

// launchRequest is what the controller asks of the provisioner for a
// pending launch: the job by name with the digest of its worker spec (the
// provisioner holds the spec itself, from the plan) and the engine's labels,
// stored with the launch as JSON.
func launchRequest(j Job, l Launch) (provisioner.LaunchRequest, error) {
	digest, err := jobspec.Spec{Driver: j.Driver, Instance: j.Instance, Worker: j.Worker}.Digest()
	if err != nil {
		return provisioner.LaunchRequest{}, fmt.Errorf("job %s: %w", j.Name, err)
	}
	req := provisioner.LaunchRequest{LaunchID: l.LaunchID, Job: l.Job, Count: l.Count, SpecDigest: digest}
	var e provisioner.EngineSpec
	// Launches stored by an older controller hold a whole spec; its
	// engine labels are lost, which changes nothing that runs.
	if len(l.Spec) > 0 && json.Unmarshal(l.Spec, &e) == nil && (e.Deployable != "" || e.Site != "" || e.Allocation != "" || len(e.Vars) > 0) {
		req.Engine = &e
	}
	return req, nil
}

// actionRecord is how an action is stored with its decision.
type actionRecord struct {
	Type     string   `json:"type"`
	Count    int      `json:"count,omitempty"`
	LaunchID string   `json:"launch_id,omitempty"`
	IDs      []string `json:"ids,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}

func encodeActions(acts []actionRecord) (json.RawMessage, error) {
	if acts == nil {
		acts = []actionRecord{}
	}
	b, err := json.Marshal(acts)
	return b, err
}

// LaunchID derives the idempotency key of the i-th launch of decision seq
// of job, for workers of spec revision rev. epoch is a random value created
// with the store, so a controller started on a fresh store never reuses an
// id an older store handed out. The revision in the id is how a worker's
// revision is known (RevisionOfLaunch), after a restart too.
func LaunchID(job, epoch string, rev int, seq int64, i int) string {
	return fmt.Sprintf("%s.%s.r%d.d%d.%d", job, epoch, rev, seq, i)
}
