package sitter

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLoadFileValid(t *testing.T) {
	f, err := LoadFile("testdata/tasks/valid.toml")
	if err != nil {
		t.Fatal(err)
	}
	if f.SampleInterval.D() != 500*time.Millisecond || len(f.Tasks) != 2 {
		t.Fatalf("file = %+v", f)
	}
	web := f.Tasks[0].WithDefaults()
	if web.CPU != 0.5 || web.Mem != 128 || web.TimeLimit.D() != time.Hour || web.Restart != RestartAlways ||
		*web.MaxRestarts != 3 || web.StopSignal != Signal(syscall.SIGINT) || web.StopGrace.D() != 3*time.Second ||
		!*web.EnsureAlive || web.Env["MODE"] != "prod" {
		t.Errorf("web = %+v", web)
	}
	batch := f.Tasks[1].WithDefaults()
	if got := strings.Join(batch.Argv(), "|"); got != "/bin/sh|-c|echo hi; sleep 1" {
		t.Errorf("shell argv = %q", got)
	}
	if *batch.EnsureAlive || batch.HealthInterval.D() != DefaultHealthInterval || batch.BackoffInitial.D() != DefaultBackoffInitial {
		t.Errorf("batch defaults = %+v", batch)
	}
}

func TestLoadFileErrors(t *testing.T) {
	cases := []struct{ file, want string }{
		{"bad_restart.toml", `bad_restart.toml:8: key task.restart: restart "sometimes" is not one of always, on-failure, never`},
		{"bad_cpu.toml", "bad_cpu.toml:8: task b: cpu: must be >= 0 cores, got -1"},
		{"unknown_key.toml", "unknown_key.toml:4: unknown key task.memory"},
		{"both_cmd.toml", "both_cmd.toml:4: task a: shell: set either command or shell, not both"},
		{"dup.toml", "dup.toml:6: task a: name: duplicate of task #1"},
		{"bad_duration.toml", `bad_duration.toml:4: key task.stop_grace: duration "ten seconds"`},
		{"syntax.toml", "syntax.toml:2:"},
		{"missing.toml", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, err := LoadFile("testdata/tasks/" + c.file)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v\nwant containing %q", err, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Task{Name: "a", Command: []string{"true"}}
	cases := []struct {
		name string
		mod  func(*Task)
		key  string
	}{
		{"bad name", func(t *Task) { t.Name = "../x" }, "name"},
		{"no command", func(t *Task) { t.Command = nil }, "command"},
		{"empty argv0", func(t *Task) { t.Command = []string{""} }, "command"},
		{"negative mem", func(t *Task) { t.Mem = -1 }, "mem"},
		{"negative time", func(t *Task) { t.TimeLimit = -1 }, "time_limit"},
		{"bad restart", func(t *Task) { t.Restart = "maybe" }, "restart"},
		{"group without user", func(t *Task) { t.Group = "g" }, "group"},
		{"bad env", func(t *Task) { t.Env = map[string]string{"A=B": "x"} }, "env"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			task := ok
			c.mod(&task)
			err := task.Validate()
			fe, isField := err.(*FieldError)
			if !isField || fe.Key != c.key {
				t.Errorf("Validate = %v, want a FieldError on %q", err, c.key)
			}
		})
	}
}

// FuzzParseFile: arbitrary input never panics, and what parses validates.
func FuzzParseFile(f *testing.F) {
	for _, name := range []string{"valid.toml", "bad_cpu.toml", "dup.toml"} {
		b, err := os.ReadFile("testdata/tasks/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := ParseFile("fuzz.toml", src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, task := range file.Tasks {
			if err := task.Validate(); err != nil {
				t.Fatalf("parsed task does not validate: %v", err)
			}
			if err := task.WithDefaults().Validate(); err != nil {
				t.Fatalf("defaults break validation: %v", err)
			}
		}
	})
}

// The example must keep parsing, and must keep one task per limit.
func TestExampleTasksFile(t *testing.T) {
	f, err := LoadFile("../examples/sitter/tasks.toml")
	if err != nil {
		t.Fatal(err)
	}
	var cpu, mem, lifetime, plain bool
	for _, task := range f.Tasks {
		cpu = cpu || task.Name == "spinner" && task.CPU > 0
		mem = mem || task.Name == "memhog" && task.Mem > 0
		lifetime = lifetime || task.Name == "sleeper" && task.TimeLimit > 0
		plain = plain || task.Name == "worker"
	}
	if !cpu || !mem || !lifetime || !plain {
		t.Errorf("example lost a task: cpu %v mem %v time %v worker %v", cpu, mem, lifetime, plain)
	}
}
