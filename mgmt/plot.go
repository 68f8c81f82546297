package mgmt

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"nightshift/controller"
	"nightshift/internal/termtext"
)

// PlotOptions is what `mgmt plot` draws and where.
type PlotOptions struct {
	// Open reads a controller's store (app.OpenHistory).
	Open           OpenHistory
	Home, Run, Job string
	// Since is how far back the plot reaches from Now.
	Since time.Duration
	Now   time.Time
	// Out is the file written; its extension picks the format (.svg, .png).
	Out string
	// Redact is applied to every text taken from the store (reasons)
	// before it is drawn; nil leaves it as stored.
	Redact func(string) string
}

// Plot reads a pool's history (History) and draws it into o.Out: desired
// size, running workers and queue depth over time, each decision marked on
// the time axis with its reason as the marker's title (shown on hover).
func Plot(ctx context.Context, o PlotOptions) error {
	write := WriteSVG
	switch strings.ToLower(filepath.Ext(o.Out)) {
	case ".svg":
	case ".png":
		write = WritePNG
	default:
		return fmt.Errorf("-o %s: want a .svg or .png file", o.Out)
	}
	if o.Since <= 0 {
		return fmt.Errorf("--since %v: want a positive duration", o.Since)
	}
	s, err := History(ctx, o.Open, o.Home, o.Run, o.Job, o.Now.Add(-o.Since))
	if err != nil {
		return err
	}
	if o.Redact != nil {
		for i := range s.Decisions {
			s.Decisions[i].Reason = o.Redact(s.Decisions[i].Reason)
			s.Decisions[i].Error = o.Redact(s.Decisions[i].Error)
		}
	}
	var buf bytes.Buffer
	if err := write(&buf, s, o.Now); err != nil {
		return err
	}
	tmp := o.Out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write plot: %w", err)
	}
	return nil
}

// The plot's geometry, in SVG user units.
const (
	plotW, plotH                  = 960.0, 420.0
	padL, padR, padTop, padBottom = 56.0, 64.0, 56.0, 44.0
	// gapBreak: samples further apart than this are not joined (the
	// controller was down); thinned history is a minute apart.
	gapBreak = 90 * time.Second
)

var actionColour = map[string]string{"launch": "#2ca02c", "terminate": "#d62728", "drain": "#9467bd"}

