package sitter_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"nightshift/internal/testsupport"
	"nightshift/sitter"
	"nightshift/sitter/httpprobe"
)

func TestProbeObserve(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ok := func(s int) sitter.ProbeResult { return sitter.ProbeResult{OK: true, Output: "HTTP 200", At: at(s)} }
	bad := func(s int) sitter.ProbeResult { return sitter.ProbeResult{Output: "HTTP 503: down", At: at(s)} }
	pr := sitter.Probe{HTTP: "http://127.0.0.1:1/", FailureThreshold: 2}
	cases := []struct {
		name    string
		results []sitter.ProbeResult
		want    sitter.ProbeStatus
	}{
		{"no check yet", nil, sitter.ProbeStatus{State: sitter.ProbeStarting}},
		{"first pass", []sitter.ProbeResult{ok(1)}, sitter.ProbeStatus{State: sitter.ProbeHealthy, Output: "HTTP 200", At: at(1), HealthySince: at(1)}},
		{"passes keep the start of the stretch", []sitter.ProbeResult{ok(1), ok(2), ok(3)},
			sitter.ProbeStatus{State: sitter.ProbeHealthy, Output: "HTTP 200", At: at(3), HealthySince: at(1)}},
		{"one failure below the threshold starting", []sitter.ProbeResult{bad(1)},
			sitter.ProbeStatus{State: sitter.ProbeStarting, Failures: 1, Output: "HTTP 503: down", At: at(1)}},
		{"one failure below the threshold healthy", []sitter.ProbeResult{ok(1), bad(2)},
			sitter.ProbeStatus{State: sitter.ProbeHealthy, Failures: 1, Output: "HTTP 503: down", At: at(2), HealthySince: at(1)}},
		{"threshold reached", []sitter.ProbeResult{ok(1), bad(2), bad(3)},
			sitter.ProbeStatus{State: sitter.ProbeUnhealthy, Failures: 2, Output: "HTTP 503: down", At: at(3)}},
		{"never passed", []sitter.ProbeResult{bad(1), bad(2), bad(3)},
			sitter.ProbeStatus{State: sitter.ProbeUnhealthy, Failures: 3, Output: "HTTP 503: down", At: at(3)}},
		{"a pass after unhealthy starts a new stretch", []sitter.ProbeResult{bad(1), bad(2), ok(3)},
			sitter.ProbeStatus{State: sitter.ProbeHealthy, Output: "HTTP 200", At: at(3), HealthySince: at(3)}},
		{"failures are in a row", []sitter.ProbeResult{bad(1), ok(2), bad(3)},
			sitter.ProbeStatus{State: sitter.ProbeHealthy, Failures: 1, Output: "HTTP 503: down", At: at(3), HealthySince: at(2)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := sitter.ProbeStatus{State: sitter.ProbeStarting}
			for _, r := range tc.results {
				st = pr.Observe(st, r)
			}
			if st != tc.want {
				t.Errorf("status %+v, want %+v", st, tc.want)
			}
		})
	}
	long := pr.Observe(sitter.ProbeStatus{}, sitter.ProbeResult{Output: strings.Repeat("x", 1000), At: at(1)})
	if len(long.Output) != sitter.MaxProbeOutput {
		t.Errorf("output of %d bytes kept, want at most %d", len(long.Output), sitter.MaxProbeOutput)
	}
}

