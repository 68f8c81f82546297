package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// A report file is prose written by hand with generated blocks in it, one
// per scenario:
//
//	<!-- nsbench:begin NAME -->
//	### Title (`-run NAME`)
//	...
//	<!-- nsbench:end NAME -->
//
// A run replaces the blocks of the scenarios it measured and appends a block
// for a scenario the file lacks; every other byte of the file is kept, so
// one scenario can be refreshed without losing the others' figures or the
// analysis written around them. The markers are HTML comments, invisible in
// rendered markdown.

const (
	markerPrefix = "<!-- nsbench:"
	// staleMark starts the line a run puts in a block it ran but could not
	// measure; the block's older figures stay below it.
	staleMark = "> **Stale:**"
)

var markerRE = regexp.MustCompile(`^<!-- nsbench:(begin|end) ([a-z0-9_-]+) -->$`)

// DefaultPreamble heads a report written where there was none.
const DefaultPreamble = `# Nightshift benchmarks

Written by ` + "`go run ./cmd/nsbench`" + ` (cmd/nsbench). Each scenario's figures sit between
` + "`<!-- nsbench:begin NAME -->`" + ` and ` + "`<!-- nsbench:end NAME -->`" + ` markers (invisible when rendered) and
say which command measured them, when, on how many cores and at what load; every figure also carries the
command that produced it. Every value comes from a run; nothing is hard-coded. A run of some scenarios
(` + "`-run NAME`" + `) replaces only their blocks and keeps everything else, including text written by hand
outside the markers. A scenario that ran but was not measured (a service missing, say) keeps its earlier
figures under a "Stale" line naming the run that could not refresh them; with no earlier figures, its row
says "not measured" and why. Targets are the issue's goals, reported as met or missed and never asserted.
In commands, ` + "`$WORK`" + ` is nsbench's scratch directory (` + "`-keep`" + ` keeps it and prints its path) and
` + "`$HOME_DIR`" + ` a fresh empty directory. ` + "`-quick`" + ` (CI's smoke run) writes under the temporary
directory unless given ` + "`-out`" + `, so its figures never land in docs/.
`

// docPart is prose (name empty, kept verbatim) or a generated block
// (body is what lies between its marker lines).
type docPart struct {
	name string
	text string
}

// parseDoc splits a report into prose and blocks. Anything that looks like
// a marker but is not a well-formed, balanced one is an error, so that a
// hand edit that broke a marker stops the run instead of losing text.
func parseDoc(src string) ([]docPart, error) {
	var parts []docPart
	var cur strings.Builder
	open := ""
	seen := map[string]bool{}
	lines := strings.SplitAfter(src, "\n")
	for i, line := range lines {
		t := strings.TrimSpace(line)
		// Only a line that starts like a marker is one, so prose may
		// quote the markers (the default preamble does).
		if !strings.HasPrefix(t, markerPrefix) {
			cur.WriteString(line)
			continue
		}
		m := markerRE.FindStringSubmatch(t)
		if m == nil {
			return nil, fmt.Errorf("line %d: malformed nsbench marker %q (want <!-- nsbench:begin NAME --> or <!-- nsbench:end NAME --> alone on a line)", i+1, t)
		}
		kind, name := m[1], m[2]
		switch {
		case kind == "begin" && open != "":
			return nil, fmt.Errorf("line %d: begin of %q inside block %q, which has no end", i+1, name, open)
		case kind == "begin" && seen[name]:
			return nil, fmt.Errorf("line %d: second block for scenario %q", i+1, name)
		case kind == "begin":
			parts = append(parts, docPart{text: cur.String()})
			cur.Reset()
			cur.WriteString(line) // the marker line, kept as written
			open = name
			seen[name] = true
		case open == "":
			return nil, fmt.Errorf("line %d: end of %q without a begin", i+1, name)
		case name != open:
			return nil, fmt.Errorf("line %d: end of %q inside block %q", i+1, name, open)
		default:
			body := cur.String()
			nl := strings.Index(body, "\n")
			parts = append(parts, docPart{name: name, text: body[nl+1:]})
			cur.Reset()
			open = ""
		}
	}
	if open != "" {
		return nil, fmt.Errorf("block %q has no end marker", open)
	}
	parts = append(parts, docPart{text: cur.String()})
	if len(seen) == 0 {
		return nil, errors.New("no <!-- nsbench:begin NAME --> markers: not a report nsbench can update (see the preamble of docs/BENCHMARKS.md for the shape)")
	}
	return parts, nil
}

