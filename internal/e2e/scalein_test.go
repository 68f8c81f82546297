package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"nightshift/mgmt"
)

// scaleInItems is how many 2 s items the scale-in test publishes: enough to
// keep the queue above high_water (20) while the pool grows from 1 to 6
// one worker per decision, on a slow machine too.
const scaleInItems = 150

// longItems are published at the end, one per worker of a pool held at 3,
// each taking longItemWork: long past the drain_timeout the test sets then.
const (
	longItems    = 3
	longItemWork = "8s"
)

// TestScaleInEndToEnd is issue 19's proof on the real binaries: the work
// pool of plans/local.toml, real queueworkers on the run's private broker,
// every item recorded by the worker that starts and finishes it.
//
//  1. 150 items of 2 s: the pool grows to max_instances 6.
//  2. max_instances lowered to 3 while every worker is busy: the victims are
//     drained and each finishes its item before it exits.
//  3. max_instances back to 6: it grows again, and shrinks to 1 as the queue
//     empties, idle workers first (drained too: their last heartbeat may
//     predate an item they took since).
//  4. min_instances 3, three items of 8 s (one per worker), then the pool
//     cut to 1 with drain_timeout 2s: two busy workers are drained, time
//     out, and are terminated holding their items; the decisions say so,
//     and the broker delivers those items again.
//
// The counts then show every item finished, none lost, redeliveries only
// for items whose worker was stopped past drain_timeout, and no worker
// stopped holding an item otherwise.
func TestScaleInEndToEnd(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	recFile := WorkerWritableFile(t, "work-records.jsonl")
	r := env.NewRun(t, scaleInPlan(t, recFile), "si")
	r.Launch(ctx)
	mustWait(t, r, ctx, "1 work worker running and healthy", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		w := Healthy(Job(st, "work"))
		return len(w) == 1, fmt.Sprintf("healthy workers %v", w)
	})
	drains := &drainWatch{seen: map[string]mgmt.WorkerStatus{}}
	want := map[int]int{scaleInItems: scaleInItems} // batch size -> items

	// 1. Grow to max_instances.
	publish(t, r, ctx, scaleInItems, "")
	mustWait(t, r, ctx, "work pool at max_instances 6", 4*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		drains.note(j)
		w := Running(j)
		return len(w) == 6, fmt.Sprintf("running workers %v; %s", w, lastReason(j))
	})

	// 2. Shrink while every worker is busy.
	reconfigure(t, r, ctx, "max_instances=3")
	mustWait(t, r, ctx, "work pool at 3 with a deep queue, nothing draining", 3*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		drains.note(j)
		w := Running(j)
		return len(w) == 3 && j.Counts["draining"] == 0, fmt.Sprintf("running workers %v, draining %d; %s", w, j.Counts["draining"], lastReason(j))
	})

	// 3. Grow again, then shrink to 1 as the queue empties.
	reconfigure(t, r, ctx, "max_instances=6")
	mustWait(t, r, ctx, "pool back at 1 worker, queue empty, every item finished", 6*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		drains.note(j)
		c := countItems(readRecordsOrNil(recFile), want)
		run, depth := Running(j), queueDepth(j)
		return len(run) == 1 && depth == 0 && c.finishedItems == scaleInItems,
			fmt.Sprintf("running %v, depth %d, %d/%d items finished; %s", run, depth, c.finishedItems, scaleInItems, lastReason(j))
	})

	// 4. Drain timeout: three busy workers, cut to one.
	reconfigure(t, r, ctx, "min_instances=3")
	mustWait(t, r, ctx, "3 idle workers", 3*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		w := Healthy(Job(st, "work"))
		return len(w) == 3, fmt.Sprintf("healthy workers %v", w)
	})
	want[longItems] = longItems
	publish(t, r, ctx, longItems, longItemWork)
	mustWait(t, r, ctx, "3 workers busy with the long items", 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		var busy []string
		for _, w := range j.Workers {
			if w.State == "running" && w.Busy {
				busy = append(busy, w.ID)
			}
		}
		return len(busy) == 3, fmt.Sprintf("busy workers %v", busy)
	})
	reconfigure(t, r, ctx, "min_instances=1", "max_instances=1", "drain_timeout=2s")
	mustWait(t, r, ctx, "pool at 1, queue empty, every item finished", 4*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		drains.note(j)
		c := countItems(readRecordsOrNil(recFile), want)
		run, depth := Running(j), queueDepth(j)
		return len(run) == 1 && depth == 0 && c.finishedItems == scaleInItems+longItems,
			fmt.Sprintf("running %v, depth %d, %d/%d items finished; %s", run, depth, c.finishedItems, scaleInItems+longItems, lastReason(j))
	})
	for _, e := range drains.errs {
		t.Errorf("status: %s", e)
	}

	recs, err := readRecords(recFile)
	if err != nil {
		t.Fatal(err)
	}
	c := countItems(recs, want)
	acts := scaleInActions(t, r, ctx)
	t.Logf("counts: published %d, started %d, finished %d, ack lost %d, redelivered %d, duplicates %d, interrupted %d, lost %d",
		scaleInItems+longItems, c.starts, c.finishes, c.ackFailed, c.redelivered, c.duplicates, len(c.interrupted), len(c.lost))
	t.Logf("scale-in victims: %d idle %v; %d not running yet %v; %d busy drained %v; %d terminated past drain_timeout %v; status showed %d draining",
		len(acts.idle), acts.idle, len(acts.booting), acts.booting, len(acts.drained), acts.drained, len(acts.expired), acts.expired, len(drains.seen))

	if len(c.lost) > 0 {
		t.Errorf("%d items lost (never finished): %v", len(c.lost), c.lost)
	}
	if len(c.bad) > 0 {
		t.Errorf("records that name no published item: %v", c.bad)
	}
	// An interrupted item is one a worker started and never finished: the
	// worker was stopped holding it. Only a drain_timeout may do that.
	for _, in := range c.interrupted {
		if !slices.Contains(acts.expired, in.Instance) {
			t.Errorf("worker %s (pid %d) was stopped while busy with %q (%s at %s) and no decision says drain_timeout",
				in.Instance, in.PID, in.Item, in.Event, in.Time.Format(time.RFC3339Nano))
		}
	}
	// Duplicates are at-least-once delivery: an item finished twice must
	// have been given back or interrupted first.
	for _, item := range c.unexplained {
		t.Errorf("item %s finished more than once without an interruption before", item)
	}
	// Every start after a stop is a redelivery the broker marked so.
	if c.redelivered < len(c.interrupted) {
		t.Errorf("%d items interrupted but only %d deliveries marked redelivered", len(c.interrupted), c.redelivered)
	}
	// Step 2 drained busy workers; each finished the item it held: its last
	// record is a finish. Step 4's timed out and were terminated.
	finishedDrains := 0
	for _, id := range acts.drained {
		last, ok := c.lastByInstance[id]
		switch {
		case !ok:
			t.Errorf("drained worker %s recorded nothing", id)
		case slices.Contains(acts.expired, id):
		case last.Event != "finish":
			t.Errorf("drained worker %s: last record %s %q, want finish (or a drain_timeout in the decisions)", id, last.Event, last.Item)
		default:
			finishedDrains++
		}
	}
	if finishedDrains == 0 {
		t.Errorf("no busy worker was drained to its last finish: step 2 should drain the busy workers it removes")
	}
	if len(acts.expired) < 2 {
		t.Errorf("step 4 should time out 2 drains, decisions name %v", acts.expired)
	}
	if !acts.expiredInReason {
		t.Errorf("no decision's reason says a worker went past drain_timeout")
	}
	for _, id := range acts.expired {
		if _, ok := drains.seen[id]; !ok {
			t.Errorf("worker %s timed out its drain, but status never showed it draining with a deadline", id)
		}
	}
	if len(acts.idle) == 0 {
		t.Errorf("step 3 should remove idle workers as the queue empties; decisions name none")
	}
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
}

