// Package mgmt owns what an operator sees and does to a run after launch:
// status (levels, services, and the worker pools of its jobs, with the reason
// for each decision), history, and teardown, which stops the pools, tears the
// levels down in reverse and then proves that nothing of the run is left.
package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"nightshift/bootlevel"
	"nightshift/controller"
	"nightshift/internal/redact"
	"nightshift/internal/termtext"
	"nightshift/launchplan"
)

// RunStatus is the shape of `mgmt status --json`. States are lowercase.
type RunStatus struct {
	Run     string        `json:"run"`
	Plan    string        `json:"plan"`
	State   string        `json:"state"`
	Created time.Time     `json:"created"`
	Updated time.Time     `json:"updated"`
	Levels  []LevelStatus `json:"levels"`
	Jobs    []JobStatus   `json:"jobs"`
	// Notes say what could not be shown, such as pools whose controller
	// cannot be reached.
	Notes []string `json:"notes,omitempty"`
	// Checks are the ready checks `status --verify` ran, one per service.
	Checks []bootlevel.CheckResult `json:"checks,omitempty"`
	// KeeperMetricsURL is where the run's active keeper serves its
	// Prometheus metrics; empty when no keeper is active on this host.
	KeeperMetricsURL string `json:"keeper_metrics_url,omitempty"`
}

// LevelStatus is one bootlevel.
type LevelStatus struct {
	Level    int             `json:"level"`
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one service; secret attribute values are redacted.
type ServiceStatus struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Attributes map[string]string `json:"attributes"`
	Host       string            `json:"host,omitempty"`
	InstanceID string            `json:"instance_id,omitempty"`
	Restarts   int               `json:"restarts"`
	Error      string            `json:"error,omitempty"`
	Log        string            `json:"log,omitempty"`
	// Verified is set by `status --verify`: the result of running the
	// service's ready check just now.
	Verified *bool `json:"verified,omitempty"`
	// PID, Alive and LastExit describe the service's process on this host
	// (pid file and /proc, looked at just now) for the types that run one.
	PID      int    `json:"pid,omitempty"`
	Alive    *bool  `json:"alive,omitempty"`
	LastExit string `json:"last_exit,omitempty"`
}

// StateDown is the state status gives a booted service whose process is
// known dead, whatever its record says: the record says what was booted,
// /proc says what runs.
const StateDown = "down"

// The attributes status adds to a replica of a daemon (config.replicas):
// its role (active or standby) and the epoch of the lease it holds (0 while
// it stands by), as the replica last recorded them.
const (
	AttrRole  = "role"
	AttrEpoch = "epoch"
)

// Process is what this host knows of a service's process right now.
type Process struct {
	PID      int
	Alive    bool
	LastExit string // how it last ended, when known
	// Role and Epoch are what a replica of a daemon (config.replicas)
	// says of its lease: "active" with the lease's epoch, or "standby"
	// with 0; Role is empty for a process that is no replica.
	Role  string
	Epoch int64
}

// MarkProcesses adds procs to the services of st; a ready or failed
// service whose process is dead shows as down.
func MarkProcesses(st *RunStatus, procs map[string]Process) {
	for i := range st.Levels {
		for j := range st.Levels[i].Services {
			s := &st.Levels[i].Services[j]
			p, ok := procs[s.Name]
			if !ok {
				continue
			}
			alive := p.Alive
			s.Alive, s.PID, s.LastExit = &alive, p.PID, redact.String(p.LastExit)
			if !alive && (s.State == string(bootlevel.ServiceReady) || s.State == string(bootlevel.ServiceFailed)) {
				s.State = StateDown
			}
			if p.Role != "" && alive {
				if s.Attributes == nil {
					s.Attributes = map[string]string{}
				}
				s.Attributes[AttrRole], s.Attributes[AttrEpoch] = p.Role, strconv.FormatInt(p.Epoch, 10)
			}
		}
	}
}

// JobStatus is one worker pool, exactly as the controller reports it; the
// controller owns the shape so that status and its RPC cannot drift apart.
type JobStatus = controller.JobStatus

// Decision is the last decision an engine took, with its reason.
type Decision = controller.LastDecision

// WorkerStatus is one worker instance of a pool.
type WorkerStatus = controller.WorkerStatus

