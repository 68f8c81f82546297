package mgmt

import (
	"fmt"
	"image/color"
	"io"
	"strconv"
	"time"

	"github.com/fogleman/gg"
	"github.com/golang/freetype/truetype"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"

	"nightshift/controller"
	"nightshift/internal/termtext"
)

// pngScale draws the PNG at twice the SVG's size, so that it stays sharp
// on the high-density screens tickets are read on.
const pngScale = 2.0

// WritePNG draws s as a PNG: the same picture as WriteSVG, from the same
// layout, without the hover titles a bitmap cannot carry. The Go fonts are
// compiled in, so the output does not depend on the host's fonts.
func WritePNG(w io.Writer, s Series, now time.Time) error {
	regular, err := face(goregular.TTF, 12*pngScale)
	if err != nil {
		return err
	}
	bold, err := face(gobold.TTF, 14*pngScale)
	if err != nil {
		return err
	}
	l := newLayout(s, now)
	dc := gg.NewContext(int(plotW*pngScale), int(plotH*pngScale))
	dc.Scale(pngScale, pngScale)
	dc.SetColor(color.White)
	dc.Clear()
	dc.SetFontFace(regular)
	// The faces are sized in pixels of the scaled image; text is drawn
	// in plot units, so undo the scale around each string.
	text := func(f font.Face, str string, x, y float64, ax float64, col string, rotate float64) {
		dc.Push()
		dc.SetFontFace(f)
		dc.SetHexColor(col)
		dc.Translate(x, y)
		dc.Rotate(gg.Radians(rotate))
		dc.Scale(1/pngScale, 1/pngScale)
		dc.DrawStringAnchored(termtext.Line(str), 0, 0, ax, 0)
		dc.Pop()
	}
	line := func(x1, y1, x2, y2 float64, col string, width float64, dash ...float64) {
		dc.SetHexColor(col)
		dc.SetLineWidth(width)
		dc.SetDash(dash...)
		dc.DrawLine(x1, y1, x2, y2)
		dc.Stroke()
		dc.SetDash()
	}

	text(bold, fmt.Sprintf("run %s, job %s: %s to %s UTC", s.Run, s.Job, l.t0.UTC().Format("2006-01-02 15:04:05"), l.t1.UTC().Format("15:04:05")),
		l.x0, 18, 0, "#000000", 0)
	lx := l.x0
	for _, lg := range []struct {
		name, colour string
		dash         []float64
	}{{"desired", "#1f77b4", nil}, {"running", "#2ca02c", nil}, {"queue depth (right axis)", "#ff7f0e", []float64{4, 3}}} {
		line(lx, 36, lx+18, 36, lg.colour, 2, lg.dash...)
		text(regular, lg.name, lx+22, 40, 0, "#000000", 0)
		lx += 40 + 7*float64(len(lg.name))
	}
	text(regular, "| decisions: launch, terminate, drain, none", lx, 40, 0, "#555555", 0)

	for v := 0; v <= l.wTop; v += l.wStep {
		line(l.x0, l.yW(v), l.x1, l.yW(v), "#e5e5e5", 1)
		text(regular, strconv.Itoa(v), l.x0-6, l.yW(v)+4, 1, "#000000", 0)
	}
	for v := 0; v <= l.qTop; v += l.qStep {
		text(regular, strconv.Itoa(v), l.x1+6, l.yQ(v)+4, 0, "#ff7f0e", 0)
	}
	text(regular, "workers", 16, (l.y0+l.y1)/2, 0.5, "#000000", -90)
	text(regular, "queue depth", plotW-14, (l.y0+l.y1)/2, 0.5, "#ff7f0e", 90)
	ticks, format := l.timeTicks()
	for _, t := range ticks {
		x := l.xOf(t)
		line(x, l.y0, x, l.y0+5, "#999999", 1)
		text(regular, t.UTC().Format(format), x, l.y0+18, 0.5, "#000000", 0)
	}
	text(regular, "time (UTC)", (l.x0+l.x1)/2, plotH-8, 0.5, "#555555", 0)
	dc.SetHexColor("#999999")
	dc.SetLineWidth(1)
	dc.DrawRectangle(l.x0, l.y1, l.x1-l.x0, l.y0-l.y1)
	dc.Stroke()

	for _, d := range s.Decisions {
		if d.Time.Before(l.t0) || d.Time.After(l.t1) {
			continue
		}
		col := decisionColour(d.Action)
		x := l.xOf(d.Time)
		line(x, l.y1, x, l.y0, col, 1, 2, 3)
		dc.SetHexColor(col)
		dc.MoveTo(x, l.y1)
		dc.LineTo(x-5, l.y1-8)
		dc.LineTo(x+5, l.y1-8)
		dc.ClosePath()
		dc.Fill()
	}

	for _, sr := range []struct {
		colour string
		dash   []float64
		y      func(controller.Sample) (float64, bool)
		steps  bool
	}{
		{"#ff7f0e", []float64{4, 3}, func(p controller.Sample) (float64, bool) {
			if p.QueueDepth == nil {
				return 0, false
			}
			return l.yQ(*p.QueueDepth), true
		}, false},
		{"#1f77b4", nil, func(p controller.Sample) (float64, bool) { return l.yW(p.Desired), true }, true},
		{"#2ca02c", nil, func(p controller.Sample) (float64, bool) { return l.yW(p.Running), true }, false},
	} {
		dc.SetHexColor(sr.colour)
		dc.SetLineWidth(2)
		dc.SetDash(sr.dash...)
		for _, seg := range l.polylines(s.Samples, sr.y, sr.steps) {
			dc.NewSubPath()
			for i, pt := range seg {
				if i == 0 {
					dc.MoveTo(pt[0], pt[1])
				} else {
					dc.LineTo(pt[0], pt[1])
				}
			}
		}
		dc.Stroke()
		dc.SetDash()
	}
	if len(s.Samples) == 0 {
		text(regular, "no samples in this period", (l.x0+l.x1)/2, (l.y0+l.y1)/2, 0.5, "#555555", 0)
	}
	if err := dc.EncodePNG(w); err != nil {
		return fmt.Errorf("encode png: %w", err)
	}
	return nil
}

