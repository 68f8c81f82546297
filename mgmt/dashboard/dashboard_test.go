package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/testsupport"
	"nightshift/mgmt"
)

// runSource is a run held in memory: what a Source would have read from
// the store and the controller.
type runSource struct {
	mu        sync.Mutex
	status    *mgmt.RunStatus
	decisions map[string][]controller.DecisionRecord
	err       error
}

func (r *runSource) Status(context.Context) (*mgmt.RunStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	b, _ := json.Marshal(r.status)
	var out mgmt.RunStatus
	return &out, json.Unmarshal(b, &out)
}

func (r *runSource) Decisions(_ context.Context, job string, limit int) ([]controller.DecisionRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ds := r.decisions[job]
	if len(ds) > limit {
		ds = ds[:limit]
	}
	return ds, nil
}

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 12, 2, 19, 0, 0, 0, time.UTC)

func sampleRun() *runSource {
	return &runSource{
		status: &mgmt.RunStatus{
			Run: "local", State: "ready",
			Levels: []mgmt.LevelStatus{{Level: 1, Services: []mgmt.ServiceStatus{{Name: "broker", State: "ready"}}}},
			Jobs: []mgmt.JobStatus{{
				Name: "work", Engine: "queuelen", Desired: 3, QueueDepth: ptr(40),
				Workers: []mgmt.WorkerStatus{
					{ID: "work-1", State: "running", Health: "ok", HeartbeatAgeS: ptr(0.4)},
					{ID: "work-2", State: "running", Health: "missing"},
					{ID: "work-3", State: "requested", Health: "booting"},
				},
			}},
		},
		decisions: map[string][]controller.DecisionRecord{"work": {
			{Seq: 2, Time: t0.Add(-time.Second), Job: "work", Reason: "queue depth 40 above high water 20", Actions: json.RawMessage(`[{"type":"launch","count":2}]`)},
			{Seq: 1, Time: t0.Add(-time.Minute), Job: "work", Reason: "below min_instances 1"},
		}},
	}
}