// JobSource supplies the pools of a run; the controllers provide one. It may
// be nil for runs that have no jobs.
type JobSource interface {
	Jobs(ctx context.Context, run string) ([]JobStatus, error)
}

// HasPools reports whether a run's services recorded a Nightshift
// controller or provisioner among them (launchplan.AttrComponent), i.e.
// worker pools to show and to stop before teardown. What a service
// recorded counts, not the type the plan gave it: a daemon booted by a
// script on an EC2 host is as much a controller as a built-in one here.
func HasPools(recs []bootlevel.ServiceRecord) bool {
	for _, r := range recs {
		switch r.Attributes[launchplan.AttrComponent] {
		case launchplan.ComponentController, launchplan.ComponentProvisioner:
			return true
		}
	}
	return false
}

// Status assembles a run's status from the store (and the pools from jobs).
func Status(ctx context.Context, st bootlevel.Store, run string, jobs JobSource) (*RunStatus, error) {
	r, err := st.GetRun(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("status of run %q: %w", run, err)
	}
	recs, err := st.Services(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("status of run %q: %w", run, err)
	}
	out := &RunStatus{
		Run: r.Name, Plan: r.PlanPath, State: string(r.State),
		Created: r.Created, Updated: r.Updated,
		Levels: levels(recs), Jobs: []JobStatus{},
	}
	if jobs != nil {
		js, err := jobs.Jobs(ctx, run)
		if err != nil {
			return nil, fmt.Errorf("pools of run %q: %w", run, err)
		}
		out.Jobs = js
	}
	return out, nil
}

func levels(recs []bootlevel.ServiceRecord) []LevelStatus {
	byLevel := map[int][]ServiceStatus{}
	for _, s := range recs {
		attrs := redact.Map(s.Attributes)
		if attrs == nil {
			attrs = map[string]string{}
		}
		byLevel[s.Level] = append(byLevel[s.Level], ServiceStatus{
			Name: s.Name, State: string(s.State), Attributes: attrs,
			Host: s.Host.Hostname, InstanceID: s.Host.InstanceID,
			Restarts: s.Restarts, Error: redact.String(s.Error), Log: s.LogPath,
		})
	}
	nums := make([]int, 0, len(byLevel))
	for n := range byLevel {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	out := make([]LevelStatus, 0, len(nums))
	for _, n := range nums {
		svcs := byLevel[n]
		sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
		out = append(out, LevelStatus{Level: n, Services: svcs})
	}
	return out
}

// Redact returns a copy of s in which every string (attributes, errors,
// notes, the pools' reasons and policies, whatever the controller reports)
// has passed through red, as redact.Redactor.EncodeJSON does; both the table
// and --json show the copy.
func Redact(s *RunStatus, red *redact.Redactor) (*RunStatus, error) {
	var buf bytes.Buffer
	if err := red.EncodeJSON(&buf, s); err != nil {
		return nil, fmt.Errorf("redact status: %w", err)
	}
	var out RunStatus
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("redact status: %w", err)
	}
	return &out, nil
}

// WriteTable renders a status for a person. Every value is escaped
// (termtext.Line): a cell is one line, whatever a service exported.
func WriteTable(w io.Writer, s *RunStatus) error { return WriteTableWidth(w, s, 80) }

