package execengine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/decision"
	"nightshift/internal/process"
	"nightshift/internal/testsupport"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func snapshot() decision.Snapshot {
	d := 42
	return decision.Snapshot{Pool: "work", Now: t0, Depth: &d, Source: decision.SourceMgmtAPI, Queue: "work.q",
		Instances: []decision.Instance{
			{ID: "i-1", State: nightshift.StateRunning, Health: nightshift.HealthOK, LaunchedAt: t0.Add(-time.Hour)},
			{ID: "i-2", State: nightshift.StateRunning, Health: nightshift.HealthOK, Busy: true, LaunchedAt: t0.Add(-time.Minute)},
		}}
}

// script writes an executable sh script into a temp dir and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "engine.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// engine returns a configured engine and the buffer its log goes to.
func engine(t *testing.T, cfg map[string]any) (*Engine, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	e := New(slog.New(slog.NewTextHandler(&buf, nil)))
	if err := e.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	return e, &buf
}

func TestGoodProgram(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "stdin.json")
	prog := script(t, `cat > "$1"
echo '{"reason":"depth 42: one more","actions":[{"type":"launch","count":1},{"type":"drain","ids":["i-2"],"reason":"busy"},{"type":"launch","count":1,"spec":{"deployable":"big"}}]}'`)
	e, logs := engine(t, map[string]any{"command": []any{prog, in}, "deployable": "small", "vars": map[string]any{"q": "work.q"},
		"params": map[string]any{"per_worker": int64(10)}})
	d := decision.Run(context.Background(), e, snapshot())
	if d.Error != "" {
		t.Fatalf("error %q (log %s)", d.Error, logs)
	}
	if d.Engine != Name || d.Reason != "depth 42: one more" || len(d.Actions) != 3 {
		t.Fatalf("decision %+v", d)
	}
	if l := d.Actions[0].(decision.Launch); l.Count != 1 || l.Spec.Deployable != "small" || l.Spec.Vars["q"] != "work.q" {
		t.Errorf("launch without spec did not get the configured one: %+v", l)
	}
	if dr := d.Actions[1].(decision.Drain); dr.IDs[0] != "i-2" || dr.Reason != "busy" {
		t.Errorf("drain %+v", dr)
	}
	if l := d.Actions[2].(decision.Launch); l.Spec.Deployable != "big" || l.Spec.Vars != nil {
		t.Errorf("launch with its own spec was changed: %+v", l)
	}
	// The program saw the snapshot, the params and the protocol version.
	raw, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("stdin is not JSON: %v\n%s", err, raw)
	}
	if got["version"] != 1.0 || got["depth"] != 42.0 || got["source"] != "mgmt_api" || got["pool"] != "work" ||
		got["config"].(map[string]any)["per_worker"] != 10.0 || len(got["instances"].([]any)) != 2 {
		t.Errorf("stdin document = %s", raw)
	}
	inst := got["instances"].([]any)[1].(map[string]any)
	if inst["id"] != "i-2" || inst["busy"] != true || inst["state"] != "running" || inst["launched_at"] != "2026-11-21T11:59:00Z" {
		t.Errorf("instance on stdin = %v", inst)
	}
	if logs.Len() != 0 {
		t.Errorf("success logged: %s", logs)
	}
}

func TestFailuresGiveNoActions(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		cfg     map[string]any
		wantErr string
	}{
		{name: "bad output", body: `echo 'launch 3 please'`, wantErr: "output of"},
		{name: "empty output", body: `true`, wantErr: "decision: EOF"},
		{name: "unknown action", body: `echo '{"reason":"r","actions":[{"type":"reboot","ids":["i-1"]}]}'`, wantErr: "actions[0] (reboot): type: unknown"},
		{name: "unknown instance", body: `echo '{"reason":"r","actions":[{"type":"terminate","ids":["i-9"]}]}'`, wantErr: `ids[0]: "i-9" is not an instance in the snapshot`},
		{name: "missing reason", body: `echo '{"actions":[]}'`, wantErr: "decision: reason: required"},
		{name: "too many launches", body: `echo '{"reason":"r","actions":[{"type":"launch","count":3},{"type":"launch","count":3}]}'`,
			cfg: map[string]any{"max_launch": 5}, wantErr: "actions[1] (launch): count: 6 launches in one decision exceed max_launch 5"},
		{name: "program reports an error", body: `echo '{"reason":"r","error":"no metrics"}'`, wantErr: `the program reported "no metrics"`},
		{name: "non-zero exit", body: "echo 'amqp://user:hunter2@broker/ is down' >&2\necho '{\"reason\":\"r\"}'\nexit 3", wantErr: "exit status 3: amqp://user:xxxxx@broker/ is down"},
		{name: "killed by a signal", body: `kill -9 $$`, wantErr: "signal: killed"},
		{name: "output too large", body: `head -c 2000000 /dev/zero`, wantErr: "output larger than 1048576 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]any{"command": script(t, tc.body)}
			for k, v := range tc.cfg {
				cfg[k] = v
			}
			e, logs := engine(t, cfg)
			d := e.Decide(snapshot())
			if len(d.Actions) != 0 {
				t.Errorf("failure produced actions: %+v", d.Actions)
			}
			if !strings.Contains(d.Error, tc.wantErr) {
				t.Errorf("error %q does not contain %q", d.Error, tc.wantErr)
			}
			if !strings.HasPrefix(d.Reason, "exec engine failed, no action: ") {
				t.Errorf("reason %q", d.Reason)
			}
			if !strings.Contains(logs.String(), "exec engine failed") {
				t.Errorf("no log line: %q", logs)
			}
			if strings.Contains(logs.String()+d.Error, "hunter2") {
				t.Errorf("secret leaked: %s %s", logs, d.Error)
			}
		})
	}
}

