package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/bench"
)

func TestCheckFuzztime(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"60s", true}, {"1m30s", true}, {"1000x", true}, {"1x", true},
		{"0s", false}, {"-5s", false}, {"0x", false}, {"x", false}, {"60", false}, {"", false}, {"soon", false},
	} {
		if err := checkFuzztime(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkFuzztime(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestPkgDir(t *testing.T) {
	for _, tc := range []struct{ pkg, want, err string }{
		{"nightshift", ".", ""},
		{"nightshift/sitter/sitterbus", "./sitter/sitterbus", ""},
		{"nightshiftx/y", "", "not inside module"},
		{"other/nightshift/y", "", "not inside module"},
		{"nightshift/../etc", "", "not inside module"},
	} {
		got, err := pkgDir("nightshift", tc.pkg)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("pkgDir(%q) = %q, %v; want %q, %q", tc.pkg, got, err, tc.want, tc.err)
		}
	}
}

func TestFuzzScenarioQuickIsSkipped(t *testing.T) {
	e := testEnv(t) // quick
	_, err := e.fuzzScenario(context.Background())
	if !isNotMeasured(err) || !strings.Contains(err.Error(), "full mode only") {
		t.Errorf("quick fuzz step: err = %v, want not measured", err)
	}
}

// fuzzModule is a throwaway module with one sound fuzz target and one that
// fails on any input longer than 3 bytes, so the fuzzer finds a crasher
// within a second.
var fuzzModule = map[string]string{
	"go.mod": "module example.com/fz\n\ngo 1.26\n",
	"p/p.go": "// Package p is fuzzed by nsbench's tests.\npackage p\n\n// Len is sound.\nfunc Len(s string) int { return len(s) }\n",
	"p/p_test.go": `package p

import "testing"

func FuzzSound(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if Len(s) < 0 {
			t.Fatal("negative")
		}
	})
}

func FuzzBoom(f *testing.F) {
	f.Add("ab")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 3 {
			t.Fatalf("boom on %q", s)
		}
	})
}
`,
	"p/testdata/fuzz/FuzzSound/seed1": "go test fuzz v1\nstring(\"a\")\n",
	"p/testdata/fuzz/FuzzSound/seed2": "go test fuzz v1\nstring(\"\")\n",
}

// TestFuzzScenario runs the real fuzz step on fuzzModule: both targets are
// listed and run, the sound one reports its corpus, the crasher is
// reported and moved out of the module's tree, and the step fails.
func TestFuzzScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and fuzzes a small module (about 10 s)")
	}
	mod := t.TempDir()
	for name, body := range fuzzModule {
		p := filepath.Join(mod, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where crashers are moved to
	t.Setenv("GOFLAGS", "-mod=mod")
	e := testEnv(t)
	e.root, e.quick, e.fuzztime = mod, false, "2s"

	res, err := e.fuzzScenario(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 of 2 targets failed: FuzzBoom (./p)") {
		t.Fatalf("err = %v, want FuzzBoom to fail the step", err)
	}
	figs := map[string]bench.Figure{}
	for _, f := range res.Figures {
		figs[strings.Fields(f.Name)[0]] = f
	}
	sound, boom := figs["FuzzSound"], figs["FuzzBoom"]
	if sound.Verdict != bench.Met || sound.Value < 2 || !strings.Contains(sound.Name, "2 in testdata") ||
		sound.Command != "go test -run '^$' -fuzz '^FuzzSound$' -fuzztime 2s ./p" {
		t.Errorf("FuzzSound figure: %+v", sound)
	}
	if boom.Verdict != bench.Missed || !strings.HasPrefix(boom.Note, "FAIL") {
		t.Errorf("FuzzBoom figure: %+v", boom)
	}
	if left, _ := filepath.Glob(filepath.Join(mod, "p", "testdata", "fuzz", "FuzzBoom", "*")); len(left) != 0 {
		t.Errorf("crasher left in the tree: %v", left)
	}
	moved, _ := filepath.Glob(filepath.Join(tmp, "nsbench-crashers-*", "p", "testdata", "fuzz", "FuzzBoom", "*"))
	if len(moved) != 1 {
		t.Fatalf("crashers moved: %v, want 1", moved)
	}
	if b, err := os.ReadFile(moved[0]); err != nil || !strings.HasPrefix(string(b), "go test fuzz v1") {
		t.Errorf("moved crasher: %q, %v", b, err)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "FuzzBoom (./p) found failing inputs, moved out of the tree to "+moved[0]) {
		t.Errorf("notes do not say where the crasher went: %q", res.Notes)
	}
}
