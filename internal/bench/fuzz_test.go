package bench

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseTestList(t *testing.T) {
	f, err := os.Open("testdata/fuzztool/list.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	targets, broken, err := ParseTestList("list.jsonl", f)
	if err != nil {
		t.Fatal(err)
	}
	want := []FuzzTarget{
		{"nightshift/decision", "FuzzConfigure"},
		{"nightshift/internal/bench", "FuzzParseGoBench"},
		{"nightshift/internal/bench", "FuzzParseLevelTimes"},
	}
	if !slices.Equal(targets, want) {
		t.Errorf("targets = %v, want %v", targets, want)
	}
	if !slices.Equal(broken, []string{"nightshift/sitter"}) {
		t.Errorf("broken = %v, want the package whose tests did not build", broken)
	}
}

func TestParseTestListErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bad json", "{\"Action\":\"output\"\n", "src:1: test event"},
		{"wrong type", "\n{\"Action\":\"output\",\"Package\":3}\n", "src:2: test event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseTestList("src", strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseFuzzOutput(t *testing.T) {
	for _, tc := range []struct {
		file string
		want FuzzRun
	}{
		{"pass.txt", FuzzRun{Execs: 3605123, NewInteresting: 31, Total: 93, Progress: true, Passed: true}},
		{"crash.txt", FuzzRun{Execs: 12001, NewInteresting: 3, Total: 7, Progress: true, Passed: false,
			FailingInputs: []string{"testdata/fuzz/FuzzDecode/5c1e9a0b3f2d7e11"}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile("testdata/fuzztool/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseFuzzOutput(tc.file, strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Execs != tc.want.Execs || got.NewInteresting != tc.want.NewInteresting || got.Total != tc.want.Total ||
				got.Progress != tc.want.Progress || got.Passed != tc.want.Passed || !slices.Equal(got.FailingInputs, tc.want.FailingInputs) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseFuzzOutputEdges(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		wantErr   string
		progress  bool
		passed    bool
		execs     int64
		interests int
	}{
		{name: "build failure has no progress", in: "# nightshift/x\nx_test.go:1: syntax error\nFAIL\tnightshift/x [build failed]\n"},
		{name: "seed failure", in: "--- FAIL: FuzzX (0.00s)\n    --- FAIL: FuzzX/seed#0 (0.00s)\nFAIL\n"},
		{name: "ok without progress", in: "ok  \tnightshift/x\t0.01s\n", passed: true},
		{name: "garbled progress", in: "fuzz: elapsed: 3s, execs: lots (1/sec), new interesting: 1 (total: 2)\n", wantErr: "src:1: fuzz progress line"},
		{name: "overflowing count", in: "PASS\nfuzz: elapsed: 3s, execs: 99999999999999999999 (1/sec), new interesting: 1 (total: 2)\n", wantErr: "src:2: fuzz progress line"},
		{name: "last progress wins", in: "fuzz: elapsed: 3s, execs: 5 (1/sec), new interesting: 1 (total: 2)\nfuzz: elapsed: 6s, execs: 9 (1/sec), new interesting: 4 (total: 5)\nPASS\n",
			progress: true, passed: true, execs: 9, interests: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFuzzOutput("src", strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Progress != tc.progress || got.Passed != tc.passed || got.Execs != tc.execs || got.NewInteresting != tc.interests {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func FuzzParseFuzzOutput(f *testing.F) {
	f.Add("fuzz: elapsed: 3s, execs: 5 (1/sec), new interesting: 1 (total: 2)\nPASS\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseFuzzOutput("fuzz", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error does not name its source: %v", err)
			}
			return
		}
		if got.Execs < 0 || got.NewInteresting < 0 || got.Total < 0 {
			t.Fatalf("negative counts: %+v", got)
		}
		if got.Passed {
			for _, l := range strings.Split(in, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") {
					t.Fatalf("passed although %q failed: %+v", l, got)
				}
			}
		}
	})
}

func FuzzParseTestList(f *testing.F) {
	f.Add("{\"Action\":\"output\",\"Package\":\"p\",\"Output\":\"FuzzX\\n\"}\n")
	f.Fuzz(func(t *testing.T, in string) {
		targets, _, err := ParseTestList("fuzz", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error does not name its source: %v", err)
			}
			return
		}
		for _, tg := range targets {
			if tg.Package == "" || !strings.HasPrefix(tg.Name, "Fuzz") || strings.ContainsAny(tg.Name, " \t\n") {
				t.Fatalf("bad target %+v", tg)
			}
		}
	})
}
