package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Figure is one number in the table.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Peer is the same figure for the tool we compare against, measured in
	// the same run; nil where no peer can run here.
	Peer *Peer `json:"peer,omitempty"`
	// Target is the goal in words ("< 1 s on 2 cores") and Verdict
	// whether this run met it. The verdict is information, never an
	// assertion: a shared machine can miss any target.
	Target  string `json:"target,omitempty"`
	Verdict string `json:"verdict,omitempty"`
	// Command is the exact command that produced the value.
	Command string `json:"command"`
	Note    string `json:"note,omitempty"`
}

// Peer is the comparison tool's figure.
type Peer struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Command string  `json:"command,omitempty"`
}

// Ratio is Value/Peer.Value, when there is a peer with a non-zero value.
func (f Figure) Ratio() (float64, bool) {
	if f.Peer == nil || f.Peer.Value == 0 {
		return 0, false
	}
	return f.Value / f.Peer.Value, true
}

// Verdicts for Figure.Verdict.
const (
	Met    = "met"
	Missed = "missed"
)

// AtMost is the verdict for a "value <= limit" target.
func AtMost(value, limit float64) string {
	if value <= limit {
		return Met
	}
	return Missed
}

// Series is a scale curve: the cost of one operation at several sizes.
type Series struct {
	Name     string  `json:"name"`
	SizeUnit string  `json:"size_unit"`
	CostUnit string  `json:"cost_unit"`
	Points   []Point `json:"points"`
	Command  string  `json:"command"`
	// Linearity is filled in by Execute; Problem says why it could not be.
	Linearity *Linearity `json:"linearity,omitempty"`
	Problem   string     `json:"problem,omitempty"`
}

func (s *Series) judge() {
	l, err := CheckLinear(s.Points)
	if err != nil {
		s.Linearity, s.Problem = nil, err.Error()
		return
	}
	s.Linearity, s.Problem = &l, ""
}

// Meta is what every figure was measured under.
type Meta struct {
	Date      time.Time  `json:"date"`
	Command   string     `json:"command"`
	Quick     bool       `json:"quick"`
	NProc     int        `json:"nproc"`
	GoVersion string     `json:"go_version"`
	Platform  string     `json:"platform"`
	LoadStart [3]float64 `json:"load_start"`
	LoadEnd   [3]float64 `json:"load_end"`
}

// Loaded says whether the 1-minute load average exceeded the core count at
// either end of the run, i.e. other work competed for the CPUs.
func (m Meta) Loaded() bool {
	return m.NProc > 0 && (m.LoadStart[0] > float64(m.NProc) || m.LoadEnd[0] > float64(m.NProc))
}

// Report is the whole run.
type Report struct {
	Meta     Meta      `json:"meta"`
	Outcomes []Outcome `json:"outcomes"`
}

// WriteJSON writes the raw results.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write benchmark json: %w", err)
	}
	return nil
}

// WriteMarkdown writes a fresh report of r alone: the default preamble and
// one generated block per scenario, the same as merging r into no file. The
// output depends only on r, so it is checked against a golden file.
func WriteMarkdown(w io.Writer, r Report) error {
	b, err := MergeMarkdown(nil, r)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write benchmark markdown: %w", err)
	}
	return nil
}

// measuredLine says how and when a block's figures were measured. Each
// block carries its own, because a merged report holds blocks from runs
// of different days and loads.
func measuredLine(m Meta) string {
	mode := "full"
	if m.Quick {
		mode = "quick"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `%s` on %s (%s mode), %d cores (`nproc`), %s %s. Load average (1/5/15 min): %s at start, %s at end.\n",
		m.Command, m.Date.UTC().Format("2006-01-02 15:04 MST"), mode, m.NProc, m.GoVersion, m.Platform, loadText(m.LoadStart), loadText(m.LoadEnd))
	if m.Loaded() {
		fmt.Fprintf(&b, "\n> **Shared machine under load.** The 1-minute load average exceeded the %d cores during this run "+
			"(other builds and tests were running), so times are pessimistic and noisy.\n", m.NProc)
	}
	if m.Quick {
		b.WriteString("\n> **Quick mode** (smoke test): small sizes and short windows. These figures show the harness works; " +
			"they are not comparable with a full run.\n")
	}
	return b.String()
}

