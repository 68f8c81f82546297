package launchplan

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// testOptions makes plans independent of the machine: bare program names
// and environment variables resolve from fixed tables.
func testOptions() Options {
	env := map[string]string{"HOME": "/home/test", "REGION": "eu-west-1"}
	return Options{
		Types:  []string{"broker", "controller", "provisioner"},
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		LookPath: func(name string) (string, error) {
			switch name {
			case "sleep", "true":
				return "/usr/bin/" + name, nil
			}
			return "", exec.ErrNotFound
		},
	}
}

// stable rewrites absolute and testdata-relative paths so goldens do not
// depend on where the repository is checked out.
func stable(t *testing.T, s string) string {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	s = strings.ReplaceAll(s, abs+"/", "")
	return strings.ReplaceAll(s, "testdata/", "")
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if string(want) != got {
		t.Errorf("mismatch with %s (go test -update rewrites it)\n--- got ---\n%s--- want ---\n%s", path, got, want)
	}
}

func TestInvalidPlans(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 14 {
		t.Fatalf("expected the invalid corpus, found %d files", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			plan, err := Load(f, testOptions())
			if err == nil {
				t.Fatalf("Load succeeded, want errors; plan %q", plan.Name)
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want *ErrorList, got %T: %v", err, err)
			}
			for _, e := range *list {
				if e.Pos.File == "" {
					t.Errorf("error without file: %v", e)
				}
			}
			golden(t, strings.TrimSuffix(f, ".toml")+".golden", stable(t, err.Error())+"\n")
		})
	}
}

func TestValidPlans(t *testing.T) {
	cases := []struct {
		file string
		opts func(*Options)
	}{
		{file: "hello.toml"},
		{file: "minimal.toml"},
		{file: "alerts.toml"},
		{file: "ssh.toml"},
		{file: "globals.toml", opts: func(o *Options) {
			o.GlobalFiles = []string{"testdata/globals/site.toml"}
			o.Globals = map[string]string{"color": "green"}
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			opts := testOptions()
			if c.opts != nil {
				c.opts(&opts)
			}
			path := filepath.Join("testdata/valid", c.file)
			plan, err := Load(path, opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			out := struct {
				Plan  *Plan  `json:"plan"`
				Graph []Edge `json:"graph"`
			}{plan, plan.Graph()}
			data, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(path, ".toml")+".json", stable(t, string(data))+"\n")
		})
	}
}
