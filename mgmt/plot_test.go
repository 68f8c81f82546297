package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestWriteSVGGolden draws a fixed series (a work pool growing to 6 under a
// backlog and shrinking back, with a gap while its controller was down and
// a reason holding markup and a bidi override) and compares it with the
// golden file; go test ./mgmt -run Golden -update rewrites it.
func TestWriteSVGGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/plot/series.json")
	if err != nil {
		t.Fatal(err)
	}
	var s Series
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, s, time.Date(2026, 12, 2, 18, 5, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/plot/plot.svg"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("SVG differs from %s (run with -update after checking the change by eye)", golden)
	}
	checkSVG(t, buf.Bytes(), 5)
	out := buf.String()
	if strings.Contains(out, "<replaced>") || strings.Contains(out, "\u202e") {
		t.Error("a reason's markup or bidi override reached the SVG unescaped")
	}
}

// checkSVG parses svg as XML and counts its decision markers, each with a
// title.
func checkSVG(t *testing.T, svg []byte, decisions int) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	markers, titles, paths := 0, 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "g":
				for _, a := range se.Attr {
					if a.Name.Local == "class" && a.Value == "decision" {
						markers++
					}
				}
			case "title":
				titles++
			case "path":
				paths++
			}
		}
	}
	if markers != decisions || titles != decisions {
		t.Errorf("%d decision markers with %d titles, want %d", markers, titles, decisions)
	}
	if paths < 3 {
		t.Errorf("%d paths, want the three series at least", paths)
	}
}

func TestPlotFromStore(t *testing.T) {
	home := t.TempDir()
	writeStore(t, home, "r", "ctl", "web")
	ctx := context.Background()
	now := h0.Add(time.Minute)
	out := filepath.Join(t.TempDir(), "web.svg")
	o := PlotOptions{Open: openHistory, Home: home, Run: "r", Job: "web", Since: time.Hour, Now: now, Out: out,
		Redact: func(s string) string { return strings.ReplaceAll(s, "reason", "xxxxx") }}
	if err := Plot(ctx, o); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg, 2)
	if strings.Contains(string(svg), "reason [") || !strings.Contains(string(svg), "xxxxx [") {
		t.Error("the decisions' reasons were not redacted")
	}
	for _, tc := range []struct {
		name string
		mod  func(*PlotOptions)
	}{
		{"png", func(o *PlotOptions) { o.Out = filepath.Join(t.TempDir(), "x.png") }},
		{"other extension", func(o *PlotOptions) { o.Out = filepath.Join(t.TempDir(), "x.txt") }},
		{"since", func(o *PlotOptions) { o.Since = 0 }},
		{"unknown job", func(o *PlotOptions) { o.Job = "nope" }},
		{"unwritable", func(o *PlotOptions) { o.Out = filepath.Join(t.TempDir(), "missing", "x.svg") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := o
			tc.mod(&bad)
			if err := Plot(ctx, bad); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestNiceAxis(t *testing.T) {
	for _, tc := range []struct{ max, step, top int }{
		{1, 1, 1}, {6, 1, 6}, {7, 2, 8}, {11, 2, 12}, {13, 5, 15}, {200, 50, 200}, {201, 50, 250},
	} {
		if step, top := niceAxis(tc.max); step != tc.step || top != tc.top {
			t.Errorf("niceAxis(%d) = %d, %d; want %d, %d", tc.max, step, top, tc.step, tc.top)
		}
	}
}