// WriteSVG draws s as a standalone SVG. The time axis runs from s.Since
// (or the first sample, if later) to now (or the last sample, if later);
// workers (desired, running) are read on the left axis, queue depth on the
// right. Output depends only on s and now, so it can be compared with a
// golden file.
func WriteSVG(w io.Writer, s Series, now time.Time) error {
	l := newLayout(s, now)
	t0, t1 := l.t0, l.t1
	wStep, wTop, qStep, qTop := l.wStep, l.wTop, l.qStep, l.qTop
	x0, x1, y0, y1 := l.x0, l.x1, l.y0, l.y1
	xOf, yW, yQ := l.xOf, l.yW, l.yQ

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%g" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", x0,
		esc(fmt.Sprintf("run %s, job %s: %s to %s UTC", s.Run, s.Job, t0.UTC().Format("2006-01-02 15:04:05"), t1.UTC().Format("15:04:05"))))
	// Legend.
	lx := x0
	for _, l := range []struct{ name, colour, dash string }{
		{"desired", "#1f77b4", ""}, {"running", "#2ca02c", ""}, {"queue depth (right axis)", "#ff7f0e", ` stroke-dasharray="4 3"`},
	} {
		p(`<line x1="%g" y1="36" x2="%g" y2="36" stroke="%s" stroke-width="2"%s/><text x="%g" y="40">%s</text>`+"\n", lx, lx+18, l.colour, l.dash, lx+22, esc(l.name))
		lx += 40 + 7*float64(len(l.name))
	}
	p(`<text x="%g" y="40" fill="#555555">| decisions: launch, terminate, drain, none (hover for the reason)</text>`+"\n", lx)
	// Grid and axes.
	p(`<g stroke="#e5e5e5">` + "\n")
	for v := 0; v <= wTop; v += wStep {
		p(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f"/>`+"\n", x0, yW(v), x1, yW(v))
	}
	p("</g>\n")
	p(`<g text-anchor="end">` + "\n")
	for v := 0; v <= wTop; v += wStep {
		p(`<text x="%g" y="%.1f">%d</text>`+"\n", x0-6, yW(v)+4, v)
	}
	p("</g>\n")
	p(`<g text-anchor="start" fill="#ff7f0e">` + "\n")
	for v := 0; v <= qTop; v += qStep {
		p(`<text x="%g" y="%.1f">%d</text>`+"\n", x1+6, yQ(v)+4, v)
	}
	p("</g>\n")
	p(`<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">workers</text>`+"\n", (y0+y1)/2)
	p(`<text transform="translate(%g %.1f) rotate(90)" text-anchor="middle" fill="#ff7f0e">queue depth</text>`+"\n", plotW-14, (y0+y1)/2)
	ticks, format := l.timeTicks()
	p(`<g text-anchor="middle">` + "\n")
	for _, t := range ticks {
		x := xOf(t)
		p(`<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999999"/><text x="%.1f" y="%g">%s</text>`+"\n", x, y0, x, y0+5, x, y0+18, t.UTC().Format(format))
	}
	p("</g>\n")
	p(`<text x="%g" y="%g" text-anchor="middle" fill="#555555">time (UTC)</text>`+"\n", (x0+x1)/2, plotH-8)
	p(`<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999999"/>`+"\n", x0, y1, x1-x0, y0-y1)

	// Decisions under the lines, so the lines stay readable.
	p(`<g id="decisions">` + "\n")
	for _, d := range s.Decisions {
		if d.Time.Before(t0) || d.Time.After(t1) {
			continue
		}
		colour := decisionColour(d.Action)
		x := xOf(d.Time)
		title := fmt.Sprintf("%s %s (target %d): %s", d.Time.UTC().Format("15:04:05"), d.Action, d.Target, d.Reason)
		if d.Error != "" {
			title += "; error: " + d.Error
		}
		p(`<g class="decision" data-action="%s"><title>%s</title><line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="%s" stroke-dasharray="2 3"/><path d="M%.1f %g l-5 -8 h10 z" fill="%s"/></g>`+"\n",
			esc(d.Action), esc(title), x, y1, x, y0, colour, x, y1, colour)
	}
	p("</g>\n")

	// The series: desired as steps (it changes by decision), running and
	// depth as lines, each broken where samples are missing.
	series := []struct {
		id, colour, dash string
		y                func(controller.Sample) (float64, bool)
		steps            bool
	}{
		{"queue_depth", "#ff7f0e", ` stroke-dasharray="4 3"`, func(s controller.Sample) (float64, bool) {
			if s.QueueDepth == nil {
				return 0, false
			}
			return yQ(*s.QueueDepth), true
		}, false},
		{"desired", "#1f77b4", "", func(s controller.Sample) (float64, bool) { return yW(s.Desired), true }, true},
		{"running", "#2ca02c", "", func(s controller.Sample) (float64, bool) { return yW(s.Running), true }, false},
	}
	for _, sr := range series {
		p(`<path id="%s" fill="none" stroke="%s" stroke-width="2"%s d="`, sr.id, sr.colour, sr.dash)
		var prev *controller.Sample
		prevY := 0.0
		for i := range s.Samples {
			sm := &s.Samples[i]
			y, ok := sr.y(*sm)
			if !ok {
				prev = nil
				continue
			}
			x := xOf(sm.Time)
			switch {
			case prev == nil || sm.Time.Sub(prev.Time) > gapBreak:
				p("M%.1f %.1f", x, y)
			case sr.steps:
				if y != prevY {
					p("H%.1fV%.1f", x, y)
				}
			default:
				p("L%.1f %.1f", x, y)
			}
			prev, prevY = sm, y
		}
		if sr.steps && prev != nil {
			p("H%.1f", xOf(prev.Time))
		}
		p(`"/>` + "\n")
	}
	if len(s.Samples) == 0 {
		p(`<text x="%g" y="%g" text-anchor="middle" fill="#555555">no samples in this period</text>`+"\n", (x0+x1)/2, (y0+y1)/2)
	}
	p("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// layout is the plot's geometry, shared by the SVG and PNG writers so that
// both draw the same picture.
type layout struct {
	t0, t1                   time.Time
	wStep, wTop, qStep, qTop int
	x0, x1, y0, y1           float64
}

func newLayout(s Series, now time.Time) layout {
	t0, t1 := s.Since, now
	if len(s.Samples) > 0 {
		if first := s.Samples[0].Time; t0.IsZero() || first.Before(t0) {
			t0 = first
		}
		if last := s.Samples[len(s.Samples)-1].Time; last.After(t1) {
			t1 = last
		}
	}
	if !t1.After(t0) {
		t1 = t0.Add(time.Minute)
	}
	maxW, maxQ := 1, 1
	for _, p := range s.Samples {
		maxW = max(maxW, p.Desired, p.Running)
		if p.QueueDepth != nil {
			maxQ = max(maxQ, *p.QueueDepth)
		}
	}
	l := layout{t0: t0, t1: t1, x0: padL, x1: plotW - padR, y0: plotH - padBottom, y1: padTop}
	l.wStep, l.wTop = niceAxis(maxW)
	l.qStep, l.qTop = niceAxis(maxQ)
	return l
}

func (l layout) xOf(t time.Time) float64 {
	return l.x0 + (l.x1-l.x0)*t.Sub(l.t0).Seconds()/l.t1.Sub(l.t0).Seconds()
}
func (l layout) yW(v int) float64 { return l.y0 - (l.y0-l.y1)*float64(v)/float64(l.wTop) }
func (l layout) yQ(v int) float64 { return l.y0 - (l.y0-l.y1)*float64(v)/float64(l.qTop) }

// timeTicks are the time axis's ticks and their label layout.
func (l layout) timeTicks() ([]time.Time, string) {
	step := timeStep(l.t1.Sub(l.t0))
	format := "15:04"
	if step < time.Minute {
		format = "15:04:05"
	}
	var ticks []time.Time
	for t := l.t0.Truncate(step); !t.After(l.t1); t = t.Add(step) {
		if !t.Before(l.t0) {
			ticks = append(ticks, t)
		}
	}
	return ticks, format
}

// decisionColour is a decision marker's colour: by action, brown for a
// combined action, grey for none.
func decisionColour(action string) string {
	if c := actionColour[action]; c != "" {
		return c
	}
	if strings.Contains(action, "+") {
		return "#8c564b"
	}
	return "#7f7f7f"
}

// esc makes stored text safe inside SVG: control and format characters
// escaped visibly (termtext), then XML-escaped.
func esc(s string) string { return html.EscapeString(termtext.Line(s)) }

// niceAxis returns a tick step (1, 2 or 5 times a power of ten) and the
// axis top (a multiple of it, at least maxV) giving at most 6 ticks.
func niceAxis(maxV int) (step, top int) {
	for mag := 1; ; mag *= 10 {
		for _, m := range []int{1, 2, 5} {
			step = m * mag
			if int(math.Ceil(float64(maxV)/float64(step))) <= 6 {
				top = step * int(math.Ceil(float64(maxV)/float64(step)))
				return step, top
			}
		}
	}
}

// timeStep picks a tick interval giving at most 8 ticks over span.
func timeStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
		10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour} {
		if span/s <= 8 {
			return s
		}
	}
	return 24 * time.Hour
}
