package jobspec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDigestIgnoresHowTheSpecWasRead: the controller reads a job from TOML
// or from the JSON the launcher writes; the provisioner from either too.
// The same job must hash alike every way.
func TestDigestIgnoresHowTheSpecWasRead(t *testing.T) {
	toml := []byte(`[jobs.web]
engine = "npreserving"
[jobs.web.worker]
command = ["/bin/w", "--n", "3"]
cpu = 0.5
mem = 64
`)
	json := []byte(`{"jobs": {"web": {"driver": "local", "policy": {"n": 3}, "worker": {"mem": 64.0, "cpu": 0.5, "command": ["/bin/w", "--n", "3"]}}}}`)
	a, err := Parse("jobs.toml", toml)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("jobs.json", json)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a["web"].Digest()
	db, _ := b["web"].Digest()
	if da != db || !strings.HasPrefix(da, "sha256:") || len(da) != 71 {
		t.Fatalf("digests %s and %s, want one sha256", da, db)
	}
	other := a["web"]
	other.Worker = map[string]any{"command": []any{"/bin/sh", "-c", "id"}}
	if d, _ := other.Digest(); d == da {
		t.Error("another command has the same digest")
	}
	// Written and loaded back, as the provisioner gets it.
	path := filepath.Join(t.TempDir(), "jobs.json")
	if err := Write(path, a); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if dc, _ := c["web"].Digest(); dc != da {
		t.Errorf("after Write and Load the digest is %s, want %s", dc, da)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("jobs file mode %04o, want 0600", fi.Mode().Perm())
	}
}

func TestParseRefuses(t *testing.T) {
	cases := []struct{ name, file, data, want string }{
		{"no jobs", "j.toml", `x = 1`, "key x: unknown key"},
		{"empty", "j.toml", ``, "want one [jobs.NAME] table"},
		{"job not a table", "j.json", `{"jobs": {"web": 3}}`, "job web: want a table, got a number"},
		{"worker not a table", "j.toml", "[jobs.web]\nworker = \"sh\"", "job web: key worker: want a table, got a string"},
		{"typo", "j.toml", "[jobs.web]\nwokrer = {}", "job web: key wokrer: unknown key"},
		{"driver not a string", "j.toml", "[jobs.web]\ndriver = 1", "key driver: want a string"},
		{"trailing JSON", "j.json", `{"jobs": {"web": {}}} {}`, "trailing data"},
		{"bad TOML", "j.toml", "[jobs.web", "j.toml"},
		{"block_after_silent a string", "j.toml", "[jobs.web]\nblock_after_silent = \"3\"", "job web: key block_after_silent: want an integer from 1 to 100, got a string"},
		{"block_after_silent a fraction", "j.json", `{"jobs": {"web": {"block_after_silent": 2.5}}}`, "job web: key block_after_silent: want an integer"},
		{"block_after_silent negative", "j.toml", "[jobs.web]\nblock_after_silent = -1", "got -1"},
		{"worker user a number", "j.toml", "[jobs.web.worker]\nuser = 1001", "job web: key worker.user: want a user name (a string), got a number"},
		{"worker user not a name", "j.toml", "[jobs.web.worker]\nuser = \"../root\"", "job web: key worker.user: \"../root\" is not a user name"},
		{"worker group not a name", "j.json", `{"jobs": {"web": {"worker": {"user": "batch", "group": "Wheel Group"}}}}`, "key worker.group: \"Wheel Group\" is not a user name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.file, []byte(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// The controller's block_after_silent is accepted by the provisioner's
// reading of the same jobs file, and is no part of the worker spec.
func TestParseAcceptsBlockAfterSilent(t *testing.T) {
	specs, err := Parse("j.toml", []byte("[jobs.web]\nblock_after_silent = 5\n[jobs.web.worker]\ncommand = [\"w\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Parse("j.toml", []byte("[jobs.web]\n[jobs.web.worker]\ncommand = [\"w\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := specs["web"].Digest()
	b, _ := plain["web"].Digest()
	if a != b {
		t.Fatalf("digest %s with block_after_silent, %s without: want the same spec", a, b)
	}
}

func TestLoadRefusesAFileOthersMayWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.json")
	if err := Write(path, map[string]Spec{"web": {}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "lets others change what workers run") {
		t.Errorf("err = %v, want a refusal of mode 0666", err)
	}
}

func TestLaunchSpecAddsOnlyTheEngine(t *testing.T) {
	s := Spec{Driver: "ec2", Instance: map[string]any{"image": "ami-1"}, Worker: map[string]any{"command": []any{"/w"}}}
	got, err := s.LaunchSpec(map[string]string{"site": "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"driver":"ec2","engine":{"site":"x"},"instance":{"image":"ami-1"},"worker":{"command":["/w"]}}`
	if string(got) != want {
		t.Errorf("launch spec %s, want %s", got, want)
	}
}

// FuzzParse: the jobs decoder never panics, and every spec it accepts
// has a digest and survives Write and Load unchanged.
func FuzzParse(f *testing.F) {
	f.Add("j.toml", []byte("[jobs.web.worker]\ncommand = [\"/w\"]\n"))
	f.Add("j.json", []byte(`{"jobs":{"web":{"driver":"ec2","instance":{"image":"a"},"worker":{"cpu":0.5}}}}`))
	f.Add("j.json", []byte(`{"jobs":{"web":{"engine":"x","queue":{"name":"q"}}}}`))
	f.Add("j.toml", []byte("[jobs]\n"))
	f.Add("j.toml", []byte("[jobs.web]\nblock_after_silent = 3\n"))
	f.Add("j.json", []byte(`{"jobs":{"web":{"block_after_silent":1e2}}}`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		jobs, err := Parse(name, data)
		if err != nil {
			return
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "jobs.json")
		if err := Write(path, jobs); err != nil {
			t.Fatalf("accepted jobs do not write: %v", err)
		}
		back, err := Load(path)
		if err != nil {
			t.Fatalf("written jobs do not load: %v", err)
		}
		for n, s := range jobs {
			a, err := s.Digest()
			if err != nil {
				t.Fatalf("job %s: %v", n, err)
			}
			if b, _ := back[n].Digest(); a != b {
				t.Fatalf("job %s: digest %s after a round trip, was %s", n, b, a)
			}
		}
	})
}