func TestProbeValidate(t *testing.T) {
	cases := []struct {
		name    string
		probe   sitter.Probe
		wantKey string
	}{
		{"http", sitter.Probe{HTTP: "http://127.0.0.1:${port}/healthz"}, ""},
		{"command", sitter.Probe{Command: []string{"true"}, Interval: dur(time.Second), Timeout: dur(time.Second)}, ""},
		{"neither", sitter.Probe{Interval: dur(time.Second)}, "http"},
		{"both", sitter.Probe{HTTP: "http://x/", Command: []string{"true"}}, "command"},
		{"not a URL", sitter.Probe{HTTP: "127.0.0.1:80/healthz"}, "http"},
		{"ftp", sitter.Probe{HTTP: "ftp://h/x"}, "http"},
		{"empty argv0", sitter.Probe{Command: []string{""}}, "command"},
		{"zero interval", sitter.Probe{Command: []string{"true"}, Interval: sitter.ZeroDuration}, "interval"},
		{"negative delay", sitter.Probe{Command: []string{"true"}, InitialDelay: dur(-time.Second)}, "initial_delay"},
		{"timeout over interval", sitter.Probe{Command: []string{"true"}, Interval: dur(time.Second), Timeout: dur(2 * time.Second)}, "timeout"},
		{"threshold", sitter.Probe{Command: []string{"true"}, FailureThreshold: 101}, "failure_threshold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, err := tc.probe.Validate()
			if (err != nil) != (tc.wantKey != "") || key != tc.wantKey {
				t.Errorf("Validate = %q, %v; want key %q", key, err, tc.wantKey)
			}
			task := sitter.Task{Name: "w", Command: []string{"true"}, Health: &tc.probe}
			err = task.Validate()
			if tc.wantKey != "" && (err == nil || !strings.Contains(err.Error(), "health."+tc.wantKey+":")) {
				t.Errorf("task error %v, want one naming health.%s", err, tc.wantKey)
			}
		})
	}
}

