package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/alert"
	"nightshift/alert/journal"
	"nightshift/internal/backoff"
	"nightshift/internal/testsupport"
)

// receiver is a local HTTP endpoint that records what it is sent and
// answers with the status codes in fail first, then 200.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	fail   []int
	hold   chan struct{} // when set, requests wait on it
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-req.Context().Done():
			return
		}
	}
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fail) > 0 {
		code := r.fail[0]
		r.fail = r.fail[1:]
		http.Error(w, "not now", code)
		return
	}
	r.bodies = append(r.bodies, b)
}

func (r *receiver) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

var fastRetry = backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}

func start(t *testing.T, d *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func deliveries(t *testing.T, path string) []Delivery {
	t.Helper()
	recs, err := journal.ReadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Delivery
	for _, r := range recs {
		if r.Delivery != nil {
			out = append(out, *r.Delivery)
		}
	}
	return out
}

var ev0 = alert.Once("r1", alert.PoolBlocked, "w", alert.Critical, "pool w is blocked: token=hunter22", map[string]any{"last_cause": "exec: no such file"},
	time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

// TestWebhookRetried: a webhook answering 503 twice gets the event on the
// third attempt, and the journal says so.
func TestWebhookRetried(t *testing.T) {
	rcv := &receiver{fail: []int{503, 503}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	jpath := filepath.Join(t.TempDir(), "alerts.jsonl")
	d := New(Options{Journal: NewJournal(jpath), Retry: fastRetry, Redact: func(s string) string { return strings.ReplaceAll(s, "hunter22", "xxxxx") }})
	d.Configure(alert.Config{Sinks: []alert.Sink{{Name: "hook", Type: alert.SinkWebhook, URL: srv.URL, Retries: 3}}})
	start(t, d)
	d.Publish(ev0)
	waitFor(t, 10*time.Second, func() bool { return len(deliveries(t, jpath)) == 1 }, "delivery journaled")
	got := rcv.got()
	if len(got) != 1 {
		t.Fatalf("receiver got %d bodies, want 1", len(got))
	}
	var ev alert.Event
	if err := json.Unmarshal(got[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Key != ev0.Key || ev.Status != alert.Firing || ev.Kind != alert.PoolBlocked || strings.Contains(ev.Summary, "hunter22") {
		t.Errorf("received %+v", ev)
	}
	if dl := deliveries(t, jpath)[0]; dl.Result != Delivered || dl.Attempts != 3 {
		t.Errorf("delivery %+v, want delivered at attempt 3", dl)
	}
	if s := d.Stats(); s.Delivered != 1 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestWebhookGivesUp: retries end; a 4xx is not retried at all.
func TestWebhookGivesUp(t *testing.T) {
	for _, tc := range []struct {
		codes    []int
		attempts int
	}{{[]int{500, 500, 500, 500}, 3}, {[]int{400, 400}, 1}} {
		rcv := &receiver{fail: tc.codes}
		srv := httptest.NewServer(rcv)
		jpath := filepath.Join(t.TempDir(), "alerts.jsonl")
		d := New(Options{Journal: NewJournal(jpath), Retry: fastRetry})
		d.Configure(alert.Config{Sinks: []alert.Sink{{Name: "hook", Type: alert.SinkWebhook, URL: srv.URL + "/secret-token", Retries: 2}}})
		start(t, d)
		d.Publish(ev0)
		waitFor(t, 10*time.Second, func() bool { return len(deliveries(t, jpath)) == 1 }, "delivery journaled")
		dl := deliveries(t, jpath)[0]
		if dl.Result != Failed || dl.Attempts != tc.attempts || strings.Contains(dl.Error, "secret-token") {
			t.Errorf("codes %v: delivery %+v, want failed after %d attempts, URL path hidden", tc.codes, dl, tc.attempts)
		}
		srv.Close()
	}
}

// TestPublishNeverBlocks: a sink that hangs fills its queue; Publish
// returns at once, drops and counts the rest, and another sink still gets
// every event.
func TestPublishNeverBlocks(t *testing.T) {
	hung := &receiver{hold: make(chan struct{})}
	hsrv := httptest.NewServer(hung)
	defer hsrv.Close()
	defer close(hung.hold)
	ok := &receiver{}
	osrv := httptest.NewServer(ok)
	defer osrv.Close()
	jpath := filepath.Join(t.TempDir(), "alerts.jsonl")
	d := New(Options{Journal: NewJournal(jpath), QueueLen: 2, Retry: fastRetry})
	d.Configure(alert.Config{RateLimit: 1000, Sinks: []alert.Sink{
		{Name: "hung", Type: alert.SinkWebhook, URL: hsrv.URL, Timeout: time.Minute},
		{Name: "ok", Type: alert.SinkWebhook, URL: osrv.URL},
	}})
	start(t, d)
	for i := range 10 {
		ev := ev0
		ev.Job = string(rune('a' + i))
		ev.Key = alert.Key("r1", alert.PoolBlocked, ev.Job)
		d.Publish(ev)
		// One at a time, so that only the hung sink's queue fills.
		waitFor(t, 10*time.Second, func() bool { return len(ok.got()) == i+1 }, "the healthy sink got the event")
	}
	// The hung sink holds one in flight and two queued: seven dropped.
	if s := d.Stats(); s.DroppedQueue != 7 {
		t.Errorf("dropped %d, want 7 (stats %+v)", s.DroppedQueue, s)
	}
	dropped := 0
	for _, dl := range deliveries(t, jpath) {
		if dl.Result == Dropped && dl.Sink == "hung" {
			dropped++
		}
	}
	if dropped != 7 {
		t.Errorf("journal has %d drops, want 7", dropped)
	}
}

// TestRateLimit: past rate_limit a minute, events are dropped and counted.
func TestRateLimit(t *testing.T) {
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	d := New(Options{Retry: fastRetry})
	d.Configure(alert.Config{RateLimit: 3, Sinks: []alert.Sink{{Name: "hook", Type: alert.SinkWebhook, URL: srv.URL}}})
	start(t, d)
	for range 5 {
		d.Publish(ev0)
	}
	waitFor(t, 10*time.Second, func() bool { s := d.Stats(); return s.Delivered+s.DroppedRate == 5 }, "all five handled")
	if s := d.Stats(); s.Delivered != 3 || s.DroppedRate != 2 || len(rcv.got()) != 3 {
		t.Errorf("stats %+v, received %d; want 3 delivered, 2 rate-limited", s, len(rcv.got()))
	}
}

// TestCommandSink: a command gets the event's JSON on stdin; one that
// fails is retried and journaled as failed.
func TestCommandSink(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "got.json")
	jpath := filepath.Join(dir, "alerts.jsonl")
	d := New(Options{Journal: NewJournal(jpath), Retry: fastRetry})
	d.Configure(alert.Config{Sinks: []alert.Sink{
		{Name: "save", Type: alert.SinkCommand, Command: []string{"/bin/sh", "-c", `cat > "$0"`, out}},
		{Name: "broken", Type: alert.SinkCommand, Command: []string{"/bin/sh", "-c", "echo no pager here >&2; exit 3"}, Retries: 1},
	}})
	start(t, d)
	d.Publish(ev0)
	waitFor(t, 10*time.Second, func() bool { return len(deliveries(t, jpath)) == 2 }, "both deliveries journaled")
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ev alert.Event
	if err := json.Unmarshal(data, &ev); err != nil || ev.Key != ev0.Key || !ev.FirstSeen.Equal(ev0.FirstSeen) {
		t.Errorf("command got %s (%v)", data, err)
	}
	for _, dl := range deliveries(t, jpath) {
		switch dl.Sink {
		case "save":
			if dl.Result != Delivered {
				t.Errorf("save: %+v", dl)
			}
		case "broken":
			if dl.Result != Failed || dl.Attempts != 2 || !strings.Contains(dl.Error, "no pager here") {
				t.Errorf("broken: %+v", dl)
			}
		}
	}
}

func TestBodies(t *testing.T) {
	res := ev0
	res.Status, res.LastSeen = alert.Resolved, ev0.FirstSeen.Add(time.Minute)
	cases := []struct {
		format string
		ev     alert.Event
		want   []string
	}{
		{alert.FormatGeneric, ev0, []string{`"dedupe_key":"nightshift/r1/pool_blocked/w"`, `"status":"firing"`, `"first_seen":"2026-01-02T03:04:05Z"`, `"version":1`}},
		{alert.FormatSlack, ev0, []string{`"text":":rotating_light: [FIRING] critical pool_blocked r1/w: pool w is blocked`}},
		{alert.FormatSlack, res, []string{`[RESOLVED]`}},
		{alert.FormatAlertmanager, ev0, []string{`"alertname":"pool_blocked"`, `"job":"w"`, `"startsAt":"2026-01-02T03:04:05Z"`, `"last_cause":"exec: no such file"`}},
		{alert.FormatAlertmanager, res, []string{`"endsAt":"2026-01-02T03:05:05Z"`}},
	}
	for _, tc := range cases {
		b, err := Body(tc.format, tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s body %s: missing %s", tc.format, b, w)
			}
		}
		if tc.format == alert.FormatAlertmanager && strings.Contains(string(b), `"endsAt"`) != (tc.ev.Status == alert.Resolved) {
			t.Errorf("alertmanager body %s: endsAt only when resolved", b)
		}
	}
}

// TestWatcherReconfigureSurvives: a reconfiguration is kept across a
// restart while the plan's table is the same, and dropped when it changed.
func TestWatcherReconfigureSurvives(t *testing.T) {
	state := filepath.Join(t.TempDir(), "alerts-state.json")
	file := alert.Config{PoolBelowPolicyFor: time.Minute}
	src := func(time.Time) alert.Input { return alert.Input{} }
	w, err := NewWatcher("r1", file, state, nil, New(Options{}), src)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Reconfigure(map[string]any{"pool_below_policy_for": "2m"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Reconfigure(map[string]any{"pool_below_policy_for": "never"}); err == nil {
		t.Fatal("a bad value was accepted")
	}
	w2, err := NewWatcher("r1", file, state, nil, New(Options{}), src)
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.Config().PoolBelowPolicyFor; got != 2*time.Minute {
		t.Errorf("after restart: %s, want the reconfigured 2m", got)
	}
	w3, err := NewWatcher("r1", alert.Config{PoolBelowPolicyFor: 3 * time.Minute}, state, nil, New(Options{}), src)
	if err != nil {
		t.Fatal(err)
	}
	if got := w3.Config().PoolBelowPolicyFor; got != 3*time.Minute {
		t.Errorf("after a plan change: %s, want the plan's 3m", got)
	}
}

// TestFiring folds a journal into what still fires.
func TestFiring(t *testing.T) {
	jpath := filepath.Join(t.TempDir(), "alerts.jsonl")
	j := NewJournal(jpath)
	a := ev0
	b := alert.Once("r1", alert.PoolBlocked, "v", alert.Critical, "v blocked", nil, ev0.FirstSeen)
	bRes := b
	bRes.Status = alert.Resolved
	td := alert.Once("r1", alert.TeardownLeftovers, "", alert.Critical, "left", nil, ev0.FirstSeen)
	if err := j.Append(Record{Event: &a}, Record{Event: &b}, Record{Delivery: &Delivery{Sink: "x"}}, Record{Event: &bRes}, Record{Event: &td}); err != nil {
		t.Fatal(err)
	}
	// A torn last line is skipped.
	f, _ := os.OpenFile(jpath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-`)
	f.Close()
	recs, err := journal.ReadJournal(jpath)
	if err != nil || len(recs) != 5 {
		t.Fatalf("read %d records (%v), want 5", len(recs), err)
	}
	got := journal.Firing(recs)
	if len(got) != 1 || got[0].Key != a.Key {
		t.Errorf("firing = %+v, want only %s", got, a.Key)
	}
	if st, _ := os.Stat(jpath); st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", st.Mode().Perm())
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	testsupport.Eventually(t, timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("still waiting: %s", what)
	})
}
