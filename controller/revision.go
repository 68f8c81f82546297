package controller

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"nightshift/internal/jobspec"
)

// Revision is one version of a job's worker spec (its driver, instance and
// worker), numbered from 1 per job and recorded by the controller with
// when, who and how it ended. The plan's spec is a revision (Who
// WhoPlan); a rollout adds one.
type Revision struct {
	Job    string `json:"job"`
	Number int    `json:"number"`
	// Digest is jobspec.Spec.Digest of Spec: what launches carry as
	// spec_digest.
	Digest string `json:"digest"`
	// Spec is the jobspec.Spec, as JSON.
	Spec json.RawMessage `json:"spec"`
	Time time.Time       `json:"time"`
	Who  string          `json:"who"`
	// Outcome is where the revision stands (Revision* constants); Note
	// says why it got there.
	Outcome string    `json:"outcome"`
	Note    string    `json:"note,omitempty"`
	Updated time.Time `json:"updated"`
}

// WhoPlan is a revision's Who when it came from the jobs file.
const WhoPlan = "plan"

// Revision outcomes.
const (
	// RevisionCurrent: the revision in force; new workers run it.
	RevisionCurrent = "current"
	// RevisionSuperseded: a later revision took its place.
	RevisionSuperseded = "superseded"
)

// SpecOf is the worker spec a job's definition holds.
func SpecOf(j Job) jobspec.Spec {
	return jobspec.Spec{Driver: j.Driver, Instance: j.Instance, Worker: j.Worker}
}

// NewRevision makes revision n of job from spec.
func NewRevision(job string, n int, spec jobspec.Spec, who string, now time.Time) (Revision, error) {
	digest, err := spec.Digest()
	if err != nil {
		return Revision{}, fmt.Errorf("job %s: revision %d: %w", job, n, err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return Revision{}, fmt.Errorf("job %s: revision %d: %w", job, n, err)
	}
	return Revision{Job: job, Number: n, Digest: digest, Spec: b, Time: now, Who: who, Outcome: RevisionCurrent, Updated: now}, nil
}

// SpecOfRevision decodes a revision's spec.
func SpecOfRevision(r Revision) (jobspec.Spec, error) {
	var s jobspec.Spec
	if err := json.Unmarshal(r.Spec, &s); err != nil {
		return s, fmt.Errorf("job %s: revision %d: spec: %w", r.Job, r.Number, err)
	}
	return s, nil
}

// StartRevision decides, at a controller's start, the revision in force
// for a job whose jobs file holds file, given the stored revisions (oldest
// first), and what to store for it. As with a reconfigured policy, what
// was rolled out stays in force while the file's spec is the one the plan
// revision last recorded; an edited file wins, as a new revision from the
// plan.
func StartRevision(job string, revs []Revision, file jobspec.Spec, now time.Time) (current Revision, writes []Revision, err error) {
	digest, err := file.Digest()
	if err != nil {
		return Revision{}, nil, fmt.Errorf("job %s: %w", job, err)
	}
	var lastPlan, cur *Revision
	for i := range revs {
		r := &revs[i]
		if r.Who == WhoPlan {
			lastPlan = r
		}
		if r.Outcome == RevisionCurrent {
			cur = r
		}
	}
	if lastPlan != nil && lastPlan.Digest == digest {
		if cur != nil {
			return *cur, nil, nil
		}
		// Nothing in force (every revision ended): the plan's is.
		r := *lastPlan
		r.Outcome, r.Note, r.Updated = RevisionCurrent, "in force again at the controller's start", now
		return r, []Revision{r}, nil
	}
	n := 1
	if len(revs) > 0 {
		n = revs[len(revs)-1].Number + 1
	}
	next, err := NewRevision(job, n, file, WhoPlan, now)
	if err != nil {
		return Revision{}, nil, err
	}
	if cur != nil {
		old := *cur
		old.Outcome, old.Note, old.Updated = RevisionSuperseded, fmt.Sprintf("the jobs file's spec changed (revision %d)", n), now
		writes = append(writes, old)
	}
	return next, append(writes, next), nil
}

// launchRevision finds the revision a launch id names (0: none, an id of
// an older controller).
var launchRevision = regexp.MustCompile(`\.r([0-9]+)\.d[0-9]+\.[0-9]+$`)

// RevisionOfLaunch is the spec revision a launch id was made for, or 0.
func RevisionOfLaunch(launchID string) int {
	m := launchRevision.FindStringSubmatch(launchID)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	return n
}

// RevisionStatus is a job's revision in force, as status shows it.
type RevisionStatus struct {
	Number int       `json:"number"`
	Digest string    `json:"digest"`
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	// Spec is the revision's worker spec (jobspec.Spec as JSON): what
	// mgmt rollout --from-plan shows a plan's spec against before it
	// sends it.
	Spec json.RawMessage `json:"spec,omitempty"`
}
