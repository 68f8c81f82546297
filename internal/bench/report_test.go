package bench

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// sampleReport exercises every branch of the writer: peers and ratios,
// targets with verdicts, notes, text that would break a table, a series
// judged linear, one with a problem, and a scenario not measured.
func sampleReport(quick bool, load float64) Report {
	return Report{
		Meta: Meta{Date: time.Date(2026, 11, 21, 23, 5, 0, 0, time.UTC), Command: "go run ./cmd/nsbench", Quick: quick,
			NProc: 2, GoVersion: "go1.26.8", Platform: "linux/amd64", LoadStart: [3]float64{load, 1, 0.5}, LoadEnd: [3]float64{1.5, 1.2, 0.6}},
		Outcomes: []Outcome{
			{Scenario: "boot", Title: "Boot", Status: StatusMeasured, Reproduce: "go run ./cmd/nsbench -run boot", Elapsed: 12400 * time.Millisecond,
				Result: Result{
					Figures: []Figure{
						{Name: "5x20 wall", Value: 0.255, Unit: "s", Target: "< 1 s on 2 cores", Verdict: Met, Command: "launch --home $HOME_DIR --plain $WORK/boot/noop-5x20.toml"},
						{Name: "overhead | per level", Value: 43.2, Unit: "ms", Note: "1 ms\nresolution", Command: "launch --plain x.toml"},
					},
					Series: []Series{
						{Name: "boot levels", SizeUnit: "levels", CostUnit: "ms", Points: pts(1, 39, 2, 103, 5, 216), Command: "launch"},
						{Name: "decision", SizeUnit: "instances", CostUnit: "µs", Points: pts(10, 5, 100, 12, 1000, 150, 10000, 1500), Command: "go test -bench . ./decision"},
						{Name: "short", SizeUnit: "instances", CostUnit: "s", Points: pts(100, 1), Command: "go test"},
					},
					Notes: []string{"plans are generated"},
				}},
			{Scenario: "sitter", Title: "Sitter vs supervisord", Status: StatusMeasured, Reproduce: "go run ./cmd/nsbench -run sitter", Elapsed: 44 * time.Second,
				Result: Result{Figures: []Figure{
					{Name: "CPU", Value: 1.26, Unit: "CPU s/min", Peer: &Peer{Name: "supervisord 4.2.5", Value: 0.06}, Target: "<= supervisord's", Verdict: Missed, Command: "$WORK/bin/sitter run tasks.toml"},
					{Name: "restart", Value: 6.95, Unit: "ms", Peer: &Peer{Name: "supervisord 4.2.5", Value: 1007}, Command: "$WORK/bin/sitter run `x`"},
					{Name: "no peer value", Value: 3, Unit: "ms", Peer: &Peer{Name: "p", Value: 0}, Command: ""},
				}}},
			{Scenario: "recovery", Title: "Recovery", Status: StatusNotMeasured, Reason: "not wired yet", Reproduce: "go run ./cmd/nsbench -run recovery"},
		},
	}
}

func judged(r Report) Report {
	for i := range r.Outcomes {
		for j := range r.Outcomes[i].Series {
			r.Outcomes[i].Series[j].judge()
		}
	}
	return r
}

func TestWriteMarkdownGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		quick bool
		load  float64
	}{
		{"full-idle", false, 0.4},
		{"quick-loaded", true, 6.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteMarkdown(&b, judged(sampleReport(tc.quick, tc.load))); err != nil {
				t.Fatal(err)
			}
			golden(t, "report/"+tc.name+".golden.md", b.Bytes())
		})
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	r := judged(sampleReport(false, 0.4))
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	f := back.Outcomes[1].Figures[0]
	if f.Peer == nil || f.Peer.Value != 0.06 || f.Value != 1.26 || f.Verdict != Missed {
		t.Errorf("figure did not survive JSON: %+v", f)
	}
	if l := back.Outcomes[0].Series[1].Linearity; l == nil || l.Verdict != GrowthSublinear || l.LinearFrom != 100 {
		t.Errorf("linearity did not survive JSON: %+v", l)
	}
	if !back.Meta.Date.Equal(r.Meta.Date) || back.Meta.NProc != 2 || back.Outcomes[2].Reason != "not wired yet" {
		t.Errorf("meta or reason lost: %+v", back.Meta)
	}
}

func TestFigureRatioAndLoad(t *testing.T) {
	if q, ok := (Figure{Value: 3, Peer: &Peer{Value: 2}}).Ratio(); !ok || q != 1.5 {
		t.Errorf("ratio = %v, %v", q, ok)
	}
	if _, ok := (Figure{Value: 3}).Ratio(); ok {
		t.Error("ratio without a peer")
	}
	if _, ok := (Figure{Value: 3, Peer: &Peer{}}).Ratio(); ok {
		t.Error("ratio against a zero peer")
	}
	for _, tc := range []struct {
		start, end float64
		want       bool
	}{{1, 1, false}, {2, 2, false}, {2.1, 1, true}, {1, 9, true}} {
		m := Meta{NProc: 2, LoadStart: [3]float64{tc.start}, LoadEnd: [3]float64{tc.end}}
		if m.Loaded() != tc.want {
			t.Errorf("load %v..%v on 2 cores: Loaded = %v", tc.start, tc.end, !tc.want)
		}
	}
	if AtMost(1, 1) != Met || AtMost(1.01, 1) != Missed {
		t.Error("AtMost")
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{0, "", "0"}, {0.000535, "s", "0.000535 s"}, {0.255, "s", "0.255 s"}, {1.26, "", "1.26"},
		{43.21, "ms", "43.2 ms"}, {1870.4, "launches/s", "1870 launches/s"}, {-12.5, "", "-12.5"}, {6047123, "µs", "6047123 µs"},
	} {
		if got := FormatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("FormatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"go", "test", "-run", "^$", "-bench", "^(A|B)$", "./x"}, `go test -run '^$' -bench '^(A|B)$' ./x`},
		{[]string{"launch", "--home", "$HOME_DIR", "$WORK/p.toml"}, `launch --home $HOME_DIR $WORK/p.toml`},
		{[]string{"echo", "it's", ""}, `echo 'it'\''s' ''`},
	} {
		if got := ShellQuote(tc.argv); got != tc.want {
			t.Errorf("ShellQuote(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}
