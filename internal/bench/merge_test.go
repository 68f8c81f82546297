package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mergeRun(cmd string, outcomes ...Outcome) Report {
	return Report{
		Meta: Meta{Date: time.Date(2026, 12, 3, 15, 30, 0, 0, time.UTC), Command: cmd, NProc: 2, GoVersion: "go1.26.8",
			Platform: "linux/amd64", LoadStart: [3]float64{1.5, 1, 0.5}, LoadEnd: [3]float64{1.2, 1, 0.5}},
		Outcomes: outcomes,
	}
}

func measuredHA() Outcome {
	return Outcome{Scenario: "ha", Title: "HA", Status: StatusMeasured, Reproduce: "go run ./cmd/nsbench -run ha", Elapsed: 150 * time.Second,
		Result: Result{
			Figures: []Figure{{Name: "NEW ha figure", Value: 4.9, Unit: "s", Target: "< 5 s", Verdict: Met, Command: "kill -9 controller"}},
			Series:  []Series{{Name: "ha curve", SizeUnit: "workers", CostUnit: "s", Points: pts(10, 1, 20, 2), Command: "mgmt status"}},
			Notes:   []string{"fresh note"},
		}}
}

func TestMergeMarkdownGolden(t *testing.T) {
	existing, err := os.ReadFile(filepath.Join("testdata", "merge", "existing.md"))
	if err != nil {
		t.Fatal(err)
	}
	skippedHA := Outcome{Scenario: "ha", Title: "HA", Status: StatusNotMeasured, Reason: "RabbitMQ | absent", Reproduce: "go run ./cmd/nsbench -run ha"}
	sitter := Outcome{Scenario: "sitter", Title: "Sitter", Status: StatusMeasured, Reproduce: "go run ./cmd/nsbench -run sitter", Elapsed: time.Minute,
		Result: Result{Figures: []Figure{{Name: "RSS", Value: 17.8, Unit: "MB", Command: "sitter run"}}}}
	for _, tc := range []struct {
		name string
		old  []byte
		rep  Report
	}{
		// The ha block is replaced; boot's rows and all prose stay.
		{"replace-ha", existing, judged(mergeRun("go run ./cmd/nsbench -run ha", measuredHA()))},
		// A scenario the file lacks is appended after the last prose.
		{"add-sitter", existing, mergeRun("go run ./cmd/nsbench -run sitter", sitter)},
		// Ran but not measured: the old ha figures stay, marked stale.
		{"stale-ha", existing, mergeRun("go run ./cmd/nsbench -run ha", skippedHA)},
		// No file yet: the default preamble and the run's blocks.
		{"first-run", nil, judged(mergeRun("go run ./cmd/nsbench -run ha,sitter", measuredHA(), sitter))},
		{"first-run-blank", []byte("\n  \n"), mergeRun("go run ./cmd/nsbench -run ha", skippedHA)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergeMarkdown(tc.old, tc.rep)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "merge/"+tc.name+".golden.md", got)
			if _, err := parseDoc(string(got)); err != nil {
				t.Errorf("the merged report does not parse again: %v", err)
			}
		})
	}
}

