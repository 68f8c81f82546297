package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // error substring; empty: success
	}{
		{"ok", []string{"--run", "r1", "--home", "/h", "--worker-command", "sleep 10", "--worker-env", "A=b"}, ""},
		{"no run", []string{"--worker-command", "sleep 10"}, "--run"},
		{"no command", []string{"--run", "r1"}, "--worker-command"},
		{"other driver", []string{"--run", "r1", "--driver", "ec2", "--worker-command", "x"}, "only local"},
		{"bad env", []string{"--run", "r1", "--worker-command", "x", "--worker-env", "novalue"}, "KEY=VALUE"},
		{"stray args", []string{"--run", "r1", "--worker-command", "x", "extra"}, "unexpected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(c.args, io.Discard)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.db != "/h/runs/r1/provisioner.db" || cfg.secretFile != "/h/runs/r1/secret" ||
					strings.Join(cfg.workerCommand, "|") != "sleep|10" || len(cfg.workerEnv) != 1 {
					t.Errorf("config = %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want mention of %q", err, c.want)
			}
		})
	}
}
