package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // error substring; empty: success
	}{
		{"ok", []string{"--run", "r1", "--jobs", "/h/jobs.json", "--home", "/h", "--worker-command", "sleep 10", "--worker-env", "A=b"}, ""},
		{"ec2", []string{"--run", "r1", "--jobs", "/h/jobs.json", "--home", "/h", "--driver", "ec2", "--ec2-region", "eu-west-1", "--ec2-endpoint-url", "http://127.0.0.1:5055"}, ""},
		{"no run", []string{"--worker-command", "sleep 10"}, "--run"},
		{"bad run", []string{"--run", "../../x", "--jobs", "j", "--worker-command", "sleep 10"}, "--run: run name"},
		{"no jobs", []string{"--run", "r1", "--worker-command", "sleep 10"}, "--jobs is required"},
		{"no command", []string{"--run", "r1", "--jobs", "j"}, "--worker-command"},
		{"other driver", []string{"--run", "r1", "--jobs", "j", "--driver", "gce"}, "want local, ec2 or sim"},
		{"ec2 with worker command", []string{"--run", "r1", "--jobs", "j", "--driver", "ec2", "--worker-command", "x"}, "for --driver local"},
		{"ec2 bad wait", []string{"--run", "r1", "--jobs", "j", "--driver", "ec2", "--ec2-wait-timeout", "0s"}, "--ec2-wait-timeout"},
		{"bad env", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--worker-env", "novalue"}, "KEY=VALUE"},
		{"stray args", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "extra"}, "unexpected"},
		{"store not postgres", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--store", "/tmp/p.db"}, "want a postgres:// URL"},
		{"store URL typo keeps its password", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--store", "postgress://u:hunter22@h/db"}, "want a postgres:// URL"},
		{"lease without store", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--lease"}, "--lease needs a PostgreSQL --store"},
		{"store and store file", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--store", "postgres://h/db", "--store-file", "f"}, "not both"},
		{"CA for a plain URL", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--amqp-url", "amqp://u:p@h/", "--amqp-ca-file", "/ca.pem"}, "amqps://"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(c.args, noEnv, io.Discard)
			if c.want == "" && c.name == "ec2" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.driver != "ec2" || cfg.ec2Region != "eu-west-1" || cfg.ec2Endpoint != "http://127.0.0.1:5055" {
					t.Errorf("config = %+v", cfg)
				}
				return
			}
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
			if err != nil && strings.Contains(err.Error(), "hunter22") {
				t.Errorf("err = %v shows the store's password", err)
			}
		})
	}
}

func TestParseFlagsCAFile(t *testing.T) {
	cfg, err := parseFlags([]string{"--run", "r1", "--jobs", "j", "--home", "/h", "--worker-command", "x",
		"--amqp-url", "amqps://u:p@localhost:5671/", "--amqp-ca-file", "ca.pem"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(cfg.amqpCAFile) || filepath.Base(cfg.amqpCAFile) != "ca.pem" {
		t.Errorf("CA file %q: want it made absolute, as workers run elsewhere", cfg.amqpCAFile)
	}
}

// noEnv keeps the tests from the environment they happen to run in.
func noEnv(string) string { return "" }
