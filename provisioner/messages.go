package provisioner

import (
	"context"
	"errors"
	"fmt"

	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
)

// Component is the provisioner's name on the bus: commands go to its
// command queue, and it is the Sender of its events and replies.
const Component = "provisioner"

// Message types, all version 1. Commands marked destructive in Messages
// (launch, terminate, terminate_all, enable) must be signed with the run
// secret; only describe, replies and events are not.
const (
	TypeLaunch       = "provisioner.launch"
	TypeTerminate    = "provisioner.terminate"
	TypeTerminateAll = "provisioner.terminate_all"
	TypeEnable       = "provisioner.enable"
	// TypeRevise hands the provisioner a revision of a job's worker spec
	// (ReviseBody), which launches may then name by its digest.
	TypeRevise = "provisioner.revise"
	// TypeHealth tells the provisioner the controller's judgement of a
	// job's workers (HealthBody), which decides their DNS records. It is
	// signed, and only the controller's broker user may send it, so a
	// worker cannot put itself (or take another) in a pool record.
	TypeHealth   = "provisioner.health"
	TypeDescribe = "provisioner.describe"
	TypeReply    = "provisioner.reply"
	TypeInstance = "provisioner.instance" // event, routing key EventKey
)

// Limits of the terminate body.
const maxInstanceIDLen = 200

// TerminateBody asks to terminate instances by id.
type TerminateBody struct {
	InstanceIDs []string `json:"instance_ids"`
}

// Validate implements envelope.Validator.
func (b *TerminateBody) Validate() error {
	if len(b.InstanceIDs) == 0 || len(b.InstanceIDs) > MaxCount {
		return &envelope.FieldError{Field: "instance_ids", Reason: fmt.Sprintf("want 1..%d ids", MaxCount)}
	}
	for i, id := range b.InstanceIDs {
		if id == "" || len(id) > maxInstanceIDLen {
			return &envelope.FieldError{Field: fmt.Sprintf("instance_ids[%d]", i), Reason: fmt.Sprintf("want 1..%d characters", maxInstanceIDLen)}
		}
	}
	return nil
}

// TerminateAllBody disables launches and terminates everything.
type TerminateAllBody struct{}

// Validate implements envelope.Validator.
func (*TerminateAllBody) Validate() error { return nil }

// EnableBody re-enables launches after terminate_all.
type EnableBody struct{}

// Validate implements envelope.Validator.
func (*EnableBody) Validate() error { return nil }

// ReviseBody is a revision of Job's worker spec, a rollout's: launches
// whose spec_digest is Digest then run Spec. It is signed like launch, for
// the same reason: it decides what workers run. The controller sends it,
// for the revision a person's signed mgmt rollout made.
type ReviseBody struct {
	Job    string       `json:"job"`
	Digest string       `json:"digest"`
	Spec   jobspec.Spec `json:"spec"`
}

// Validate implements envelope.Validator.
func (b *ReviseBody) Validate() error {
	if err := ValidJob(b.Job); err != nil {
		return &envelope.FieldError{Field: "job", Reason: err.Error()}
	}
	if !specDigest.MatchString(b.Digest) {
		return &envelope.FieldError{Field: "digest", Reason: "want sha256: and 64 lower-case hex digits (jobspec.Spec.Digest)"}
	}
	if len(b.Spec.Worker) == 0 {
		return &envelope.FieldError{Field: "spec.worker", Reason: "missing"}
	}
	return nil
}

// HealthBody is the controller's judgement of Job's running workers:
// those heard healthy and those judged unhealthy (missing, probe failed,
// ...). A worker in neither list (booting, not yet heard after a restart)
// keeps what it had. The controller sends it whenever the judgement of a
// job with a dns table changes, and again after it restarts, a pool too
// big for one message in several (Chunks); the same body again changes
// nothing.
type HealthBody struct {
	Job       string   `json:"job"`
	Healthy   []string `json:"healthy,omitempty"`
	Unhealthy []string `json:"unhealthy,omitempty"`
}

// Validate implements envelope.Validator.
func (b *HealthBody) Validate() error {
	if err := ValidJob(b.Job); err != nil {
		return &envelope.FieldError{Field: "job", Reason: err.Error()}
	}
	if len(b.Healthy)+len(b.Unhealthy) > MaxCount {
		return &envelope.FieldError{Field: "healthy", Reason: fmt.Sprintf("want at most %d ids in all", MaxCount)}
	}
	seen := make(map[string]bool, len(b.Healthy))
	for field, ids := range map[string][]string{"healthy": b.Healthy, "unhealthy": b.Unhealthy} {
		for i, id := range ids {
			if id == "" || len(id) > maxInstanceIDLen {
				return &envelope.FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Reason: fmt.Sprintf("want 1..%d characters", maxInstanceIDLen)}
			}
		}
	}
	for _, id := range b.Healthy {
		seen[id] = true
	}
	for i, id := range b.Unhealthy {
		if seen[id] {
			return &envelope.FieldError{Field: fmt.Sprintf("unhealthy[%d]", i), Reason: fmt.Sprintf("%s is also healthy", id)}
		}
	}
	return nil
}

// maxHealthIDBytes bounds the ids of one HealthBody as JSON, well inside
// the bus's 1 MiB limit on a command (amqpbus.MaxMessageSize) with room
// for the envelope: MaxCount ids of the longest instance ids the
// provisioner makes take about 800 KB, and Validate lets an id be longer.
const maxHealthIDBytes = 512 << 10

