package sitterbus_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

func TestLoadSpec(t *testing.T) {
	tasks, err := sitterbus.LoadSpec("testdata/spec_ok.json", "crunch")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want the worker's alone", len(tasks))
	}
	task := tasks[0]
	if task.Name != "crunch" || task.Shell != "exec sleep 300" || task.CPU != 0.5 || task.Mem != 128 ||
		task.TimeLimit.D() != time.Hour || task.Restart != sitter.RestartAlways || task.StopGrace.D() != 2*time.Second ||
		task.Env["QUEUE"] != "jobs" {
		t.Errorf("task = %+v", task)
	}
}

// TestLinkedTasks: a worker's linked tasks come after its own, named by
// their keys, each following the worker's task; their keys are checked as
// strictly as the worker's, and reported under worker.linked.NAME.
func TestLinkedTasks(t *testing.T) {
	src := `{"driver":"local","worker":{"command":["/bin/worker"],"env":{"VERSION":"2"},
		"linked":{"sidecar":{"command":["/bin/sidecar"],"env":{"VERSION":"2"}},"agent":{"shell":"exec sleep 300"}}}}`
	tasks, err := sitterbus.ParseSpec("spec.json", []byte(src), "work")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range tasks {
		got = append(got, tk.Name+"<"+tk.Follows)
	}
	if strings.Join(got, " ") != "work< agent<work sidecar<work" {
		t.Errorf("tasks %q, want the worker's first, then its linked ones following it", got)
	}
	if tasks[2].Env["VERSION"] != "2" || tasks[2].Command[0] != "/bin/sidecar" {
		t.Errorf("sidecar %+v", tasks[2])
	}
	for _, c := range []struct{ src, want string }{
		{`{"worker":{"shell":"x","linked":{"side":{"shell":"y","cpus":1}}}}`, "unknown key"},
		{`{"worker":{"shell":"x","linked":{"side":{"cpu":1}}}}`, "key worker.linked.side.command"},
		{`{"worker":{"shell":"x","linked":{"side":{"shell":"y","name":"other"}}}}`, "key worker.linked.side.name"},
		{`{"worker":{"shell":"x","linked":{"side":{"shell":"y","follows":"elsewhere"}}}}`, "key worker.linked.side.follows"},
		{`{"worker":{"shell":"x","linked":{"job":{"shell":"y"}}}}`, "key worker.linked.job.name"},
		{`{"worker":{"shell":"x","follows":"a"}}`, "key worker.follows"},
		{`{"worker":{"shell":"x","linked":{"side":{"shell":"y","linked":{}}}}}`, "unknown key"},
	} {
		if _, err := sitterbus.ParseSpec("spec.json", []byte(c.src), "job"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.src, err, c.want)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	cases := []struct {
		name string
		file string // under testdata, or inline src
		src  string
		want []string
	}{
		{name: "unknown worker key", file: "spec_unknown_key.json", want: []string{"spec_unknown_key.json:5:", "key worker.cpus", "unknown key"}},
		{name: "invalid value", file: "spec_bad_cpu.json", want: []string{"spec_bad_cpu.json:6:", "key worker.cpu", "must be >= 0"}},
		{name: "no worker", src: `{"driver":"local"}`, want: []string{"key worker: missing"}},
		{name: "null worker", src: `{"worker":null}`, want: []string{"key worker: missing"}},
		{name: "syntax", src: "{\n\"worker\": {\n\"shell\": }\n}", want: []string{"spec.json:3:", "bad JSON"}},
		{name: "wrong type", src: "{\"worker\": {\n\"shell\": \"x\",\n\"mem\": \"lots\"}}", want: []string{"spec.json:3:", "key worker.mem", "want float64"}},
		{name: "bad duration", src: `{"worker": {"shell": "x", "stop_grace": "soon"}}`, want: []string{"key worker", `duration "soon"`}},
		{name: "bad restart", src: `{"worker": {"shell": "x", "restart": "sometimes"}}`, want: []string{"key worker", `"sometimes"`}},
		{name: "no command", src: `{"worker": {"cpu": 1}}`, want: []string{"key worker.command", "one of command"}},
		{name: "trailing", src: `{"worker": {"shell": "x"}} {}`, want: []string{"trailing data"}},
		{name: "not an object", src: `[1,2]`, want: []string{"spec.json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.file != "" {
				_, err = sitterbus.LoadSpec(filepath.Join("testdata", c.file), "job")
			} else {
				_, err = sitterbus.ParseSpec("spec.json", []byte(c.src), "job")
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadSpecMissingAndOversized(t *testing.T) {
	if _, err := sitterbus.LoadSpec(filepath.Join(t.TempDir(), "nope.json"), "j"); err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, []byte(`{"worker":{"shell":"`+strings.Repeat("x", sitterbus.MaxSpecSize)+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sitterbus.LoadSpec(big, "j"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversized file: %v", err)
	}
}

// FuzzParseSpec: no input may panic, and whatever is accepted is a valid
// task.
func FuzzParseSpec(f *testing.F) {
	for _, name := range []string{"spec_ok.json", "spec_unknown_key.json", "spec_bad_cpu.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tasks, err := sitterbus.ParseSpec("spec.json", data, "job")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "spec.json") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		for _, task := range tasks {
			if err := task.Validate(); err != nil {
				t.Errorf("accepted an invalid task: %v", err)
			}
		}
	})
}
