package launchplan

import (
	"fmt"
	"sort"
	"strings"
)

// PlaceholderMark is what a site-specific value a plan ships with holds
// until the operator replaces it (ami-CHANGE-ME): launching with it would
// only fail later, on the cloud's side, with a less helpful message.
const PlaceholderMark = "CHANGE-ME"

// Placeholder is a plan value still holding PlaceholderMark, where it was
// last set: a plan file's line, a -G file's, or "-g".
type Placeholder struct {
	Pos   Pos    `json:"pos"`
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (p Placeholder) String() string { return p.err().Error() }

func (p Placeholder) err() *Error {
	return &Error{Pos: p.Pos, Key: p.Key, Msg: fmt.Sprintf("%q still holds %s; set it (-g, -G or the plan)", p.Value, PlaceholderMark)}
}

// PlaceholderError lists a plan's placeholders as errors (file:line: key),
// nil when it has none: `launch` refuses such a plan, `--dry-run` shows
// them as warnings.
func (p *Plan) PlaceholderError() error {
	if len(p.Placeholders) == 0 {
		return nil
	}
	var l ErrorList
	for _, ph := range p.Placeholders {
		l = append(l, ph.err())
	}
	return &l
}

// notePlaceholder records a value of a plan file holding the mark; globals
// are left to finishPlaceholders, which knows which source set them last.
func (b *builder) notePlaceholder(pos Pos, path []string, key, value string) {
	if len(path) > 0 && path[0] == "globals" {
		return
	}
	if strings.Contains(value, PlaceholderMark) {
		b.placeholders = append(b.placeholders, Placeholder{Pos: pos, Key: key, Value: value})
	}
}

// setGlobalPos remembers where a global was last set.
func (b *builder) setGlobalPos(name string, pos Pos) {
	if b.globalPos == nil {
		b.globalPos = map[string]Pos{}
	}
	b.globalPos[name] = pos
}

// finishPlaceholders adds the globals whose final value holds the mark and
// stores the sorted list in the plan.
func (b *builder) finishPlaceholders(plan *Plan) {
	out := b.placeholders
	for k, v := range plan.Globals {
		if strings.Contains(v, PlaceholderMark) {
			out = append(out, Placeholder{Pos: b.globalPos[k], Key: "globals." + k, Value: v})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Pos.File != out[j].Pos.File {
			return out[i].Pos.File < out[j].Pos.File
		}
		if out[i].Pos.Line != out[j].Pos.Line {
			return out[i].Pos.Line < out[j].Pos.Line
		}
		return out[i].Key < out[j].Key
	})
	plan.Placeholders = out
}
