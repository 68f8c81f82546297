package daemonflag

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fileURL := write("url", "amqp://u:hunter2@file:5672/\n")
	emptyURL := write("empty", "\n")
	badURL := write("bad", "http://u:hunter2@bad/\n")
	clusterURL := write("cluster", "amqp://u:hunter2@127.0.0.1:5701/,amqp://u:hunter2@127.0.0.1:5702/\n")
	mixedURL := write("mixed", "amqp://u:hunter2@127.0.0.1:5701/,amqp://v:hunter2@127.0.0.1:5702/\n")
	daemon := Options{DefaultURL: "amqp://guest:guest@127.0.0.1:5672/", SecretDefault: true}
	agent := Options{NoHome: true, URLFileOnly: true, NoSecret: true}
	env := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name  string
		opts  Options
		args  []string
		env   map[string]string
		check func(t *testing.T, c *Common)
		err   string
	}{
		{name: "daemon defaults", opts: daemon, args: []string{"--run", "r1", "--home", "/h"},
			check: func(t *testing.T, c *Common) {
				want(t, c.URL, "amqp://guest:guest@127.0.0.1:5672/")
				want(t, c.SecretFile, "/h/runs/r1/secret")
				want(t, c.Level.String(), slog.LevelInfo.String())
			}},
		{name: "everything from the environment", opts: daemon,
			env: env("NIGHTSHIFT_RUN", "r2", "NIGHTSHIFT_HOME", "/e", "NIGHTSHIFT_AMQP_URL", "amqps://u:p@env/", "NIGHTSHIFT_AMQP_CA_FILE", "/ca.pem"),
			check: func(t *testing.T, c *Common) {
				want(t, c.Run, "r2")
				want(t, c.Home, "/e")
				want(t, c.URL, "amqps://u:p@env/")
				want(t, c.URLSource, "$NIGHTSHIFT_AMQP_URL")
				want(t, c.AMQPCAFile, "/ca.pem")
				want(t, c.SecretFile, "/e/runs/r2/secret")
			}},
		{name: "flags beat the environment", opts: daemon, args: []string{"--run", "r3", "--home", "/f", "--amqp-url", "amqp://u:p@flag/", "--secret-file", "/s"},
			env: env("NIGHTSHIFT_RUN", "r2", "NIGHTSHIFT_HOME", "/e", "NIGHTSHIFT_AMQP_URL_FILE", fileURL),
			check: func(t *testing.T, c *Common) {
				want(t, c.Run, "r3")
				want(t, c.Home, "/f")
				want(t, c.URL, "amqp://u:p@flag/")
				want(t, c.SecretFile, "/s")
			}},
		{name: "a URL file in the environment beats a URL there", opts: agent,
			env: env("NIGHTSHIFT_RUN", "r", "NIGHTSHIFT_AMQP_URL_FILE", fileURL, "NIGHTSHIFT_AMQP_URL", "amqp://u:p@env/"),
			check: func(t *testing.T, c *Common) {
				want(t, c.URL, "amqp://u:hunter2@file:5672/")
				want(t, c.URLSource, fileURL)
				want(t, c.SecretFile, "") // an agent never gets the secret
				want(t, c.Home, "")
			}},
		{name: "old URL file flag", opts: agent, args: []string{"--run", "r", "--broker-url-file", fileURL},
			check: func(t *testing.T, c *Common) { want(t, c.URL, "amqp://u:hunter2@file:5672/") }},
		{name: "a cluster's URL list flows through", opts: agent, args: []string{"--run", "r", "--amqp-url-file", clusterURL},
			check: func(t *testing.T, c *Common) {
				want(t, c.URL, "amqp://u:hunter2@127.0.0.1:5701/,amqp://u:hunter2@127.0.0.1:5702/")
			}},
		{name: "a cluster's URL list in the environment", opts: daemon, env: env("NIGHTSHIFT_RUN", "r", "NIGHTSHIFT_AMQP_URL", "amqp://u:p@a:1/, amqp://u:p@b:2/"),
			check: func(t *testing.T, c *Common) { want(t, c.URL, "amqp://u:p@a:1/, amqp://u:p@b:2/") }},
		{name: "relative home and CA made absolute", opts: daemon, args: []string{"--run", "r", "--home", "rel", "--amqp-url", "amqps://u:p@h/", "--amqp-ca-file", "ca.pem"},
			check: func(t *testing.T, c *Common) {
				if !filepath.IsAbs(c.Home) || !filepath.IsAbs(c.AMQPCAFile) {
					t.Errorf("home %q, CA %q: want absolute", c.Home, c.AMQPCAFile)
				}
			}},
		{name: "home defaults to ~/.nightshift", opts: daemon, args: []string{"--run", "r"},
			check: func(t *testing.T, c *Common) {
				h, _ := os.UserHomeDir()
				want(t, c.Home, filepath.Join(h, ".nightshift"))
			}},
		{name: "debug level", opts: daemon, args: []string{"--run", "r", "--log-level", "debug"},
			check: func(t *testing.T, c *Common) { want(t, c.Level.String(), slog.LevelDebug.String()) }},
		{name: "no run", opts: daemon, err: "--run is required (or set $NIGHTSHIFT_RUN)"},
		{name: "run that is a path", opts: daemon, args: []string{"--run", "../x"}, err: "--run: run name"},
		{name: "bad level", opts: daemon, args: []string{"--run", "r", "--log-level", "loud"}, err: "--log-level"},
		{name: "two URL flags", opts: daemon, args: []string{"--run", "r", "--amqp-url", "amqp://u:hunter2@h/", "--amqp-url-file", fileURL}, err: "not both"},
		{name: "no broker for a daemon without a default", opts: Options{}, args: []string{"--run", "r"}, err: "--amqp-url or --amqp-url-file is required"},
		{name: "no broker for an agent", opts: agent, args: []string{"--run", "r"}, err: "no broker URL: --amqp-url-file is required"},
		{name: "missing URL file", opts: agent, args: []string{"--run", "r", "--amqp-url-file", filepath.Join(dir, "nope")}, err: "--amqp-url-file: open"},
		{name: "empty URL file", opts: agent, args: []string{"--run", "r", "--amqp-url-file", emptyURL}, err: "is empty"},
		{name: "bad URL, password hidden", opts: agent, args: []string{"--run", "r", "--amqp-url-file", badURL}, err: "u:xxxxx@bad"},
		{name: "nodes with two users, password hidden", opts: agent, args: []string{"--run", "r", "--amqp-url-file", mixedURL}, err: "user differs"},
		{name: "CA for a plain URL", opts: daemon, args: []string{"--run", "r", "--amqp-ca-file", "/ca.pem"}, err: "--amqp-ca-file is for an amqps:// broker URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("d", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var c Common
			c.Register(fs, tc.opts)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.Resolve(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("password in error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			tc.check(t, &c)
		})
	}
}

// TestFlagSets: each daemon gets the flags its Options say, and no other.
func TestFlagSets(t *testing.T) {
	for _, tc := range []struct {
		opts        Options
		has, hasNot []string
	}{
		{Options{}, []string{"run", "home", "amqp-url", "amqp-url-file", "broker-url-file", "amqp-ca-file", "secret-file", "log-level"}, nil},
		{Options{NoHome: true, URLFileOnly: true, NoSecret: true}, []string{"run", "amqp-url-file", "broker-url-file", "amqp-ca-file", "log-level"}, []string{"home", "amqp-url", "secret-file"}},
	} {
		fs := flag.NewFlagSet("d", flag.ContinueOnError)
		new(Common).Register(fs, tc.opts)
		for _, n := range tc.has {
			if fs.Lookup(n) == nil {
				t.Errorf("%+v: no --%s", tc.opts, n)
			}
		}
		for _, n := range tc.hasNot {
			if fs.Lookup(n) != nil {
				t.Errorf("%+v: has --%s", tc.opts, n)
			}
		}
	}
}

func want(t *testing.T, got, w string) {
	t.Helper()
	if got != w {
		t.Errorf("got %q, want %q", got, w)
	}
}