// Chunks splits b into bodies for b.Job that each validate and fit one
// command, to be sent in turn: a controller's pool may hold more than
// MaxCount workers. Each chunk is a complete statement about its own ids
// and leaves every other worker as it was (left out keeps what it had),
// and no id is in two chunks, so the chunks in any order say what b says.
// A body without ids is one chunk.
func (b HealthBody) Chunks() []HealthBody {
	var out []HealthBody
	cur, n, size := HealthBody{Job: b.Job}, 0, 0
	add := func(id string, healthy bool) {
		// An id costs its quotes and a comma besides itself.
		if n > 0 && (n == MaxCount || size+len(id)+3 > maxHealthIDBytes) {
			out = append(out, cur)
			cur, n, size = HealthBody{Job: b.Job}, 0, 0
		}
		if healthy {
			cur.Healthy = append(cur.Healthy, id)
		} else {
			cur.Unhealthy = append(cur.Unhealthy, id)
		}
		n, size = n+1, size+len(id)+3
	}
	for _, id := range b.Healthy {
		add(id, true)
	}
	for _, id := range b.Unhealthy {
		add(id, false)
	}
	return append(out, cur)
}

// DescribeBody asks for the records of one job, or all when Job is empty.
// Replies travel as one message, so large pools should ask for LiveOnly
// and leave History off.
type DescribeBody struct {
	Job      string `json:"job,omitempty"`
	LiveOnly bool   `json:"live_only,omitempty"`
	History  bool   `json:"history,omitempty"`
}

// Validate implements envelope.Validator.
func (b *DescribeBody) Validate() error {
	if b.Job != "" {
		if err := ValidJob(b.Job); err != nil {
			return &envelope.FieldError{Field: "job", Reason: err.Error()}
		}
	}
	return nil
}

// Reply answers every command. Error is empty on success; Instances holds
// the affected records (launch, terminate) or all matching ones (describe);
// Live counts live instances (terminate_all, describe) so callers can poll
// until it reaches zero; DNSProblem is Status.DNSProblem (describe), which
// the controller shows in status.
type Reply struct {
	Error    string `json:"error,omitempty"`
	NotFound bool   `json:"not_found,omitempty"`
	// Retryable says the command failed for a reason other than its
	// content (the store, say); sending it again later may succeed.
	Retryable bool       `json:"retryable,omitempty"`
	Disabled  bool       `json:"disabled,omitempty"`
	Live      int        `json:"live"`
	Instances []Instance `json:"instances,omitempty"`
	// DNSProblem is Status.DNSProblem; without it a controller over the
	// bus never heard why a pool's records are not being kept.
	DNSProblem string `json:"dns_problem,omitempty"`
}

// Validate implements envelope.Validator.
func (*Reply) Validate() error { return nil }

// InstanceEvent announces an instance's new state.
type InstanceEvent struct {
	Instance Instance `json:"instance"`
}

// Validate implements envelope.Validator.
func (e *InstanceEvent) Validate() error {
	if e.Instance.ID == "" {
		return &envelope.FieldError{Field: "instance.id", Reason: "missing"}
	}
	if !e.Instance.State.Valid() {
		return &envelope.FieldError{Field: "instance.state", Reason: fmt.Sprintf("unknown state %q", e.Instance.State)}
	}
	return nil
}

// Messages returns a registry of every provisioner message type.
func Messages() *envelope.Registry {
	r := &envelope.Registry{}
	// Launch is signed like every command that changes anything: it
	// starts processes.
	r.Register(TypeLaunch, 1, func() envelope.Validator { return &LaunchRequest{} }, true)
	r.Register(TypeTerminate, 1, func() envelope.Validator { return &TerminateBody{} }, true)
	r.Register(TypeTerminateAll, 1, func() envelope.Validator { return &TerminateAllBody{} }, true)
	r.Register(TypeEnable, 1, func() envelope.Validator { return &EnableBody{} }, true)
	r.Register(TypeRevise, 1, func() envelope.Validator { return &ReviseBody{} }, true)
	r.Register(TypeHealth, 1, func() envelope.Validator { return &HealthBody{} }, true)
	r.Register(TypeDescribe, 1, func() envelope.Validator { return &DescribeBody{} }, false)
	r.Register(TypeReply, 1, func() envelope.Validator { return &Reply{} }, false)
	r.Register(TypeInstance, 1, func() envelope.Validator { return &InstanceEvent{} }, false)
	return r
}

// Handle executes one decoded command body (as returned by
// Messages().Decode) and returns the reply. Authentication of destructive
// commands is the transport's job and must happen before Handle.
func (p *Provisioner) Handle(ctx context.Context, body any) Reply {
	var r Reply
	var err error
	switch b := body.(type) {
	case *LaunchRequest:
		r.Instances, err = p.Launch(ctx, *b)
	case *TerminateBody:
		r.Instances, err = p.Terminate(ctx, b.InstanceIDs)
	case *TerminateAllBody:
		r.Live, err = p.TerminateAll(ctx)
		r.Disabled = err == nil
	case *EnableBody:
		err = p.Enable(ctx)
	case *ReviseBody:
		err = p.Revise(ctx, *b)
	case *HealthBody:
		err = p.SetHealth(ctx, *b)
	case *DescribeBody:
		var st Status
		st, err = p.describe(ctx, b.Job, b.LiveOnly)
		r.Live, r.Disabled, r.DNSProblem = st.Live, st.Disabled, st.DNSProblem
		for _, in := range st.Instances {
			if b.LiveOnly && !in.State.Live() {
				continue
			}
			if !b.History {
				in.History = nil
			}
			r.Instances = append(r.Instances, in)
		}
	default:
		err = fmt.Errorf("handle: %T is not a provisioner command", body)
	}
	if err != nil {
		r.Error = err.Error()
		r.NotFound = errors.Is(err, ErrNotFound)
		_, badBody := body.(interface{ Validate() error })
		r.Retryable = badBody && !r.NotFound && !errors.Is(err, ErrInvalid)
	}
	return r
}