func TestMissingProgram(t *testing.T) {
	e, _ := engine(t, map[string]any{"command": filepath.Join(t.TempDir(), "nope")})
	d := e.Decide(snapshot())
	if d.Error == "" || len(d.Actions) != 0 || !strings.Contains(d.Error, "no such file") {
		t.Fatalf("decision %+v", d)
	}
}

// TestTimeoutKillsProcessGroup checks that a hung program and the child it
// started are both killed once the timeout expires.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	prog := script(t, `sleep 300 &
echo $! > "$1"
wait`)
	e, logs := engine(t, map[string]any{"command": []string{prog, pidFile}, "timeout": "300ms"})
	start := time.Now()
	d := e.Decide(snapshot())
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Fatalf("Decide returned after %s; the timeout did not stop it", elapsed)
	}
	if !strings.Contains(d.Error, "timed out after 300ms (process group killed)") || len(d.Actions) != 0 {
		t.Fatalf("decision %+v", d)
	}
	if !strings.Contains(logs.String(), "timed out") {
		t.Errorf("log %q", logs)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("child pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// waitGone waits (bounded) until pid no longer runs: it is gone, or a zombie
// waiting for init to reap it.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	testsupport.Eventually(t, 10*time.Second, func() error {
		if st, err := process.ReadStat("", pid); err == nil && !st.Zombie() {
			return fmt.Errorf("child %d of the timed-out program is still running: %+v", pid, st)
		}
		return nil
	})
}

func TestContextCancelKills(t *testing.T) {
	e, _ := engine(t, map[string]any{"command": script(t, "exec sleep 300"), "timeout": "1m"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := decision.Run(ctx, e, snapshot())
	if !strings.Contains(d.Error, "context canceled") || len(d.Actions) != 0 {
		t.Fatalf("decision %+v", d)
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{}, "exec: command: required"},
		{map[string]any{"command": []any{}}, "exec: command: required"},
		{map[string]any{"command": []any{"x", 3}}, "exec: command[1]: want a string, got int"},
		{map[string]any{"command": "x", "timeout": "0s"}, "exec: timeout: must be positive"},
		{map[string]any{"command": "x", "max_launch": 0}, "exec: max_launch: 0 must be at least 1"},
		{map[string]any{"command": "x", "params": "a=b"}, "exec: params: want a table, got string"},
		{map[string]any{"command": "x", "params": map[string]any{"f": func() {}}}, "exec: params: not representable as JSON: json: unsupported type: func()"},
		{map[string]any{"command": "x", "shell": true}, "exec: shell: unknown key"},
	}
	for _, tc := range cases {
		e := New(nil)
		if err := e.Configure(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("Configure(%v) = %v, want %q", tc.cfg, err, tc.want)
		}
		if len(e.Config()) != 0 {
			t.Errorf("failed Configure left config %v", e.Config())
		}
	}
	e := New(nil)
	if d := e.Decide(snapshot()); d.Error != "" || len(d.Actions) != 0 || !strings.Contains(d.Reason, "not configured") {
		t.Errorf("unconfigured decide = %+v", d)
	}
	if err := e.Configure(map[string]any{"command": "/bin/true", "params": map[string]any{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconfigure(map[string]any{"timeout": "soon"}); err == nil {
		t.Fatal("bad reconfigure accepted")
	}
	c := e.Config()
	if c["timeout"] != "5s" || c["max_launch"] != DefaultMaxLaunch {
		t.Fatalf("config %v", c)
	}
	if err := e.Configure(c); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	reg := decision.NewRegistry()
	if err := reg.Register(Name, Factory(nil)); err != nil {
		t.Fatal(err)
	}
	if x, err := reg.New(Name); err != nil || x.Name() != Name {
		t.Fatalf("registry: %v %v", x, err)
	}
}

// FuzzExecOutput feeds arbitrary program output to the decoder: it must
// never panic, and whatever it accepts must re-encode to an equal decision.
func FuzzExecOutput(f *testing.F) {
	for _, seed := range []string{
		`{"reason":"hold","actions":[]}`,
		`{"reason":"r","actions":[{"type":"launch","count":2,"spec":{"deployable":"w","vars":{"a":"b"}}}]}`,
		`{"reason":"r","actions":[{"type":"terminate","ids":["i-1"]},{"type":"drain","ids":["i-2"]}]}`,
		`{"reason":"r","actions":[{"type":"terminate","ids":["nope"]}]}`,
		`{"reason":"r","target":-1}`, `{"reason":"r","actions":[{"type":"launch","count":1e9}]}`,
		`not json`, `{"reason":"r"}{}`, `[]`, `null`,
	} {
		f.Add([]byte(seed))
	}
	s := snapshot()
	cfg := Config{MaxLaunch: 10, Spec: decision.LaunchSpec{Deployable: "d"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseOutput(data, s, cfg)
		if err != nil {
			if len(d.Actions) != 0 {
				t.Fatalf("error with actions: %v", err)
			}
			return
		}
		n := 0
		for _, a := range d.Actions {
			if l, ok := a.(decision.Launch); ok {
				if l.Count < 1 {
					t.Fatalf("accepted launch count %d", l.Count)
				}
				n += l.Count
			}
		}
		if n > cfg.MaxLaunch {
			t.Fatalf("accepted %d launches over max %d", n, cfg.MaxLaunch)
		}
		raw, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := ParseOutput(raw, s, cfg)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", raw, err)
		}
		if len(again.Actions) != len(d.Actions) || again.Reason != d.Reason {
			t.Fatalf("round trip changed the decision: %s", raw)
		}
	})
}