// writeBlock renders one scenario's generated block body: heading, how it
// was measured, its figures, its curves, status and notes.
func writeBlock(b *strings.Builder, m Meta, o Outcome) {
	fmt.Fprintf(b, "### %s (`-run %s`)\n\n", o.Title, o.Scenario)
	b.WriteString(measuredLine(m))
	if len(o.Figures) > 0 || o.Status != StatusMeasured {
		b.WriteString("\n| scenario | figure | value | peer | peer value | ratio | target | cores | command |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, f := range o.Figures {
		peer, peerVal, ratio := "—", "—", "—"
		if f.Peer != nil {
			peer, peerVal = cell(f.Peer.Name), FormatValue(f.Peer.Value, f.Unit)
		}
		if q, ok := f.Ratio(); ok {
			ratio = FormatValue(q, "") + "×"
		}
		target := cell(f.Target)
		if f.Verdict != "" {
			target += " (" + f.Verdict + ")"
		}
		name := cell(f.Name)
		if f.Note != "" {
			name += " — " + cell(f.Note)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %d | %s |\n",
			o.Scenario, name, FormatValue(f.Value, f.Unit), peer, peerVal, ratio, target, m.NProc, code(f.Command))
	}
	if o.Status != StatusMeasured {
		fmt.Fprintf(b, "| %s | %s | %s: %s | — | — | — | — | %d | %s |\n",
			o.Scenario, cell(o.Title), o.Status, cell(o.Reason), m.NProc, code(o.Reproduce))
	}
	if len(o.Series) > 0 {
		fmt.Fprintf(b, "\nScale curves (growth is called linear when the cost/size ratios of a curve stay within %gx of each other):\n\n", LinearSpreadLimit)
		b.WriteString("| cost | sizes | costs | cost/size | spread | growth | command |\n|---|---|---|---|---|---|---|\n")
		for _, s := range o.Series {
			var sizes, costs, ratios []string
			for _, p := range s.Points {
				sizes = append(sizes, strconv.FormatFloat(p.Size, 'f', -1, 64))
				costs = append(costs, FormatValue(p.Cost, ""))
			}
			spread, growth := "—", "unknown: "+cell(s.Problem)
			if s.Linearity != nil {
				for _, q := range s.Linearity.Ratios {
					ratios = append(ratios, FormatValue(q, ""))
				}
				spread = strconv.FormatFloat(s.Linearity.Spread, 'f', 2, 64) + "×"
				growth = s.Linearity.Verdict
				if s.Linearity.LinearFrom > 0 {
					growth += fmt.Sprintf("; linear from %s up", strconv.FormatFloat(s.Linearity.LinearFrom, 'f', -1, 64))
				}
			}
			fmt.Fprintf(b, "| %s | %s: %s | %s: %s | %s | %s | %s | %s |\n", cell(s.Name), cell(s.SizeUnit), strings.Join(sizes, ", "),
				cell(s.CostUnit), strings.Join(costs, ", "), strings.Join(ratios, ", "), spread, growth, code(s.Command))
		}
	}
	status := o.Status
	if o.Reason != "" {
		status += ": " + o.Reason
	}
	fmt.Fprintf(b, "\nStatus: %s. Took %s. Run alone: `%s`.\n", status, o.Elapsed.Round(time.Second), o.Reproduce)
	for _, n := range o.Notes {
		fmt.Fprintf(b, "\n- %s", n)
	}
	if len(o.Notes) > 0 {
		b.WriteString("\n")
	}
}

// FormatValue prints v with about three significant digits and no
// exponent, so the table reads the same whatever the magnitude.
func FormatValue(v float64, unit string) string {
	var s string
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case a >= 100 || a == 0:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func loadText(l [3]float64) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f", l[0], l[1], l[2])
}

// cell keeps free text from breaking the table.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

func code(s string) string {
	if s == "" {
		return "—"
	}
	return "`" + strings.ReplaceAll(cell(s), "`", "'") + "`"
}

// ShellQuote renders argv as a command a reader can paste into sh.
func ShellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		// $ stays bare so placeholders like $WORK expand when pasted.
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%$") == "" {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