// Everything outside the blocks the run replaced is byte for byte the
// same: the golden files show the shape, this pins the promise.
func TestMergeMarkdownKeepsTheRest(t *testing.T) {
	existing, err := os.ReadFile(filepath.Join("testdata", "merge", "existing.md"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := MergeMarkdown(existing, judged(mergeRun("go run ./cmd/nsbench -run ha", measuredHA())))
	if err != nil {
		t.Fatal(err)
	}
	oldParts, err := parseDoc(string(existing))
	if err != nil {
		t.Fatal(err)
	}
	newParts, err := parseDoc(string(got))
	if err != nil {
		t.Fatalf("merged report does not parse again: %v", err)
	}
	if len(oldParts) != len(newParts) {
		t.Fatalf("parts: %d before, %d after", len(oldParts), len(newParts))
	}
	for i := range oldParts {
		o, n := oldParts[i], newParts[i]
		if o.name != n.name {
			t.Fatalf("part %d: %q became %q", i, o.name, n.name)
		}
		if o.name == "ha" {
			if strings.Contains(n.text, "OLD ha figure") || !strings.Contains(n.text, "NEW ha figure") {
				t.Errorf("ha block not replaced:\n%s", n.text)
			}
			continue
		}
		if o.text != n.text {
			t.Errorf("part %d (%q) changed:\n%q\nbecame\n%q", i, o.name, o.text, n.text)
		}
	}
}

// A second unmeasured run replaces the stale line instead of stacking
// another, and a measured run afterwards drops it.
func TestMergeMarkdownStaleOnce(t *testing.T) {
	existing, err := os.ReadFile(filepath.Join("testdata", "merge", "existing.md"))
	if err != nil {
		t.Fatal(err)
	}
	skipped := mergeRun("go run ./cmd/nsbench -run ha", Outcome{Scenario: "ha", Title: "HA", Status: StatusFailed, Reason: "broker down"})
	once, err := MergeMarkdown(existing, skipped)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := MergeMarkdown(once, skipped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(once, twice) {
		t.Errorf("second stale merge changed the report:\n%s", twice)
	}
	if n := strings.Count(string(twice), staleMark); n != 1 || !strings.Contains(string(twice), "OLD ha figure") {
		t.Errorf("%d stale lines, or the old figure lost:\n%s", n, twice)
	}
	fresh, err := MergeMarkdown(twice, judged(mergeRun("go run ./cmd/nsbench -run ha", measuredHA())))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(fresh), staleMark) || strings.Contains(string(fresh), "OLD ha figure") {
		t.Errorf("measured run kept the stale block:\n%s", fresh)
	}
}

func TestMergeMarkdownMalformed(t *testing.T) {
	rep := mergeRun("go run ./cmd/nsbench -run ha", measuredHA())
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"old format without markers", "# Nightshift benchmarks\n\n| ha | x |\n", "no <!-- nsbench:begin"},
		{"unclosed block", "<!-- nsbench:begin ha -->\nrows\n", `block "ha" has no end marker`},
		{"end without begin", "text\n<!-- nsbench:end ha -->\n", `line 2: end of "ha" without a begin`},
		{"mismatched end", "<!-- nsbench:begin ha -->\n<!-- nsbench:end boot -->\n", `line 2: end of "boot" inside block "ha"`},
		{"nested begin", "<!-- nsbench:begin ha -->\n<!-- nsbench:begin boot -->\n", `line 2: begin of "boot" inside block "ha"`},
		{"duplicate block", "<!-- nsbench:begin ha -->\n<!-- nsbench:end ha -->\n<!-- nsbench:begin ha -->\n<!-- nsbench:end ha -->\n", `line 3: second block for scenario "ha"`},
		{"typo in marker", "<!-- nsbench:begin ha -->\n<!-- nsbench:ned ha -->\n", "line 2: malformed nsbench marker"},
		{"marker not alone on its line", "<!-- nsbench:begin ha --> rows\n<!-- nsbench:end ha -->\n", "line 1: malformed nsbench marker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergeMarkdown([]byte(tc.doc), rep)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if got != nil {
				t.Errorf("returned a report with the error:\n%s", got)
			}
		})
	}
}

func TestMergeJSON(t *testing.T) {
	old := Report{Meta: Meta{Command: "go run ./cmd/nsbench", NProc: 2}, Outcomes: []Outcome{
		{Scenario: "boot", Status: StatusMeasured, Result: Result{Figures: []Figure{{Name: "old boot"}}}},
		{Scenario: "ha", Status: StatusMeasured, Result: Result{Figures: []Figure{{Name: "old ha"}}}},
	}}
	var ob bytes.Buffer
	if err := WriteJSON(&ob, old); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		old       []byte
		run       Outcome
		wantNames []string // scenario:first figure, in order
		wantStale string   // scenario expected stale, if any
	}{
		{"replace", ob.Bytes(), measuredHA(), []string{"boot:old boot", "ha:NEW ha figure"}, ""},
		{"append", ob.Bytes(), Outcome{Scenario: "sitter", Status: StatusMeasured, Result: Result{Figures: []Figure{{Name: "rss"}}}},
			[]string{"boot:old boot", "ha:old ha", "sitter:rss"}, ""},
		{"stale", ob.Bytes(), Outcome{Scenario: "ha", Status: StatusNotMeasured, Reason: "no broker"}, []string{"boot:old boot", "ha:old ha"}, "ha"},
		{"first run", nil, measuredHA(), []string{"ha:NEW ha figure"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := mergeRun("go run ./cmd/nsbench -run x", tc.run)
			b, err := MergeJSON(tc.old, rep)
			if err != nil {
				t.Fatal(err)
			}
			var got Report
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range got.Outcomes {
				first := ""
				if len(o.Figures) > 0 {
					first = o.Figures[0].Name
				}
				names = append(names, o.Scenario+":"+first)
				if o.Meta == nil {
					t.Errorf("%s: no meta", o.Scenario)
				}
				if (o.Stale != "") != (o.Scenario == tc.wantStale) {
					t.Errorf("%s: stale = %q", o.Scenario, o.Stale)
				}
			}
			if strings.Join(names, ",") != strings.Join(tc.wantNames, ",") {
				t.Errorf("outcomes %v, want %v", names, tc.wantNames)
			}
			if got.Meta.Command != rep.Meta.Command {
				t.Errorf("top meta %q", got.Meta.Command)
			}
		})
	}
	if _, err := MergeJSON([]byte("{not json"), mergeRun("x", measuredHA())); err == nil {
		t.Error("malformed JSON merged")
	}
}
