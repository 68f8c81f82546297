package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/worker/localworker"
	"nightshift/internal/workeruser"
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
		{"bad worker user", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--worker-user", "Bad User"}, "--worker-user"},
		{"relative worker root", []string{"--run", "r1", "--jobs", "j", "--worker-command", "x", "--worker-root", "workers"}, "--worker-root"},
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

// TestWorkerIsolation: as root, local workers get their own user (resolved
// at start); otherwise the provisioner says once, as a warning, that they
// can read the run's secrets, and records it for mgmt status. The probe is
// injected, so both paths run whoever runs the tests.
func TestWorkerIsolation(t *testing.T) {
	users := func(uid string) *workeruser.Users {
		return &workeruser.Users{Lookup: func(name string) (*user.User, error) {
			return &user.User{Username: name, Uid: uid, Gid: uid}, nil
		}}
	}
	cases := []struct {
		name     string
		isRoot   bool
		uid      string
		wantIso  bool
		wantWarn bool
		wantErr  string
	}{
		{name: "not root: warned, not isolated", isRoot: false, uid: "999", wantWarn: true},
		{name: "root: isolated", isRoot: true, uid: "999", wantIso: true},
		{name: "root with a worker user that is root", isRoot: true, uid: "0", wantErr: "is root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			c := config{home: home, run: "r1", workerUser: "nightshift-worker", workerRoot: "/var/lib/nightshift-worker"}
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			iso, err := workerIsolation(context.Background(), c, tc.isRoot, users(tc.uid), log)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (iso != nil) != tc.wantIso {
				t.Fatalf("isolation %+v, want isolated=%v", iso, tc.wantIso)
			}
			warnings := strings.Count(buf.String(), "level=WARN")
			if tc.wantWarn && (warnings != 1 || !strings.Contains(buf.String(), "they can read this run's secrets")) {
				t.Fatalf("want one warning about the run's secrets, log:\n%s", buf.String())
			}
			if !tc.wantWarn && warnings != 0 {
				t.Fatalf("unexpected warning:\n%s", buf.String())
			}
			id, ok := localworker.ReadIdentity(home, "r1")
			if !ok || id.Isolated != tc.wantIso {
				t.Fatalf("recorded identity %+v (%v), want isolated=%v", id, ok, tc.wantIso)
			}
			if tc.wantIso && id.User != "nightshift-worker" {
				t.Fatalf("recorded user %q", id.User)
			}
		})
	}
}