// MergeMarkdown returns the report old updated with r: the blocks of the
// scenarios r measured are replaced, a block is appended for a scenario old
// lacks, and a scenario r ran without measuring keeps its old block under a
// "Stale" line. old empty (a first run, or a missing file) starts from
// DefaultPreamble. A malformed old is an error and nothing is returned.
func MergeMarkdown(old []byte, r Report) ([]byte, error) {
	var parts []docPart
	if len(bytes.TrimSpace(old)) == 0 {
		parts = []docPart{{text: DefaultPreamble}}
	} else {
		p, err := parseDoc(string(old))
		if err != nil {
			return nil, fmt.Errorf("update benchmark report: %w", err)
		}
		parts = p
	}
	index := map[string]int{}
	for i, p := range parts {
		if p.name != "" {
			index[p.name] = i
		}
	}
	for _, o := range r.Outcomes {
		i, ok := index[o.Scenario]
		if ok && o.Status != StatusMeasured {
			parts[i].text = markStale(parts[i].text, r.Meta, o)
			continue
		}
		var b strings.Builder
		writeBlock(&b, r.Meta, o)
		if ok {
			parts[i].text = b.String()
			continue
		}
		// A new scenario goes last, after a blank line so that it does not
		// run into the prose before it.
		last := &parts[len(parts)-1]
		if last.text != "" && !strings.HasSuffix(last.text, "\n\n") {
			if !strings.HasSuffix(last.text, "\n") {
				last.text += "\n"
			}
			last.text += "\n"
		}
		index[o.Scenario] = len(parts)
		parts = append(parts, docPart{name: o.Scenario, text: b.String()}, docPart{})
	}
	var out strings.Builder
	for _, p := range parts {
		if p.name == "" {
			out.WriteString(p.text)
			continue
		}
		fmt.Fprintf(&out, "<!-- nsbench:begin %s -->\n", p.name)
		out.WriteString(p.text)
		if !strings.HasSuffix(p.text, "\n") {
			out.WriteString("\n")
		}
		fmt.Fprintf(&out, "<!-- nsbench:end %s -->\n", p.name)
	}
	return []byte(out.String()), nil
}

// markStale puts one "Stale" line under the block's heading, replacing any
// earlier one, and keeps the rest of the block: figures a run could not
// refresh are still the best known, but the reader must see they are old.
func markStale(body string, m Meta, o Outcome) string {
	var kept []string
	lines := strings.Split(body, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], staleMark) {
			if i+1 < len(lines) && lines[i+1] == "" {
				i++
			}
			continue
		}
		kept = append(kept, lines[i])
	}
	why := o.Status
	if o.Reason != "" {
		why += ": " + o.Reason
	}
	stale := fmt.Sprintf("%s `%s` on %s ran this scenario but did not refresh it (%s); the figures below are from the earlier run they name.",
		staleMark, m.Command, m.Date.UTC().Format("2006-01-02 15:04 MST"), cell(why))
	// Under the heading when the block starts with one, else first.
	at := 0
	if len(kept) > 0 && strings.HasPrefix(kept[0], "#") {
		at = 1
		if len(kept) > 1 && kept[1] == "" {
			at = 2
		}
	}
	out := append([]string{}, kept[:at]...)
	if at == 1 {
		out = append(out, "")
	}
	out = append(out, stale, "")
	out = append(out, kept[at:]...)
	return strings.Join(out, "\n")
}

// MergeJSON is MergeMarkdown for the raw results: old's outcomes of the
// scenarios r did not measure are kept, each with the Meta of the run that
// measured it; r's measured outcomes replace or join them. The top-level
// Meta becomes r's.
func MergeJSON(old []byte, r Report) ([]byte, error) {
	merged := Report{Meta: r.Meta}
	if len(bytes.TrimSpace(old)) != 0 {
		var prev Report
		if err := json.Unmarshal(old, &prev); err != nil {
			return nil, fmt.Errorf("update benchmark json: %w", err)
		}
		for _, o := range prev.Outcomes {
			if o.Meta == nil {
				pm := prev.Meta
				o.Meta = &pm
			}
			merged.Outcomes = append(merged.Outcomes, o)
		}
	}
	index := map[string]int{}
	for i, o := range merged.Outcomes {
		index[o.Scenario] = i
	}
	for _, o := range r.Outcomes {
		rm := r.Meta
		o.Meta = &rm
		i, ok := index[o.Scenario]
		switch {
		case !ok:
			index[o.Scenario] = len(merged.Outcomes)
			merged.Outcomes = append(merged.Outcomes, o)
		case o.Status == StatusMeasured:
			merged.Outcomes[i] = o
		default:
			why := o.Status
			if o.Reason != "" {
				why += ": " + o.Reason
			}
			merged.Outcomes[i].Stale = fmt.Sprintf("%s on %s: %s", r.Meta.Command, r.Meta.Date.UTC().Format("2006-01-02 15:04 MST"), why)
		}
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, merged); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
