// Package progress renders a boot's events for a person: on a terminal a
// compact view redrawn in place (one line per service, grouped by level), and
// elsewhere one plain line per event, which is what logs and CI want. Every
// value in an event passes through the run's redactor and is escaped
// (termtext), so service output can neither show a secret nor drive the
// terminal.
package progress

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/redact"
	"nightshift/internal/termtext"
)

// Printer receives engine events; it is safe for concurrent use because the
// engine reports from one goroutine per service.
type Printer struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	lines int // lines drawn by the last live frame
	start time.Time
	svcs  map[string]*row
	order []string
	red   *redact.Redactor
}

type row struct {
	level int
	name  string
	state string
	note  string
	since time.Time
	// first is the service's first event of this command; took is how
	// long it then took to reach a settled state (ready, failed,
	// terminated), shown like compose's per-service times.
	first time.Time
	took  time.Duration
}

// settled reports whether a service state ends a service's part of a
// launch, repair or teardown.
func settled(state string) bool {
	switch bootlevel.ServiceState(state) {
	case bootlevel.ServiceReady, bootlevel.ServiceFailed, bootlevel.ServiceTerminated:
		return true
	}
	return false
}

// Elapsed is the time since the printer was made: the command's total.
func (p *Printer) Elapsed() time.Duration { return time.Since(p.start) }

// New returns a printer; live selects the in-place terminal view. red knows
// the run's secrets; nil removes only what redact.String finds.
func New(w io.Writer, live bool, red *redact.Redactor) *Printer {
	return &Printer{w: w, live: live, start: time.Now(), svcs: map[string]*row{}, red: red}
}

// Event is the engine's OnEvent hook.
func (p *Printer) Event(e bootlevel.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Redact before escaping: a secret with a control byte in it would
	// not be found in its escaped form.
	e.Message = p.red.String(e.Message)
	var r *row
	if e.Service != "" {
		var ok bool
		if r, ok = p.svcs[e.Service]; !ok {
			r = &row{level: e.Level, name: e.Service, since: e.Time, first: e.Time}
			p.svcs[e.Service] = r
			p.order = append(p.order, e.Service)
		}
		if e.State != "" && e.State != r.state {
			r.state = e.State
			r.since = e.Time
			r.took = 0
			if settled(e.State) {
				r.took = e.Time.Sub(r.first)
			}
		}
	}
	if !p.live {
		if e.Transient {
			// Plain output is a log: it keeps what history keeps.
			return
		}
		line := Line(e)
		if r != nil && r.took > 0 && e.State != "" {
			line += " (" + Round(r.took) + ")"
		}
		fmt.Fprintln(p.w, line)
		return
	}
	if r != nil {
		if e.Step != "" {
			r.note = string(e.Step)
		}
		if e.Message != "" {
			r.note = termtext.Line(firstLine(e.Message))
		}
	}
	p.redraw()
}

// Line formats one event as a single plain line, escaped (termtext.Line)
// and with URL passwords and key ids removed.
func Line(e bootlevel.Event) string {
	var b strings.Builder
	b.WriteString(e.Time.Format("15:04:05.000"))
	if e.Level > 0 {
		fmt.Fprintf(&b, " L%d", e.Level)
	}
	if e.Service != "" {
		fmt.Fprintf(&b, " %s", e.Service)
	}
	fmt.Fprintf(&b, " %s", e.Kind)
	if e.Step != "" {
		fmt.Fprintf(&b, " step=%s", e.Step)
	}
	if e.State != "" {
		fmt.Fprintf(&b, " state=%s", e.State)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", redact.String(e.Message))
	}
	return termtext.Line(b.String())
}

func (p *Printer) redraw() {
	if p.lines > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA\x1b[J", p.lines) // up and clear to the end
	}
	rows := make([]*row, 0, len(p.order))
	for _, n := range p.order {
		rows = append(rows, p.svcs[n])
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].level < rows[j].level })
	lines := 0
	level := -1
	for _, r := range rows {
		if r.level != level {
			level = r.level
			fmt.Fprintf(p.w, "level %d\n", level)
			lines++
		}
		took := ""
		if r.took > 0 {
			took = Round(r.took)
		}
		fmt.Fprintf(p.w, "  %s %-24s %-11s %7s %s\n", mark(r.state), termtext.Line(r.name), termtext.Line(r.state), took, termtext.Trim(r.note, 60))
		lines++
	}
	p.lines = lines
}

func mark(state string) string {
	switch bootlevel.ServiceState(state) {
	case bootlevel.ServiceReady:
		return "✔"
	case bootlevel.ServiceFailed:
		return "✘"
	case bootlevel.ServiceTerminated:
		return "■"
	case bootlevel.ServiceBooting, bootlevel.ServiceTerminating:
		return "…"
	}
	return "·"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Round shows a duration as a person reads it: 0.4s, 12.3s, 2m3s.
func Round(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
