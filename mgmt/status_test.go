package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"nightshift/controller"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/redact"
)

// TestTableRedactsAndEscapesEveryField: what the controller reports (the
// reason of a decision, a worker's host, a policy) and what services
// exported go through the run's redactor and reach the table escaped, one
// line per row. (Status passes through JSON, which turns an invalid UTF-8
// byte into U+FFFD, as --json always has.)
func TestTableRedactsAndEscapesEveryField(t *testing.T) {
	const secret = "per-worker-pass-42"
	depth := 3
	st := &RunStatus{
		Run: "r", State: "ready", Plan: "/p.toml",
		Levels: []LevelStatus{{Level: 1, Services: []ServiceStatus{{
			Name: "svc", State: "ready", Host: "h\x1b[2J",
			Attributes: map[string]string{"motd": "hi\x1b]0;t\a\nforged row", "note": "pw " + secret},
			Error:      "boom \u202e" + secret,
		}}}},
		Jobs: []JobStatus{{
			Name: "work", Engine: "queue", Desired: 1, QueueDepth: &depth,
			Policy:       map[string]any{"nested": map[string]any{"x": secret}},
			LastDecision: &Decision{Time: time.Unix(0, 0), Reason: "scaled up\r\x1b[1Aforged " + secret},
			Workers:      []WorkerStatus{{ID: "w1", State: "running", Health: "ok", Host: "evil\x9bhost"}},
		}},
		Notes: []string{"note \x1b[31m"},
	}
	clean, err := Redact(st, redact.NewRedactor(secret))
	if err != nil {
		t.Fatal(err)
	}
	if clean.Jobs[0].Policy["nested"].(map[string]any)["x"] != redact.Marker {
		t.Errorf("policy not redacted: %v", clean.Jobs[0].Policy)
	}
	var out bytes.Buffer
	if err := WriteTable(&out, clean); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, bad := range []string{secret, "\x1b", "\a", "\r", "\x9b", "\u202e", "\nforged row"} {
		if strings.Contains(got, bad) {
			t.Errorf("table holds %q:\n%s", bad, got)
		}
	}
	for _, want := range []string{`motd=hi\x1b]0;t\a\nforged row`, `scaled up\r\x1b[1Aforged xxxxx`, "evil\ufffdhost", `boom \u202exxxxx`, `note \x1b[31m`} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

// TestShowLogsEscapesUnlessRaw: logs are redacted either way, escaped by
// default, and printed as written with Raw.
func TestShowLogsEscapesUnlessRaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.log")
	if err := os.WriteFile(path, []byte("ok\tcol\nbad \x1b]0;t\a key=topsecret1\rforged\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	red := redact.NewRedactor("topsecret1")
	for _, raw := range []bool{false, true} {
		var out bytes.Buffer
		if err := ShowLogs(context.Background(), &out, []string{path}, LogOptions{Redactor: red, Raw: raw}); err != nil {
			t.Fatal(err)
		}
		want := "ok\tcol\nbad \\x1b]0;t\\a key=xxxxx\\rforged\n"
		if raw {
			want = "ok\tcol\nbad \x1b]0;t\a key=xxxxx\rforged\n"
		}
		if out.String() != want {
			t.Errorf("raw=%v: got %q, want %q", raw, out.String(), want)
		}
	}
}

// TestTableShowsDrain: a worker chosen for scale-in while busy shows, in
// the table and in --json, that it drains, since when and its deadline; an
// idle worker shows neither.
func TestTableShowsDrain(t *testing.T) {
	since := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	deadline := since.Add(5 * time.Minute)
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{{
		Name: "work", Engine: "queuelen", Desired: 1,
		Workers: []WorkerStatus{
			{ID: "w1", State: "running", Health: "ok", Busy: true, DrainingSince: &since, DrainDeadline: &deadline},
			{ID: "w2", State: "running", Health: "ok"},
		},
	}}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	var w1, w2 string
	for _, l := range strings.Split(out.String(), "\n") {
		switch f := strings.Fields(l); {
		case len(f) > 0 && f[0] == "w1":
			w1 = l
		case len(f) > 0 && f[0] == "w2":
			w2 = l
		}
	}
	if !strings.Contains(w1, "busy") || !strings.Contains(w1, "since 2026-12-02T16:00:00Z deadline 2026-12-02T16:05:00Z") {
		t.Errorf("draining row %q lacks busy, since and deadline:\n%s", w1, out.String())
	}
	if !strings.Contains(w2, "idle") || strings.Contains(w2, "since") {
		t.Errorf("idle row %q:\n%s", w2, out.String())
	}
	b, err := json.Marshal(st.Jobs[0].Workers)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"draining_since":"2026-12-02T16:00:00Z"`, `"drain_deadline":"2026-12-02T16:05:00Z"`, `"busy":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
}

func TestTableShowsBlockedPool(t *testing.T) {
	next := time.Date(2026, 12, 2, 16, 0, 8, 0, time.UTC)
	cause := "worker web-1 never sent a heartbeat within boot_timeout 20s\x1b[2J"
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "web", Engine: "npreserving", Desired: 2, Blocked: &controller.Blocked{FailedLaunches: 4, LastCause: cause, NextLaunch: next}},
		{Name: "fine", Engine: "npreserving", Desired: 1},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := "BLOCKED after 4 failed launches in a row (last: worker web-1 never sent a heartbeat within boot_timeout 20s\\x1b[2J); next launch at 2026-12-02T16:00:08Z"
	if !strings.Contains(got, want) || strings.Count(got, "BLOCKED") != 1 {
		t.Fatalf("table:\n%s\nwant one line with %q", got, want)
	}
}

func TestTableShowsPoolBlockedBySilentWorkers(t *testing.T) {
	next := time.Date(2026, 12, 2, 16, 0, 8, 0, time.UTC)
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "web", Engine: "npreserving", Desired: 2, Blocked: &controller.Blocked{Cause: controller.BlockedNoHeartbeat, FailedLaunches: 3,
			LastCause: "worker web-3 reached running and sent no heartbeat within boot_timeout 20s", NextLaunch: next, Probes: 1,
			Check: controller.SilentCheck(controller.DriverEC2)}},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"blocked\n",
		"BLOCKED: 3 workers in a row reached running and never sent a heartbeat (last: worker web-3",
		"next at 2026-12-02T16:00:08Z (1 sent)",
		"Check the sitter URL",
		"security group",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table:\n%s\nlacks %q", got, want)
		}
	}
	if why := NotReady(st); len(why) == 0 || !strings.Contains(strings.Join(why, "; "), "never sent a heartbeat") {
		t.Errorf("NotReady = %v, want the silent block", why)
	}
}

