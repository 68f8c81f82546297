package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/alert"
	"nightshift/mgmt"
)

// hookReceiver is the test's own webhook endpoint: it records every event
// it is sent; with fail set it answers each after hold with a 500.
type hookReceiver struct {
	mu     sync.Mutex
	events []alert.Event
	fail   bool
	hold   time.Duration
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var ev alert.Event
	if err := json.Unmarshal(b, &ev); err == nil {
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}
	if h.fail {
		select {
		case <-time.After(h.hold):
		case <-r.Context().Done():
		}
		http.Error(w, "receiver down", http.StatusInternalServerError)
	}
}

// count counts the received events of kind for job with status.
func (h *hookReceiver) count(kind alert.Kind, job string, status alert.Status) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.events {
		if ev.Kind == kind && ev.Job == job && ev.Status == status {
			n++
		}
	}
	return n
}

// TestEndToEndAlertPoolBlocked runs plans/local.toml with an [alerts] table
// naming two webhooks started by the test, one healthy and one that times
// out and fails every attempt. The sleeper pool's worker binary is removed
// and its workers killed: the pool blocks, mgmt status shows it BLOCKED,
// and the healthy webhook gets pool_blocked exactly once, however many
// launches fail; the failing webhook gets the same event again and again
// (retried) while the controller goes on healing. When the binary is back,
// the pool recovers, the alert resolves once, and mgmt alerts lists it as
// resolved.
func TestEndToEndAlertPoolBlocked(t *testing.T) {
	requireRuns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	good := &hookReceiver{}
	gsrv := httptest.NewServer(good)
	defer gsrv.Close()
	bad := &hookReceiver{fail: true, hold: 2 * time.Second}
	bsrv := httptest.NewServer(bad)
	defer bsrv.Close()

	binary := filepath.Join(env.PlanDir, "alerts-sleeper")
	copyFile(t, filepath.Join(env.BinDir, "sleeper"), binary)
	b, err := os.ReadFile(filepath.Join(env.Root, "plans", "local.toml"))
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Replace(string(b), `"${global.plan_dir}/../bin/sleeper"`, `"${global.plan_dir}/alerts-sleeper"`, 1)
	if plan == string(b) {
		t.Fatal("plans/local.toml no longer runs ${global.plan_dir}/../bin/sleeper; update this test")
	}
	plan += fmt.Sprintf(`
[alerts]
[alerts.sink.good]
type = "webhook"
url = %q
[alerts.sink.down]
type = "webhook"
url = %q
timeout = "1s"
retries = 2
`, gsrv.URL+"/hook", bsrv.URL+"/hook")
	path := filepath.Join(env.PlanDir, "local-alerts.toml")
	if err := os.WriteFile(path, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	r := env.NewRun(t, path, "al")
	r.Launch(ctx)
	mustWait(t, r, ctx, "pools at policy after launch", 90*time.Second, atPolicy)

	// The cause: the binary goes, and the workers running it with it.
	if err := os.Remove(binary); err != nil {
		t.Fatal(err)
	}
	cause := time.Now()
	sitters, err := r.Sitters()
	if err != nil {
		t.Fatal(err)
	}
	for id, pid := range SitterPIDsOf(sitters, "sleeper") {
		if err := r.Kill9("sitter "+id, pid); err != nil {
			t.Fatal(err)
		}
	}
	st := mustWait(t, r, ctx, "mgmt status shows sleeper blocked", 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "sleeper")
		return j != nil && j.Blocked != nil, fmt.Sprintf("sleeper %+v", j)
	})
	t.Logf("mgmt status showed sleeper blocked %s after the cause: %s", time.Since(cause).Round(time.Second), Job(st, "sleeper").Blocked.LastCause)
	waitUntil(t, "the webhook got pool_blocked", cause, 2*time.Minute, func() (bool, string) {
		n := good.count(alert.PoolBlocked, "sleeper", alert.Firing)
		return n >= 1, fmt.Sprintf("%d firing events", n)
	})
	t.Logf("the webhook got pool_blocked %s after the cause", time.Since(cause).Round(time.Second))
	// Launches keep failing while the failing webhook is retried: every
	// attempt of it times out, and the decisions go on meanwhile.
	waitUntil(t, "the failing webhook retried", time.Now(), 2*time.Minute, func() (bool, string) {
		n := bad.count(alert.PoolBlocked, "sleeper", alert.Firing)
		return n >= 3, fmt.Sprintf("%d attempts", n)
	})

	// The binary is back: the pool recovers and the alert resolves.
	copyFile(t, filepath.Join(env.BinDir, "sleeper"), binary)
	fixed := time.Now()
	waitUntil(t, "pool_blocked resolved at the webhook", fixed, 3*time.Minute, func() (bool, string) {
		n := good.count(alert.PoolBlocked, "sleeper", alert.Resolved)
		return n >= 1, fmt.Sprintf("%d resolved events", n)
	})
	t.Logf("resolved %s after the binary came back", time.Since(fixed).Round(time.Second))
	mustWait(t, r, ctx, "sleeper back at policy, not blocked", 2*time.Minute, func(st *mgmt.RunStatus) (bool, string) {
		j := Job(st, "sleeper")
		return j != nil && j.Blocked == nil && len(Healthy(j)) == 3, fmt.Sprintf("sleeper %+v", j)
	})
	if n := good.count(alert.PoolBlocked, "sleeper", alert.Firing); n != 1 {
		t.Errorf("the webhook got pool_blocked %d times, want exactly once", n)
	}
	if n := good.count(alert.PoolBlocked, "sleeper", alert.Resolved); n != 1 {
		t.Errorf("the webhook got its resolution %d times, want exactly once", n)
	}

	res := r.Mgmt(ctx, "alerts", "--json", r.Name)
	if res.Code != 0 {
		t.Fatalf("mgmt alerts exit %d: %s", res.Code, res.Stderr)
	}
	var l mgmt.AlertList
	if err := json.Unmarshal([]byte(res.Stdout), &l); err != nil {
		t.Fatalf("mgmt alerts --json: %v\n%s", err, res.Stdout)
	}
	for _, v := range l.Firing {
		if v.Kind == alert.PoolBlocked {
			t.Errorf("mgmt alerts still lists pool_blocked as firing: %+v", v)
		}
	}
	found := false
	for _, v := range l.Recent {
		if v.Kind == alert.PoolBlocked && v.Job == "sleeper" && v.Status == alert.Resolved {
			found = true
			if v.Deliveries["delivered"] < 1 {
				t.Errorf("resolution's deliveries %v, want one delivered", v.Deliveries)
			}
		}
	}
	if !found || l.Deliveries["failed"] < 1 {
		t.Errorf("mgmt alerts: %+v, want pool_blocked resolved and the failing sink's failures counted", l)
	}
	if res := r.Mgmt(ctx, "alerts", r.Name); res.Code != 0 || !strings.Contains(res.Stdout, "pool_blocked") {
		t.Errorf("mgmt alerts exit %d:\n%s", res.Code, res.Stdout)
	}

	// The run's history tells the same story: mgmt events has the alert
	// firing once, then resolved, for the sleeper pool.
	res = r.Mgmt(ctx, "events", "--type", "alert", "--job", "sleeper", "--json", r.Name)
	if res.Code != 0 {
		t.Fatalf("mgmt events exit %d: %s", res.Code, res.Stderr)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		var e mgmt.StreamEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("mgmt events --json line %q: %v", line, err)
		}
		if strings.Contains(e.Message, string(alert.PoolBlocked)) {
			types = append(types, e.Type)
		}
	}
	if !slices.Equal(types, []string{"alert.firing", "alert.resolved"}) {
		t.Errorf("mgmt events shows pool_blocked as %v, want firing then resolved:\n%s", types, res.Stdout)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}