// drainWatch notes every draining worker status shows, and whether it
// gave a deadline after the start.
type drainWatch struct {
	seen map[string]mgmt.WorkerStatus
	errs []string
}

func (d *drainWatch) note(j *mgmt.JobStatus) {
	if j == nil {
		return
	}
	for _, w := range j.Workers {
		if w.DrainingSince == nil {
			continue
		}
		if _, ok := d.seen[w.ID]; ok {
			continue
		}
		d.seen[w.ID] = w
		if w.DrainDeadline == nil || !w.DrainDeadline.After(*w.DrainingSince) {
			d.errs = append(d.errs, fmt.Sprintf("worker %s draining since %v with deadline %v", w.ID, w.DrainingSince, w.DrainDeadline))
		}
	}
}

func publish(t *testing.T, r *Run, ctx context.Context, n int, work string) {
	t.Helper()
	args := []string{"--home", r.Home, "--run", r.Name, "--count", fmt.Sprint(n)}
	if work != "" {
		args = append(args, "--work", work)
	}
	res := r.Cmd(ctx, "producer", args...)
	if res.Code != 0 {
		t.Fatalf("producer exit %d: %s", res.Code, res.Stderr)
	}
	t.Logf("publish: %s", strings.TrimSpace(res.Stdout))
}