func TestHistory(t *testing.T) {
	job := func(desired int, depth *int, states ...string) mgmt.JobStatus {
		j := mgmt.JobStatus{Name: "p", Desired: desired, QueueDepth: depth}
		for i, s := range states {
			state, health, _ := strings.Cut(s, "/")
			j.Workers = append(j.Workers, mgmt.WorkerStatus{ID: "p-" + strconv.Itoa(i), State: state, Health: health})
		}
		return j
	}
	cases := []struct {
		name  string
		keep  int
		adds  []time.Duration // offsets from t0, one sample each
		jobs  []mgmt.JobStatus
		wantT []float64
		check func(t *testing.T, s Series)
	}{
		{
			name: "counts running and healthy workers", keep: 10,
			adds: []time.Duration{0},
			jobs: []mgmt.JobStatus{job(3, ptr(7), "running/ok", "running/missing", "requested/booting", "terminated/ok")},
			check: func(t *testing.T, s Series) {
				if s.Desired[0] != 3 || s.Running[0] != 2 || s.Healthy[0] != 1 || *s.Queue[0] != 7 {
					t.Errorf("sample = desired %d running %d healthy %d queue %d; want 3 2 1 7", s.Desired[0], s.Running[0], s.Healthy[0], *s.Queue[0])
				}
			},
		},
		{
			name: "unknown queue depth is a gap", keep: 10,
			adds: []time.Duration{0},
			jobs: []mgmt.JobStatus{job(1, nil)},
			check: func(t *testing.T, s Series) {
				if s.Queue[0] != nil {
					t.Errorf("queue = %d, want a gap", *s.Queue[0])
				}
			},
		},
		{
			name: "bounded: the oldest samples go", keep: 3,
			adds:  []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second},
			jobs:  []mgmt.JobStatus{job(1, nil)},
			wantT: []float64{float64(t0.Unix() + 2), float64(t0.Unix() + 3), float64(t0.Unix() + 4)},
		},
		{
			name: "a sample not after the last is dropped", keep: 10,
			adds:  []time.Duration{time.Second, time.Second, 0, 2 * time.Second},
			jobs:  []mgmt.JobStatus{job(1, nil)},
			wantT: []float64{float64(t0.Unix() + 1), float64(t0.Unix() + 2)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewHistory(c.keep)
			for _, d := range c.adds {
				h.Add(t0.Add(d), c.jobs)
			}
			s := h.Series("p")
			if c.wantT != nil && !equalFloats(s.T, c.wantT) {
				t.Errorf("times = %v, want %v", s.T, c.wantT)
			}
			if n := s.Len(); len(s.Desired) != n || len(s.Running) != n || len(s.Healthy) != n || len(s.Queue) != n {
				t.Errorf("columns differ in length: %+v", s)
			}
			if c.check != nil {
				c.check(t, s)
			}
			if got := h.Series("other").Len(); got != 0 {
				t.Errorf("unknown pool has %d samples", got)
			}
		})
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func listen(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	return s
}

func get(h http.Handler, method, host, path, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://"+host+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestTokenOffLoopback binds every interface: data then needs the bearer
// token, generated when none is given; the static page does not.
func TestTokenOffLoopback(t *testing.T) {
	for _, given := range []string{"", "operator-chosen-token"} {
		t.Run("given="+strconv.FormatBool(given != ""), func(t *testing.T) {
			s := listen(t, Options{Addr: "0.0.0.0:0", Token: given, Source: sampleRun(), Now: func() time.Time { return t0 }})
			if s.Loopback() {
				t.Fatal("0.0.0.0 reported as loopback")
			}
			tok := s.Token()
			if given != "" && tok != given {
				t.Fatalf("token = %q, want the given %q", tok, given)
			}
			if len(tok) < 20 {
				t.Fatalf("token %q is too short to be a secret", tok)
			}
			if !strings.HasSuffix(s.URL(), "/#token="+tok) {
				t.Errorf("URL %q does not carry the token in its fragment", s.URL())
			}
			s.refresh(context.Background(), nil, map[string][]DecisionView{})
			h := s.Handler()
			host := "192.0.2.7:8080" // any name: off loopback the token is the guard
			cases := []struct {
				auth string
				want int
			}{
				{"", http.StatusUnauthorized},
				{"Bearer wrong", http.StatusUnauthorized},
				{"Bearer " + tok + "x", http.StatusUnauthorized},
				{"Basic " + tok, http.StatusUnauthorized},
				{tok, http.StatusUnauthorized},
				{"Bearer " + tok, http.StatusOK},
			}
			for _, c := range cases {
				rec := get(h, "GET", host, "/api/state", c.auth)
				if rec.Code != c.want {
					t.Errorf("Authorization %q: status %d, want %d", c.auth, rec.Code, c.want)
				}
				if rec.Code == http.StatusOK && !strings.Contains(rec.Body.String(), `"work-1"`) {
					t.Errorf("authorized state lacks the pool's worker: %s", rec.Body)
				}
				if rec.Code == http.StatusUnauthorized && strings.Contains(rec.Body.String(), "work-1") {
					t.Errorf("refused request still got data: %s", rec.Body)
				}
			}
			if rec := get(h, "GET", host, "/", ""); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "work-1") {
				t.Errorf("page without token: status %d, body has data: %v", rec.Code, strings.Contains(rec.Body.String(), "work-1"))
			}
		})
	}
}

// TestLoopback needs no token but answers only to loopback host names, so
// a page elsewhere that rebinds its own name to 127.0.0.1 reads nothing.
func TestLoopback(t *testing.T) {
	s := listen(t, Options{Source: sampleRun(), Now: func() time.Time { return t0 }})
	if !s.Loopback() || s.Token() != "" {
		t.Fatalf("default bind: loopback %v token %q; want loopback and no token", s.Loopback(), s.Token())
	}
	if strings.Contains(s.URL(), "#") || !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("URL = %q", s.URL())
	}
	s.refresh(context.Background(), nil, map[string][]DecisionView{})
	h := s.Handler()
	cases := []struct {
		method, host, path string
		want               int
	}{
		{"GET", "127.0.0.1:1234", "/api/state", http.StatusOK},
		{"GET", "localhost:1234", "/api/state", http.StatusOK},
		{"GET", "[::1]:1234", "/api/state", http.StatusOK},
		{"GET", "evil.example:1234", "/api/state", http.StatusForbidden},
		{"GET", "evil.example:1234", "/", http.StatusForbidden},
		{"POST", "127.0.0.1:1234", "/api/state", http.StatusMethodNotAllowed},
		{"DELETE", "127.0.0.1:1234", "/", http.StatusMethodNotAllowed},
		{"HEAD", "127.0.0.1:1234", "/", http.StatusOK},
		{"GET", "127.0.0.1:1234", "/nosuch", http.StatusNotFound},
		{"GET", "127.0.0.1:1234", "/vendor/uPlot.iife.min.js", http.StatusOK},
		{"GET", "127.0.0.1:1234", "/vendor/uPlot.min.css", http.StatusOK},
		{"GET", "127.0.0.1:1234", "/app.js", http.StatusOK},
	}
	for _, c := range cases {
		if rec := get(h, c.method, c.host, c.path, ""); rec.Code != c.want {
			t.Errorf("%s %s%s: status %d, want %d", c.method, c.host, c.path, rec.Code, c.want)
		}
	}
	rec := get(h, "GET", "127.0.0.1:1", "/", "")
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("page CSP = %q", csp)
	}
}