// WriteTableWidth is WriteTable with attributes cut at attrWidth
// characters, or whole when attrWidth is 0 (a pipe, or --wide).
func WriteTableWidth(w io.Writer, s *RunStatus, attrWidth int) error {
	q := termtext.Line
	fmt.Fprintf(w, "run %s  state %s  plan %s\n", q(s.Run), q(s.State), q(s.Plan))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEVEL\tSERVICE\tSTATE\tHOST\tATTRIBUTES")
	for _, l := range s.Levels {
		for _, svc := range l.Services {
			state := q(svc.State)
			if svc.Verified != nil && !*svc.Verified {
				state += " (ready check failing)"
			}
			if role := svc.Attributes[AttrRole]; role == "active" {
				state += " (active, epoch " + q(svc.Attributes[AttrEpoch]) + ")"
			} else if role != "" {
				state += " (" + q(role) + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", l.Level, q(svc.Name), state, q(svc.Host), attrLine(svc.Attributes, attrWidth))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range s.Levels {
		for _, svc := range l.Services {
			if svc.State == StateDown {
				fmt.Fprintf(w, "  %s: down: %s; restarts %d\n", q(svc.Name), q(firstLine(svc.LastExit)), svc.Restarts)
			} else if svc.Error != "" {
				fmt.Fprintf(w, "  %s: %s\n", q(svc.Name), q(firstLine(svc.Error)))
			}
		}
	}
	for _, j := range s.Jobs {
		writeJob(w, j)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "note: %s\n", q(n))
	}
	return nil
}

func writeJob(w io.Writer, j JobStatus) {
	q := termtext.Line
	depth := "n/a"
	if j.QueueDepth != nil {
		depth = fmt.Sprintf("%d", *j.QueueDepth)
		if j.QueueSource != "" {
			depth += " (" + q(j.QueueSource) + ")"
		}
	}
	frozen := ""
	if j.Frozen {
		frozen = "  FROZEN"
	}
	if j.Blocked != nil {
		frozen += "  blocked"
	}
	fmt.Fprintf(w, "\njob %s  engine %s  desired %d  queue %s  %s%s\n", q(j.Name), q(j.Engine), j.Desired, depth, q(countLine(j.Counts)), frozen)
	if j.DNSError != "" {
		fmt.Fprintf(w, "  DNS RECORDS NOT KEPT: %s\n", q(j.DNSError))
	}
	if m := j.MassSilence; m != nil {
		if m.Held {
			fmt.Fprintf(w, "  MASS SILENCE: %d of %d running workers silent since %s; blamed on the broker or the controller, not replaced until %s\n",
				m.Silent, m.Running, m.Since.UTC().Format(time.TimeOnly), m.Until.UTC().Format(time.TimeOnly))
		} else {
			fmt.Fprintf(w, "  MASS SILENCE: %d of %d running workers silent since %s; the hold ended at %s, they are being replaced\n",
				m.Silent, m.Running, m.Since.UTC().Format(time.TimeOnly), m.Until.UTC().Format(time.TimeOnly))
		}
	}
	if j.QueueDepth == nil && j.QueueError != "" {
		fmt.Fprintf(w, "  queue depth unavailable: %s\n", q(j.QueueError))
	}
	if b := j.Blocked; b != nil {
		check := b.Check
		if check == "" {
			check = "check the worker's command and image, and that it can reach the broker"
		}
		switch b.Cause {
		case controller.BlockedNoHeartbeat:
			fmt.Fprintf(w, "  BLOCKED: %d workers in a row reached running and never sent a heartbeat (last: %s); launches stop but for one probe, next at %s (%d sent). To unblock now: mgmt reconfigure or mgmt repair.\n",
				b.FailedLaunches, q(b.LastCause), b.NextLaunch.Format(time.RFC3339), b.Probes)
		default:
			fmt.Fprintf(w, "  BLOCKED after %d failed launches in a row (last: %s); next launch at %s.\n",
				b.FailedLaunches, q(b.LastCause), b.NextLaunch.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "  %s\n", q(upperFirst(check)))
	}
	if r := j.Revision; r != nil {
		fmt.Fprintf(w, "  spec revision r%d %s by %s at %s\n", r.Number, q(shortDigest(r.Digest)), q(r.Who), r.Time.Format(time.RFC3339))
	}
	if j.LastDecision != nil {
		fmt.Fprintf(w, "  last decision %s: %s\n", j.LastDecision.Time.Format(time.RFC3339), q(j.LastDecision.Reason))
	}
	rows := j.Workers
	sum := j.Summary
	if sum == nil && len(rows) > MaxWorkerRows {
		// A controller asked for every worker (or one from before
		// summaries): the same summary, made here.
		s, odd := controller.SummarizeWorkers(j.Workers, MaxWorkerRows)
		sum, rows = &s, odd
	}
	if sum != nil {
		writeSummary(w, sum, len(rows))
		if len(rows) == 0 {
			return
		}
	}
	// The DNS column only for jobs with a dns table: other pools' tables
	// stay as they were.
	withDNS := slices.ContainsFunc(rows, func(wk WorkerStatus) bool { return wk.DNSName != "" })
	// The UID column likewise only where a row has one (local workers of
	// a root provisioner), so a person can match a worker to ps and files.
	withUID := slices.ContainsFunc(rows, func(wk WorkerStatus) bool { return wk.UID != 0 })
	head := "  WORKER\tSTATE\tHEALTH\tREV\tHOST"
	if withDNS {
		head += "\tDNS"
	}
	if withUID {
		head += "\tUID"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, head+"\tHEARTBEAT\tRESTARTS\tWORK\tDRAINING")
	for _, wk := range rows {
		hb := "-"
		if wk.HeartbeatAgeS != nil {
			hb = fmt.Sprintf("%.1fs ago", *wk.HeartbeatAgeS)
		}
		work := "idle"
		if wk.Busy {
			work = "busy"
		}
		rev := "-"
		if wk.Revision > 0 {
			rev = fmt.Sprintf("r%d", wk.Revision)
		}
		host := q(wk.Host)
		if withDNS {
			dns := "-"
			if wk.DNSName != "" {
				dns = q(wk.DNSName)
			}
			host += "\t" + dns
		}
		if withUID {
			uid := "-"
			if wk.UID != 0 {
				uid = strconv.FormatUint(uint64(wk.UID), 10)
			}
			host += "\t" + uid
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", q(wk.ID), q(wk.State), q(wk.Health), rev, host, hb, wk.Restarts, work, drainCell(wk))
	}
	tw.Flush()
	for _, wk := range rows {
		switch {
		case wk.Error != "":
			fmt.Fprintf(w, "  %s: %s\n", wk.ID, firstLine(redact.String(wk.Error)))
		case wk.Probe != "":
			// The probe's last output, also while it passes: what the
			// application said of itself.
			fmt.Fprintf(w, "  %s: probe %s\n", q(wk.ID), q(firstLine(redact.String(wk.Probe))))
		}
	}
}

// MaxWorkerRows is how many workers of a pool the table lists one a line.
// A bigger pool (thousands of workers) is summarized instead: counts by
// state and health, work, heartbeat ages, and a row for each worker that
// is not running and healthy, up to this many; --json keeps every worker.
const MaxWorkerRows = controller.MaxWorkerRows

// writeSummary writes a big pool's summary; shown is how many of its
// problem workers follow, a row each.
func writeSummary(w io.Writer, s *controller.WorkerSummary, shown int) {
	fmt.Fprintf(w, "  %d workers (state/health): %s\n", s.Workers, termtext.Line(countLine(s.ByStateHealth)))
	hb := "none heard"
	if s.HeartbeatMedianS != nil && s.HeartbeatOldestS != nil {
		hb = fmt.Sprintf("median %.1fs ago, oldest %.1fs ago", *s.HeartbeatMedianS, *s.HeartbeatOldestS)
	}
	fmt.Fprintf(w, "  busy %d  idle %d  draining %d  heartbeats: %s\n", s.Busy, s.Workers-s.Busy, s.Draining, hb)
	switch {
	case s.Problems == 0:
		fmt.Fprintf(w, "  every worker is running and healthy; `mgmt status --json` lists each one\n")
	case shown < s.Problems:
		fmt.Fprintf(w, "  %d workers are not running and healthy; the first %d (`mgmt status --json` lists every worker):\n", s.Problems, shown)
	default:
		fmt.Fprintf(w, "  the %d workers not running and healthy (`mgmt status --json` lists every worker):\n", s.Problems)
	}
}

// drainCell says since when a worker drains and when its drain_timeout
// ends, in UTC so that it compares with the decisions' times.
func drainCell(wk WorkerStatus) string {
	if wk.DrainingSince == nil {
		return "-"
	}
	cell := "since " + wk.DrainingSince.UTC().Format(time.RFC3339)
	if wk.DrainDeadline != nil {
		cell += " deadline " + wk.DrainDeadline.UTC().Format(time.RFC3339)
	}
	return cell
}

func countLine(c map[string]int) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, " ")
}

// builtinAttr are shown in their own columns (or are implied by the row),
// so the table leaves them out of the attribute list.
func builtinAttr(k string) bool {
	return k == "hostname" || k == "instance_id" || k == "level" || k == "run"
}

func attrLine(m map[string]string, width int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !builtinAttr(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, termtext.Line(k)+"="+termtext.Line(m[k]))
	}
	if width <= 0 {
		return strings.Join(parts, " ")
	}
	return termtext.Trim(strings.Join(parts, " "), width)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// upperFirst makes a sentence of a clause.
func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// shortDigest is a spec digest cut to what a person compares by eye.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