// polylines turns a series into the connected runs of points WriteSVG's
// paths draw: broken where samples are missing or further apart than
// gapBreak, and as steps (horizontal, then vertical) when steps is set.
func (l layout) polylines(samples []controller.Sample, y func(controller.Sample) (float64, bool), steps bool) [][][2]float64 {
	var out [][][2]float64
	var cur [][2]float64
	var prev *controller.Sample
	prevY := 0.0
	flush := func() {
		if len(cur) > 0 {
			if steps && prev != nil {
				cur = append(cur, [2]float64{l.xOf(prev.Time), prevY})
			}
			out = append(out, cur)
		}
		cur = nil
	}
	for i := range samples {
		sm := &samples[i]
		v, ok := y(*sm)
		if !ok {
			flush()
			prev = nil
			continue
		}
		x := l.xOf(sm.Time)
		switch {
		case prev == nil || sm.Time.Sub(prev.Time) > gapBreak:
			flush()
			cur = [][2]float64{{x, v}}
		case steps:
			if v != prevY {
				cur = append(cur, [2]float64{x, prevY}, [2]float64{x, v})
			}
		default:
			cur = append(cur, [2]float64{x, v})
		}
		prev, prevY = sm, v
	}
	flush()
	return out
}

func face(ttf []byte, size float64) (font.Face, error) {
	f, err := truetype.Parse(ttf)
	if err != nil {
		return nil, fmt.Errorf("plot font: %w", err)
	}
	return truetype.NewFace(f, &truetype.Options{Size: size, DPI: 72, Hinting: font.HintingFull}), nil
}