func TestParseFileProbeErrorLine(t *testing.T) {
	src := "[[task]]\nname = \"w\"\ncommand = [\"true\"]\nhealth = { http = \"http://127.0.0.1:${port}/\", timeout = \"20s\" }\n"
	_, err := sitter.ParseFile("tasks.toml", []byte(src))
	if err == nil || !strings.HasPrefix(err.Error(), "tasks.toml:4: task w: health.timeout:") {
		t.Fatalf("error %v, want tasks.toml:4: task w: health.timeout: ...", err)
	}
	f, err := sitter.ParseFile("tasks.toml", []byte(strings.Replace(src, `timeout = "20s"`, `failure_threshold = 2, initial_delay = "1s"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if h := f.Tasks[0].Health; h == nil || h.FailureThreshold != 2 || h.InitialDelay.D() != time.Second {
		t.Errorf("health %+v", h)
	}
}

// A probe judges, it does not restart: the task keeps its pid while its
// probe goes unhealthy and back, and status carries the last output.
func TestProbeHTTPReportsWithoutRestart(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(status.Load())
		w.WriteHeader(code)
		if code != http.StatusOK {
			fmt.Fprintln(w, "database unreachable")
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	h := start(t, sitter.Config{HTTPProbe: httpprobe.Checker{}}, sitter.Task{Name: "web", Command: []string{"sleep", "300"},
		Health: &sitter.Probe{HTTP: "http://" + l.Addr().String() + "/healthz", Interval: dur(50 * time.Millisecond), FailureThreshold: 2}})
	first := h.waitTask(t, "web", 10*time.Second, "probe healthy", func(ts sitter.TaskStatus) bool {
		return ts.Probe != nil && ts.Probe.State == sitter.ProbeHealthy
	})
	if first.Probe.Output != "HTTP 200" || first.Probe.HealthySince.IsZero() {
		t.Errorf("healthy probe %+v, want output HTTP 200 and a healthy_since", first.Probe)
	}
	status.Store(http.StatusServiceUnavailable)
	ts := h.waitTask(t, "web", 10*time.Second, "probe unhealthy", func(ts sitter.TaskStatus) bool {
		return ts.Probe != nil && ts.Probe.State == sitter.ProbeUnhealthy
	})
	if ts.Probe.Output != "HTTP 503: database unreachable" || ts.Probe.Failures < 2 {
		t.Errorf("unhealthy probe %+v, want the 503 and its body", ts.Probe)
	}
	if ts.PID != first.PID || ts.State != sitter.StateRunning || ts.Restarts != 0 {
		t.Errorf("task %+v after a failing probe, want pid %d still running, not restarted", ts, first.PID)
	}
	status.Store(http.StatusOK)
	h.waitTask(t, "web", 10*time.Second, "healthy again", func(ts sitter.TaskStatus) bool {
		return ts.Probe.State == sitter.ProbeHealthy && ts.PID == first.PID
	})
}

// ${port} in the URL is the port the run got as NIGHTSHIFT_PORT: the test
// serves the health endpoint on the port the task was told of.
func TestProbeHTTPPortOfTheRun(t *testing.T) {
	dir := t.TempDir()
	portFile := filepath.Join(dir, "port")
	h := start(t, sitter.Config{HTTPProbe: httpprobe.Checker{}}, sitter.Task{Name: "web",
		Shell:  `echo "$NIGHTSHIFT_PORT" > ` + portFile + `.tmp && mv ` + portFile + `.tmp ` + portFile + ` && exec sleep 300`,
		Health: &sitter.Probe{HTTP: "http://127.0.0.1:${port}/healthz", Interval: dur(50 * time.Millisecond), FailureThreshold: 1}})
	var port int
	testsupport.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(portFile)
		if err != nil {
			return err
		}
		port, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	ts := h.waitTask(t, "web", 10*time.Second, "refused while nothing listens", func(ts sitter.TaskStatus) bool {
		return ts.Probe != nil && ts.Probe.State == sitter.ProbeUnhealthy
	})
	if !strings.Contains(ts.Probe.Output, "refused") {
		t.Errorf("output %q, want connection refused", ts.Probe.Output)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	h.waitTask(t, "web", 10*time.Second, "healthy on the run's port", func(ts sitter.TaskStatus) bool {
		return ts.Probe.State == sitter.ProbeHealthy
	})
}

func TestProbeCommand(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "ready")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, sitter.Config{}, sitter.Task{Name: "w", Command: []string{"sleep", "300"},
		Health: &sitter.Probe{Command: []string{"sh", "-c", `test -e "$1" || { echo "no $1"; exit 3; }`, "probe", flag},
			Interval: dur(50 * time.Millisecond), FailureThreshold: 1}})
	first := h.waitTask(t, "w", 10*time.Second, "probe healthy", func(ts sitter.TaskStatus) bool {
		return ts.Probe != nil && ts.Probe.State == sitter.ProbeHealthy
	})
	os.Remove(flag)
	ts := h.waitTask(t, "w", 10*time.Second, "probe unhealthy", func(ts sitter.TaskStatus) bool {
		return ts.Probe.State == sitter.ProbeUnhealthy
	})
	if want := "exit 3: no " + flag; ts.Probe.Output != want {
		t.Errorf("output %q, want %q", ts.Probe.Output, want)
	}
	if ts.PID != first.PID || ts.Restarts != 0 {
		t.Errorf("task restarted by its probe: %+v", ts)
	}
}

func TestProbeFromTable(t *testing.T) {
	cases := []struct {
		name  string
		table any
		want  string // error prefix; empty: accepted
	}{
		{"http", map[string]any{"http": "http://127.0.0.1:${port}/healthz", "interval": "2s", "failure_threshold": int64(2)}, ""},
		{"command from JSON", map[string]any{"command": []any{"true"}, "failure_threshold": float64(3), "initial_delay": "5s"}, ""},
		{"not a table", "http://x/", "key health: want a table"},
		{"unknown key", map[string]any{"http": "http://x/", "period": "1s"}, "key health.period: unknown key"},
		{"bad duration", map[string]any{"http": "http://x/", "timeout": "soon"}, `key health.timeout: "soon"`},
		{"wrong type", map[string]any{"http": "http://x/", "failure_threshold": "3"}, "key health.failure_threshold: want int"},
		{"invalid", map[string]any{"http": "http://x/", "interval": "1s", "timeout": "2s"}, "key health.timeout: 2s must not exceed interval 1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sitter.ProbeFromTable("", tc.table)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("error %v, want prefix %q", err, tc.want)
			}
		})
	}
}