// TestNothingFromElsewhere: the page loads only its own embedded files.
func TestNothingFromElsewhere(t *testing.T) {
	for _, name := range []string{"web/index.html", "web/app.js", "web/app.css"} {
		b, err := webFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s refers to %q: the page must load only embedded files", name, bad)
			}
		}
	}
	js, err := webFS.ReadFile("web/vendor/uPlot.iife.min.js")
	if err != nil || !strings.Contains(string(js), "uPlot") {
		t.Fatalf("vendored uPlot missing: %v", err)
	}
}

// TestSnapshot checks what the page is given: the status, each pool's
// plot and its decisions on the plot's time axis; a failed read keeps the
// last status and says why.
func TestSnapshot(t *testing.T) {
	src := sampleRun()
	now := t0
	s := listen(t, Options{Source: src, Now: func() time.Time { return now }})
	decisions := map[string][]DecisionView{}
	last := s.refresh(context.Background(), nil, decisions)
	now = now.Add(time.Second)
	src.mu.Lock()
	src.status.Jobs[0].Desired = 4
	src.mu.Unlock()
	last = s.refresh(context.Background(), last, decisions)
	snap := state(t, s)
	if snap.Status == nil || snap.Status.Run != "local" || snap.Error != "" {
		t.Fatalf("snapshot status %+v error %q", snap.Status, snap.Error)
	}
	if len(snap.Pools) != 1 || snap.Pools[0].Job != "work" {
		t.Fatalf("pools = %+v", snap.Pools)
	}
	p := snap.Pools[0]
	if p.Series.Len() != 2 || p.Series.Desired[0] != 3 || p.Series.Desired[1] != 4 || p.Series.Running[1] != 2 || *p.Series.Queue[1] != 40 {
		t.Errorf("series = %+v", p.Series)
	}
	if len(p.Decisions) != 2 || p.Decisions[0].Reason != "queue depth 40 above high water 20" ||
		p.Decisions[0].T != float64(t0.Unix()-1) || len(p.Decisions[0].Actions) != 1 || p.Decisions[0].Actions[0].Count != 2 {
		t.Errorf("decisions = %+v", p.Decisions)
	}

	src.mu.Lock()
	src.err = errors.New("run database locked")
	src.mu.Unlock()
	now = now.Add(time.Second)
	s.refresh(context.Background(), last, decisions)
	snap = state(t, s)
	if snap.Error != "run database locked" || snap.Status == nil || len(snap.Pools) != 1 || len(snap.Pools[0].Decisions) != 2 {
		t.Errorf("after a failed read: error %q, status kept %v, pools %+v", snap.Error, snap.Status != nil, snap.Pools)
	}
	if snap.Pools[0].Series.Len() != 2 {
		t.Errorf("a failed read added a sample: %d", snap.Pools[0].Series.Len())
	}
}