// TestTableSummarizesABigPool: a pool of thousands gets a summary and a
// row only for each worker that is not running and healthy, while --json
// keeps every worker; a small pool keeps a row per worker.
func TestTableSummarizesABigPool(t *testing.T) {
	pool := func(n int, sick ...int) *RunStatus {
		ws := make([]WorkerStatus, n)
		for i := range ws {
			age := float64(i%10) / 10
			ws[i] = WorkerStatus{ID: fmt.Sprintf("load-%05d", i), State: "running", Health: "ok", Host: "sim", HeartbeatAgeS: &age}
		}
		for _, i := range sick {
			ws[i].Health = "missing"
		}
		return &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{{Name: "load", Engine: "npreserving", Desired: n, Workers: ws}}}
	}
	render := func(st *RunStatus) string {
		var out bytes.Buffer
		if err := WriteTable(&out, st); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	rows := func(s string) int { return strings.Count(s, "  load-") }

	big := render(pool(10000, 17, 4242))
	if n := rows(big); n != 2 {
		t.Errorf("10,000 workers, 2 missing: %d worker rows, want the 2 missing:\n%s", n, big)
	}
	for _, want := range []string{"10000 workers (state/health): running/missing=2 running/ok=9998", "busy 0  idle 10000", "oldest 0.9s ago", "load-00017", "load-04242", "--json"} {
		if !strings.Contains(big, want) {
			t.Errorf("summary lacks %q:\n%s", want, big)
		}
	}
	if lines := strings.Count(big, "\n"); lines > 20 {
		t.Errorf("summary of 10,000 workers is %d lines", lines)
	}
	many := make([]int, 200)
	for i := range many {
		many[i] = i * 7
	}
	if n := rows(render(pool(5000, many...))); n != MaxWorkerRows {
		t.Errorf("200 sick of 5,000: %d rows, want %d", n, MaxWorkerRows)
	}
	if healthy := render(pool(MaxWorkerRows + 1)); rows(healthy) != 0 || !strings.Contains(healthy, "every worker is running and healthy") {
		t.Errorf("a healthy big pool:\n%s", healthy)
	}
	if small := render(pool(MaxWorkerRows)); rows(small) != MaxWorkerRows {
		t.Errorf("a pool of %d: %d rows, want one per worker", MaxWorkerRows, rows(small))
	}
	b, err := json.Marshal(pool(10000))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"id":"load-`); n != 10000 {
		t.Errorf("--json holds %d workers, want 10000", n)
	}
}