func reconfigure(t *testing.T, r *Run, ctx context.Context, kv ...string) {
	t.Helper()
	res := r.Mgmt(ctx, append([]string{"reconfigure", r.Name, "work"}, kv...)...)
	if res.Code != 0 {
		t.Fatalf("mgmt reconfigure %v: exit %d: %s", kv, res.Code, res.Stderr)
	}
	t.Logf("reconfigure work %v", kv)
}

func queueDepth(j *mgmt.JobStatus) int {
	if j == nil || j.QueueDepth == nil {
		return -1
	}
	return *j.QueueDepth
}

// scaleInPlan writes plans/local.toml with the work pool's worker taking
// 2 s per item and recording into recFile, and returns its path. It fails
// the test when the plan no longer has the worker line it rewrites.
func scaleInPlan(t *testing.T, recFile string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Root, "plans", "local.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const worker = `queueworker", "--work", "250ms"]`
	if !strings.Contains(string(b), worker) {
		t.Fatalf("plans/local.toml no longer runs %s; update the scale-in test", worker)
	}
	plan := strings.Replace(string(b), worker, fmt.Sprintf(`queueworker", "--work", "2s", "--record", %q]`, recFile), 1)
	path := filepath.Join(t.TempDir(), "local-scalein.toml")
	if err := os.WriteFile(path, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// workRecord is one line of queueworker --record.
type workRecord struct {
	Event       string    `json:"event"`
	Item        string    `json:"item"`
	Instance    string    `json:"instance"`
	PID         int       `json:"pid"`
	Redelivered bool      `json:"redelivered"`
	Time        time.Time `json:"time"`
}

func readRecordsOrNil(path string) []workRecord {
	recs, _ := readRecords(path)
	return recs
}

func readRecords(path string) ([]workRecord, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []workRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec workRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			// A line being written as we read; the next poll reads it whole.
			continue
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// itemCounts is what the workers' records say about the items.
type itemCounts struct {
	starts, finishes, redelivered, duplicates int
	// ackFailed counts items done whose ack was lost with the connection.
	ackFailed     int
	finishedItems int
	lost          []string
	bad           []string
	// interrupted are starts with no finish, requeue or failed ack after
	// them in the same process (killed holding the item), and requeues
	// (stopped holding it, and gave it back).
	interrupted []workRecord
	// unexplained are items finished more than once with no earlier
	// interruption, give-back or failed ack.
	unexplained    []string
	lastByInstance map[string]workRecord
}

// itemKey names an item by its number and its batch's size ("7/150"): the
// producer numbers each batch from 1.
func itemKey(body string) (string, int, bool) {
	var n, of int
	if _, err := fmt.Sscanf(body, "item %d of %d", &n, &of); err != nil || n < 1 || n > of {
		return "", 0, false
	}
	return fmt.Sprintf("%d/%d", n, of), of, true
}

// countItems counts recs against the batches published (size -> items).
func countItems(recs []workRecord, batches map[int]int) itemCounts {
	c := itemCounts{lastByInstance: map[string]workRecord{}}
	finished := map[string]int{}
	retried := map[string]bool{} // the item's delivery ended without an ack at least once
	open := map[string]workRecord{}
	for _, rec := range recs {
		item, of, ok := itemKey(rec.Item)
		if !ok || batches[of] == 0 {
			c.bad = append(c.bad, rec.Item)
			continue
		}
		c.lastByInstance[rec.Instance] = rec
		key := fmt.Sprintf("%d %s", rec.PID, item)
		switch rec.Event {
		case "start":
			c.starts++
			if rec.Redelivered {
				c.redelivered++
			}
			open[key] = rec
		case "finish":
			c.finishes++
			finished[item]++
			delete(open, key)
		case "requeue":
			// Stopped while busy: it gave the item back, but the worker
			// was still interrupted.
			retried[item] = true
			delete(open, key)
			c.interrupted = append(c.interrupted, rec)
		case "ack_failed":
			c.ackFailed++
			retried[item] = true
			delete(open, key)
		}
	}
	for _, rec := range open {
		c.interrupted = append(c.interrupted, rec)
		item, _, _ := itemKey(rec.Item)
		retried[item] = true
	}
	slices.SortFunc(c.interrupted, func(a, b workRecord) int { return a.Time.Compare(b.Time) })
	for _, of := range slices.Sorted(maps.Keys(batches)) {
		for n := 1; n <= batches[of]; n++ {
			item := fmt.Sprintf("%d/%d", n, of)
			switch k := finished[item]; {
			case k == 0:
				c.lost = append(c.lost, item)
			case k > 1:
				c.duplicates += k - 1
				if !retried[item] {
					c.unexplained = append(c.unexplained, item)
				}
			}
			if finished[item] > 0 {
				c.finishedItems++
			}
		}
	}
	return c
}

// scaleInVictims are the workers the controller's decisions removed.
type scaleInVictims struct {
	// idle were idle when chosen (drained, then terminated once a
	// heartbeat after the drain said idle); booting were not running yet
	// (terminated); drained were busy (drained); expired were terminated
	// past drain_timeout.
	idle, booting, drained, expired []string
	// expiredInReason: a decision's own reason says it terminated a
	// worker past drain_timeout.
	expiredInReason bool
}

// scaleInActions reads the work pool's decisions and sorts the workers its
// scale-in actions named by why they were chosen.
func scaleInActions(t *testing.T, r *Run, ctx context.Context) scaleInVictims {
	t.Helper()
	res := r.Mgmt(ctx, "decisions", "--json", "--limit", "1000", r.Name, "work")
	if res.Code != 0 {
		t.Fatalf("mgmt decisions exit %d: %s", res.Code, res.Stderr)
	}
	var ds []struct {
		Reason  string `json:"reason"`
		Actions []struct {
			Type   string   `json:"type"`
			IDs    []string `json:"ids"`
			Reason string   `json:"reason"`
		} `json:"actions"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &ds); err != nil {
		t.Fatalf("mgmt decisions --json: %v\n%s", err, res.Stdout)
	}
	var v scaleInVictims
	for _, d := range ds {
		if strings.Contains(d.Reason, "past drain_timeout") {
			v.expiredInReason = true
		}
		for _, a := range d.Actions {
			switch {
			case strings.HasPrefix(a.Reason, "scale in") && strings.Contains(a.Reason, ": idle"):
				v.idle = append(v.idle, a.IDs...)
			case a.Type == "terminate" && strings.HasPrefix(a.Reason, "scale in"):
				v.booting = append(v.booting, a.IDs...)
			case a.Type == "drain":
				v.drained = append(v.drained, a.IDs...)
			case a.Type == "terminate" && strings.Contains(a.Reason, "drain_timeout"):
				v.expired = append(v.expired, a.IDs...)
			}
		}
	}
	return v
}

func lastReason(j *mgmt.JobStatus) string {
	if j == nil || j.LastDecision == nil {
		return "no decision yet"
	}
	return "last decision: " + j.LastDecision.Reason
}

// TestScaleInFaultsEndToEnd is issue 19's proof under faults: while the work
// pool shrinks from 6 with every worker busy, the sitter of a busy worker
// is SIGKILLed and then every connection of the run's broker is dropped
// (rabbitmqctl close_all_connections). Items held by the dead worker or by
// a worker whose connection dropped were never acked: the broker delivers
// them again, and the counts still show every item finished and none lost,
// every duplicate explained by such a redelivery.
func TestScaleInFaultsEndToEnd(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	recFile := WorkerWritableFile(t, "work-records.jsonl")
	r := env.NewRun(t, scaleInPlan(t, recFile), "sf")
	r.Launch(ctx)
	mustWait(t, r, ctx, "1 work worker running and healthy", 90*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		w := Healthy(Job(st, "work"))
		return len(w) == 1, fmt.Sprintf("healthy workers %v", w)
	})
	const items = 120
	want := map[int]int{items: items}
	publish(t, r, ctx, items, "")
	mustWait(t, r, ctx, "work pool at max_instances 6", 4*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		w := Running(j)
		return len(w) == 6, fmt.Sprintf("running workers %v; %s", w, lastReason(j))
	})

	// Shrink while busy, and kill the sitter of a busy worker the shrink
	// keeps (the oldest are kept: victims are the newest).
	reconfigure(t, r, ctx, "max_instances=3")
	st := mustWait(t, r, ctx, "a busy worker not draining", time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		for _, w := range Job(st, "work").Workers {
			if w.State == "running" && w.Busy && w.DrainingSince == nil {
				return true, "busy: " + w.ID
			}
		}
		return false, "no busy worker outside the drains"
	})
	var victim string
	for _, w := range Job(st, "work").Workers {
		if w.State == "running" && w.Busy && w.DrainingSince == nil {
			victim = w.ID
			break
		}
	}
	sitters, err := r.Sitters()
	if err != nil {
		t.Fatal(err)
	}
	pid, ok := sitters[victim]
	if !ok {
		t.Fatalf("no live sitter for busy worker %s (sitters %v)", victim, sitters)
	}
	if err := r.Kill9("sitter of busy worker "+victim, pid); err != nil {
		t.Fatal(err)
	}

	// Then drop every connection of the run's broker.
	dropConnections(t, r, ctx)

	mustWait(t, r, ctx, "queue empty and every item finished", 6*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "work")
		c := countItems(readRecordsOrNil(recFile), want)
		depth := queueDepth(j)
		return depth == 0 && c.finishedItems == items,
			fmt.Sprintf("depth %d, %d/%d items finished; %s", depth, c.finishedItems, items, lastReason(j))
	})
	recs, err := readRecords(recFile)
	if err != nil {
		t.Fatal(err)
	}
	c := countItems(recs, want)
	acts := scaleInActions(t, r, ctx)
	t.Logf("counts: published %d, started %d, finished %d, ack lost %d, redelivered %d, duplicates %d, interrupted %d, lost %d",
		items, c.starts, c.finishes, c.ackFailed, c.redelivered, c.duplicates, len(c.interrupted), len(c.lost))
	t.Logf("scale-in victims: %d idle %v; %d busy drained %v; %d past drain_timeout %v; sitter killed: %s",
		len(acts.idle), acts.idle, len(acts.drained), acts.drained, len(acts.expired), acts.expired, victim)
	if len(c.lost) > 0 {
		t.Errorf("%d items lost (never finished): %v", len(c.lost), c.lost)
	}
	if len(c.bad) > 0 {
		t.Errorf("records that name no published item: %v", c.bad)
	}
	for _, item := range c.unexplained {
		t.Errorf("item %s finished more than once without an interruption or lost ack before", item)
	}
	// Only the worker whose sitter was killed may have been stopped
	// holding an item (or one past a drain_timeout, not reached here).
	for _, in := range c.interrupted {
		if in.Instance != victim && !slices.Contains(acts.expired, in.Instance) {
			t.Errorf("worker %s (pid %d) was stopped while busy with %q (%s at %s); only %s's sitter was killed",
				in.Instance, in.PID, in.Item, in.Event, in.Time.Format(time.RFC3339Nano), victim)
		}
	}
	if res := r.Teardown(ctx); res.Code != 0 {
		t.Fatalf("teardown exit %d", res.Code)
	}
	r.AssertNoProcesses()
}

// dropConnections closes every client connection of the run's own broker
// node (never the shared one), with the node's own cookie.
func dropConnections(t *testing.T, r *Run, ctx context.Context) {
	t.Helper()
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var node, dataDir string
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if s.Name == "broker" {
				node, dataDir = s.Attributes["node"], s.Attributes["data_dir"]
			}
		}
	}
	if node == "" || dataDir == "" {
		t.Fatal("status has no broker service with node and data_dir")
	}
	cookie, err := os.ReadFile(filepath.Join(dataDir, ".erlang.cookie"))
	if err != nil {
		t.Fatalf("private node's cookie: %v", err)
	}
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "-n", node, "--erlang-cookie", strings.TrimSpace(string(cookie)),
		"close_all_connections", "scale-in fault").CombinedOutput()
	t.Logf("fault: rabbitmqctl -n %s close_all_connections: %s", node, strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("close_all_connections on %s: %v", node, err)
	}
}