func state(t *testing.T, s *Server) Snapshot {
	t.Helper()
	rec := get(s.Handler(), "GET", "127.0.0.1:1", "/api/state", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("state: %d %s", rec.Code, rec.Body)
	}
	var snap Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &snap); err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestServe runs the server for real: it polls, serves over TCP, and
// stops when its context ends.
func TestServe(t *testing.T) {
	s := listen(t, Options{Source: sampleRun(), Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	url := "http://" + s.Addr().String() + "/api/state"
	testsupport.Eventually(t, 5*time.Second, func() error {
		res, err := http.Get(url)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var snap Snapshot
		if err := json.Unmarshal(b, &snap); err != nil {
			return err
		}
		if len(snap.Pools) != 1 || snap.Pools[0].Series.Len() < 2 {
			return errors.New("fewer than two samples yet")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Error("still listening after Serve returned")
	}
}

// storedRun is a run whose controller keeps each pool's history.
type storedRun struct {
	*runSource
	points []Point
	since  time.Time
	err    error
}

func (r *storedRun) History(_ context.Context, job string, since time.Time) ([]Point, error) {
	r.since = since
	return r.points, r.err
}

// TestStoredHistory: a source with stored history is plotted from it,
// reaching back before the dashboard started; without it (an error, or
// nothing stored yet) the dashboard's own samples are.
func TestStoredHistory(t *testing.T) {
	stored := []Point{
		{Time: t0.Add(-30 * time.Minute), Desired: 1, Running: 1, Healthy: 1, Queue: ptr(0)},
		{Time: t0.Add(-29 * time.Minute), Desired: 6, Running: 2, Healthy: 2, Queue: ptr(200)},
		{Time: t0.Add(-28 * time.Minute), Desired: 6, Running: 6, Healthy: 6, Queue: ptr(90)},
	}
	cases := []struct {
		name  string
		pts   []Point
		err   error
		wantT []float64
	}{
		{"stored", stored, nil, []float64{float64(t0.Unix() - 1800), float64(t0.Unix() - 1740), float64(t0.Unix() - 1680)}},
		{"store unreadable", stored, errors.New("no history"), []float64{float64(t0.Unix())}},
		{"nothing stored yet", nil, nil, []float64{float64(t0.Unix())}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := &storedRun{runSource: sampleRun(), points: c.pts, err: c.err}
			s := listen(t, Options{Source: src, Window: 45 * time.Minute, Now: func() time.Time { return t0 }})
			s.refresh(context.Background(), nil, map[string][]DecisionView{})
			if !src.since.Equal(t0.Add(-45 * time.Minute)) {
				t.Errorf("history read since %v, want the window's start %v", src.since, t0.Add(-45*time.Minute))
			}
			got := state(t, s).Pools[0].Series
			if !equalFloats(got.T, c.wantT) {
				t.Errorf("plot times = %v, want %v", got.T, c.wantT)
			}
			if c.err == nil && c.pts != nil && (got.Desired[1] != 6 || *got.Queue[1] != 200) {
				t.Errorf("plot = %+v, want the stored samples", got)
			}
		})
	}
}

func TestListenRefusesBadInput(t *testing.T) {
	if _, err := Listen(Options{}); err == nil {
		t.Error("Listen without a source succeeded")
	}
	if _, err := Listen(Options{Source: sampleRun(), Addr: "no-such-host.invalid:0"}); err == nil {
		t.Error("Listen on an unresolvable host succeeded")
	}
}