// TestHasPoolsByRecordedComponent: pools are found by what a run's
// services recorded, whatever type (or none) the plan gave them.
func TestHasPoolsByRecordedComponent(t *testing.T) {
	rec := func(attrs map[string]string) bootlevel.ServiceRecord {
		return bootlevel.ServiceRecord{Name: "s", Attributes: attrs}
	}
	for _, tc := range []struct {
		name string
		recs []bootlevel.ServiceRecord
		want bool
	}{
		{"no services", nil, false},
		{"a broker only", []bootlevel.ServiceRecord{rec(map[string]string{"url": "amqp://x"})}, false},
		{"a script-booted controller", []bootlevel.ServiceRecord{rec(map[string]string{"unit": "nightshift-controller", "component": "controller"})}, true},
		{"a provisioner alone", []bootlevel.ServiceRecord{rec(nil), rec(map[string]string{"component": "provisioner"})}, true},
		{"some other component", []bootlevel.ServiceRecord{rec(map[string]string{"component": "sitter"})}, false},
	} {
		if got := HasPools(tc.recs); got != tc.want {
			t.Errorf("%s: HasPools = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTableShowsProbe(t *testing.T) {
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{{
		Name: "work", Engine: "queuelen", Desired: 2,
		Workers: []WorkerStatus{
			{ID: "w1", State: "running", Health: "probe_failed", Error: "work: probe failed 3 in a row: HTTP 503: db down",
				Probe: "work: unhealthy (HTTP 503: db down)"},
			{ID: "w2", State: "running", Health: "ok", Probe: "work: healthy (HTTP 200)"},
		},
	}}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  w1: work: probe failed 3 in a row: HTTP 503: db down\n", "  w2: probe work: healthy (HTTP 200)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	b, err := json.Marshal(st.Jobs[0].Workers[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"probe":"work: healthy (HTTP 200)"`) {
		t.Errorf("JSON %s lacks the probe", b)
	}
}

// TestReplicaRoles: a live replica's role and epoch become its attributes
// and show in the table's state; a dead one's stale record shows nothing
// but down.
func TestReplicaRoles(t *testing.T) {
	st := &RunStatus{Run: "ha", State: "ready", Levels: []LevelStatus{{Level: 2, Services: []ServiceStatus{
		{Name: "controller-0", State: "ready"},
		{Name: "controller-1", State: "ready", Attributes: map[string]string{"pid": "12"}},
		{Name: "controller-2", State: "ready"},
	}}}}
	MarkProcesses(st, map[string]Process{
		"controller-0": {PID: 11, Alive: true, Role: "active", Epoch: 4},
		"controller-1": {PID: 12, Alive: true, Role: "standby"},
		"controller-2": {PID: 13, Alive: false, Role: "active", Epoch: 3},
	})
	svcs := st.Levels[0].Services
	if a := svcs[0].Attributes; a[AttrRole] != "active" || a[AttrEpoch] != "4" {
		t.Errorf("active replica: %v", a)
	}
	if a := svcs[1].Attributes; a[AttrRole] != "standby" || a[AttrEpoch] != "0" || a["pid"] != "12" {
		t.Errorf("standby replica: %v", a)
	}
	if svcs[2].State != StateDown || svcs[2].Attributes[AttrRole] != "" {
		t.Errorf("dead replica: %s %v", svcs[2].State, svcs[2].Attributes)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ready (active, epoch 4)", "ready (standby)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestTableShowsRevisions(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{{
		Name: "work", Engine: "queuelen", Desired: 2,
		Revision: &controller.RevisionStatus{Number: 2, Digest: "sha256:0123456789abcdef0123", Time: at, Who: "ns.r.mgmt"},
		Workers: []WorkerStatus{
			{ID: "w1", State: "running", Health: "ok", Revision: 1},
			{ID: "w2", State: "running", Health: "ok", Revision: 2},
			{ID: "w3", State: "running", Health: "ok"},
		},
	}}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "  spec revision r2 sha256:0123456789ab by ns.r.mgmt at 2026-12-03T08:00:00Z\n") {
		t.Errorf("table lacks the job's revision:\n%s", out.String())
	}
	rev := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 3 && strings.HasPrefix(f[0], "w") {
			rev[f[0]] = f[3]
		}
	}
	if rev["w1"] != "r1" || rev["w2"] != "r2" || rev["w3"] != "-" {
		t.Errorf("REV column %v, want w1 r1, w2 r2, w3 -:\n%s", rev, out.String())
	}
}

// TestTableShowsDNSNames: a pool with a dns table shows each worker's name
// (a worker not yet named shows -); a pool without one keeps its columns.
func TestTableShowsDNSNames(t *testing.T) {
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "web", Engine: "npreserving", Desired: 2, Workers: []WorkerStatus{
			{ID: "w1", State: "running", Health: "ok", Host: "i-1", DNSName: "web-0.r.example.internal"},
			{ID: "w2", State: "pending", Health: "unknown", Host: "i-2"},
		}},
		{Name: "batch", Engine: "npreserving", Desired: 1, Workers: []WorkerStatus{{ID: "b1", State: "running", Health: "ok", Host: "i-3"}}},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	var headers []string
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "WORKER") {
			headers = append(headers, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{"WORKER STATE HEALTH REV HOST DNS HEARTBEAT RESTARTS WORK DRAINING", "WORKER STATE HEALTH REV HOST HEARTBEAT RESTARTS WORK DRAINING"}
	if !slices.Equal(headers, want) {
		t.Fatalf("headers %q, want %q:\n%s", headers, want, out.String())
	}
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) > 5 && f[0] == "w1" && f[5] != "web-0.r.example.internal":
			t.Errorf("w1's row %q lacks its name", l)
		case len(f) > 5 && f[0] == "w2" && f[5] != "-":
			t.Errorf("w2's row %q: want - for no name", l)
		}
	}
	b, _ := json.Marshal(st.Jobs[0].Workers[0])
	if !strings.Contains(string(b), `"dns_name":"web-0.r.example.internal"`) {
		t.Errorf("JSON %s lacks the name", b)
	}
}

// A pool whose queue cannot be read says why under its line, escaped; a
// pool whose depth is known says nothing of the kind.
func TestTableSaysWhyQueueDepthIsUnavailable(t *testing.T) {
	depth := 4
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "work", Engine: "queuelen", Desired: 1, QueueError: "queue \"work\" not declared yet\x1b[2J"},
		{Name: "fine", Engine: "queuelen", Desired: 1, QueueDepth: &depth, QueueSource: "mgmt_api", QueueError: "stale"},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := `queue depth unavailable: queue "work" not declared yet\x1b[2J`
	if !strings.Contains(got, want) || strings.Count(got, "queue depth unavailable") != 1 {
		t.Fatalf("table:\n%s\nwant one line with %q", got, want)
	}
}

// The provisioner's DNS trouble is said under the pool, escaped.
func TestTableSaysDNSRecordsAreNotKept(t *testing.T) {
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "web", Engine: "npreserving", Desired: 1, DNSError: "zone not found\x1b[2J"},
		{Name: "fine", Engine: "npreserving", Desired: 1},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := `DNS RECORDS NOT KEPT: zone not found\x1b[2J`
	if !strings.Contains(got, want) || strings.Count(got, "DNS RECORDS") != 1 {
		t.Fatalf("table:\n%s\nwant one line with %q", got, want)
	}
}

// A mass silence is said under its pool, with when the hold ends.
func TestTableSaysMassSilence(t *testing.T) {
	since := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "web", Engine: "npreserving", Desired: 20, MassSilence: &controller.MassSilence{Silent: 15, Running: 20, Since: since, Until: since.Add(time.Minute), Held: true}},
		{Name: "fine", Engine: "npreserving", Desired: 1},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := "MASS SILENCE: 15 of 20 running workers silent since 18:00:00; blamed on the broker or the controller, not replaced until 18:01:00"
	if !strings.Contains(got, want) || strings.Count(got, "MASS SILENCE") != 1 {
		t.Fatalf("table:\n%s\nwant one line with %q", got, want)
	}
}

// TestTableShowsWorkerUIDs: local workers with uids of their own show them
// in a UID column (a worker without one shows -), also among the rows a
// big pool's summary keeps, and in --json; a pool without any keeps its
// columns.
func TestTableShowsWorkerUIDs(t *testing.T) {
	st := &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{
		{Name: "web", Engine: "npreserving", Desired: 2, Workers: []WorkerStatus{
			{ID: "w1", State: "running", Health: "ok", Host: "h", UID: 61184},
			{ID: "w2", State: "pending", Health: "unknown", Host: "h"},
		}},
		{Name: "batch", Engine: "npreserving", Desired: 1, Workers: []WorkerStatus{{ID: "b1", State: "running", Health: "ok", Host: "h"}}},
	}}
	var out bytes.Buffer
	if err := WriteTable(&out, st); err != nil {
		t.Fatal(err)
	}
	var headers []string
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "WORKER":
			headers = append(headers, strings.Join(f, " "))
		case len(f) > 5 && f[0] == "w1" && f[5] != "61184":
			t.Errorf("w1's row %q lacks its uid", l)
		case len(f) > 5 && f[0] == "w2" && f[5] != "-":
			t.Errorf("w2's row %q: want - for no uid", l)
		}
	}
	want := []string{"WORKER STATE HEALTH REV HOST UID HEARTBEAT RESTARTS WORK DRAINING", "WORKER STATE HEALTH REV HOST HEARTBEAT RESTARTS WORK DRAINING"}
	if !slices.Equal(headers, want) {
		t.Fatalf("headers %q, want %q:\n%s", headers, want, out.String())
	}
	b, _ := json.Marshal(st.Jobs[0].Workers)
	if !strings.Contains(string(b), `"uid":61184`) || strings.Count(string(b), `"uid"`) != 1 {
		t.Errorf("JSON %s: want uid 61184 for w1 only", b)
	}

	// A big pool stays summarized; the rows it keeps carry their uids.
	big := make([]WorkerStatus, 5*MaxWorkerRows)
	for i := range big {
		big[i] = WorkerStatus{ID: fmt.Sprintf("load-%05d", i), State: "running", Health: "ok", Host: "h", UID: uint32(61184 + i)}
	}
	big[7].Health = "missing"
	out.Reset()
	if err := WriteTable(&out, &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{{Name: "load", Engine: "npreserving", Desired: len(big), Workers: big}}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "  load-"); n != 1 || !strings.Contains(out.String(), "61191") {
		t.Errorf("a big pool with one missing worker: %d rows, want that one with its uid 61191:\n%s", n, out.String())
	}
}

// TestSummarizedPoolShowsAsTheWholeOne: the table of a pool the
// controller sent summarized (StatusBody.Summary: a summary and its first
// problem workers) is the table of the same pool sent whole, and its
// readiness verdict is the same, so the table can ask for kilobytes where
// every worker of 10,000 is megabytes.
func TestSummarizedPoolShowsAsTheWholeOne(t *testing.T) {
	since := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	pool := func(n int, sick ...int) *RunStatus {
		ws := make([]WorkerStatus, n)
		for i := range ws {
			age := float64(i%10) / 10
			ws[i] = WorkerStatus{ID: fmt.Sprintf("load-%05d", i), State: "running", Health: "ok", Host: "sim", HeartbeatAgeS: &age, Busy: i%3 == 0}
		}
		for k, i := range sick {
			switch k % 4 {
			case 0:
				ws[i].Health = "missing"
			case 1:
				ws[i].State, ws[i].Health, ws[i].HeartbeatAgeS = "launching", "booting", nil
			case 2:
				ws[i].DrainingSince = &since
			case 3:
				ws[i].Health, ws[i].Error = "process_error", "exit 3"
			}
		}
		return &RunStatus{Run: "r", State: "ready", Jobs: []JobStatus{{Name: "load", Engine: "npreserving", Desired: n, Workers: ws}}}
	}
	render := func(st *RunStatus) string {
		var out bytes.Buffer
		if err := WriteTable(&out, st); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	many := make([]int, 120)
	for i := range many {
		many[i] = i * 13
	}
	for _, tc := range []struct {
		name string
		st   func() *RunStatus
	}{
		{"healthy", func() *RunStatus { return pool(10000) }},
		{"two sick", func() *RunStatus { return pool(10000, 17, 4242) }},
		{"more sick than rows", func() *RunStatus { return pool(5000, many...) }},
		{"small", func() *RunStatus { return pool(MaxWorkerRows, 3, 7) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole, sent := tc.st(), tc.st()
			sent.Jobs[0].Summarize()
			// Through JSON, as the reply goes.
			b, err := json.Marshal(sent)
			if err != nil {
				t.Fatal(err)
			}
			var got RunStatus
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if n := len(whole.Jobs[0].Workers); n > MaxWorkerRows {
				if got.Jobs[0].Summary == nil || len(got.Jobs[0].Workers) > MaxWorkerRows {
					t.Fatalf("a pool of %d sent summarized: summary %v, %d workers", n, got.Jobs[0].Summary, len(got.Jobs[0].Workers))
				}
				if len(b) > 64<<10 {
					t.Errorf("summarized pool of %d is %d bytes", n, len(b))
				}
			}
			if w, g := render(whole), render(&got); w != g {
				t.Errorf("summarized table differs:\n--- whole\n%s\n--- summarized\n%s", w, g)
			}
			if w, g := NotReady(whole), NotReady(&got); !slices.Equal(w, g) {
				t.Errorf("not ready: whole %q, summarized %q", w, g)
			}
		})
	}
}
