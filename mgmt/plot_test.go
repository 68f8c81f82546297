package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	// The same history as a PNG, for a ticket.
	png := o
	png.Out = filepath.Join(t.TempDir(), "web.png")
	if err := Plot(ctx, png); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(png.Out); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Errorf("web.png: %v, want a PNG file", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*PlotOptions)
	}{
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

// TestWritePNGDrawsTheSeries draws the golden series as a PNG and looks at
// its pixels where the layout puts each line and marker: the bitmap must
// show the same picture as the SVG, not merely be a valid file.
func TestWritePNGDrawsTheSeries(t *testing.T) {
	data, err := os.ReadFile("testdata/plot/series.json")
	if err != nil {
		t.Fatal(err)
	}
	var s Series
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 18, 5, 0, 0, time.UTC)
	var buf bytes.Buffer
	if err := WritePNG(&buf, s, now); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != int(plotW*pngScale) || b.Dy() != int(plotH*pngScale) {
		t.Fatalf("size %v, want %gx%g", b, plotW*pngScale, plotH*pngScale)
	}
	l := newLayout(s, now)
	// near reports whether a pixel of colour hex lies within 3 plot units
	// of (x, y).
	near := func(x, y float64, hex string) bool {
		var want [3]uint8
		fmt.Sscanf(hex, "#%02x%02x%02x", &want[0], &want[1], &want[2])
		for dx := -3.0; dx <= 3; dx += 0.5 {
			for dy := -3.0; dy <= 3; dy += 0.5 {
				r, g, b, _ := img.At(int((x+dx)*pngScale), int((y+dy)*pngScale)).RGBA()
				if absDiff(uint8(r>>8), want[0]) < 40 && absDiff(uint8(g>>8), want[1]) < 40 && absDiff(uint8(b>>8), want[2]) < 40 {
					return true
				}
			}
		}
		return false
	}
	// The running line at the peak sample, and the desired steps there.
	peak := s.Samples[0]
	for _, sm := range s.Samples {
		if sm.Running > peak.Running {
			peak = sm
		}
	}
	if !near(l.xOf(peak.Time), l.yW(peak.Running), "#2ca02c") {
		t.Errorf("no running line at the peak (%v, %d)", peak.Time, peak.Running)
	}
	// Desired is drawn under running: look where they differ.
	apart := 0
	for _, sm := range s.Samples {
		if sm.Desired != sm.Running {
			apart++
			if !near(l.xOf(sm.Time), l.yW(sm.Desired), "#1f77b4") {
				t.Errorf("no desired line at (%v, %d)", sm.Time, sm.Desired)
			}
		}
	}
	if apart == 0 {
		// The golden series keeps up with its decisions; raise desired
		// over a stretch to see its line apart from running's.
		s2 := s
		s2.Samples = slices.Clone(s.Samples)
		i := len(s2.Samples) / 2
		for j := i - 3; j <= i+3; j++ {
			s2.Samples[j].Desired = s2.Samples[j].Running + 1
		}
		buf.Reset()
		if err := WritePNG(&buf, s2, now); err != nil {
			t.Fatal(err)
		}
		if img, err = png.Decode(&buf); err != nil {
			t.Fatal(err)
		}
		l = newLayout(s2, now)
		if sm := s2.Samples[i]; !near(l.xOf(sm.Time), l.yW(sm.Desired), "#1f77b4") {
			t.Errorf("no desired line at (%v, %d)", sm.Time, sm.Desired)
		}
	}
	if peak.QueueDepth != nil && !near(l.xOf(peak.Time), l.yQ(*peak.QueueDepth), "#ff7f0e") {
		t.Errorf("no queue depth line at (%v, %d)", peak.Time, *peak.QueueDepth)
	}
	marked := 0
	for _, d := range s.Decisions {
		if near(l.xOf(d.Time), l.y1-4, decisionColour(d.Action)) {
			marked++
		}
	}
	if marked != len(s.Decisions) {
		t.Errorf("%d of %d decisions marked above the plot", marked, len(s.Decisions))
	}
	// Between the axes, far from every line, the page is white.
	if near(l.x0+20, l.y1+10, "#2ca02c") {
		t.Error("running colour where no line should be")
	}
}

func absDiff(a, b uint8) uint8 {
	if a > b {
		return a - b
	}
	return b - a
}
