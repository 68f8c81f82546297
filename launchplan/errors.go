package launchplan

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a plan, placed at the file, line and dotted key
// where the operator has to look.
type Error struct {
	Pos Pos
	Key string
	Msg string
	// Err is the underlying cause when there is one (for example an
	// fs.ErrNotExist from reading the plan), so callers can errors.Is it.
	Err error `json:"-"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// ErrorList is every problem found in a plan. Load collects them all rather
// than stopping at the first, so one edit cycle fixes a whole plan.
type ErrorList []*Error

func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sortDedup orders by file, line, key and message and drops exact
// duplicates: a mistake in [defaults] or in a replicated service would
// otherwise be reported once per service or replica.
func (l ErrorList) sortDedup() ErrorList {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Msg < b.Msg
	})
	out := l[:0]
	for i, e := range l {
		if i > 0 {
			p := out[len(out)-1]
			if p.Pos == e.Pos && p.Key == e.Key && p.Msg == e.Msg {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

// errs collects errors during one Load, at most maxErrors of them and
// each once.
type errs struct {
	list    ErrorList
	seen    map[Error]bool
	dropped int
	// tries counts every add, repeats included: a plan can repeat one
	// mistake without end, and each try costs a message.
	tries int
}

// full says that further errors would only be counted: callers skip work
// (suggestions, long messages) whose only use is an error.
func (c *errs) full() bool { return len(c.list) >= maxErrors || c.tries >= 10*maxErrors }

func (c *errs) add(pos Pos, key, format string, args ...any) {
	if c.full() {
		c.dropped++
		return
	}
	c.tries++
	e := Error{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)}
	if c.seen[e] {
		return
	}
	if c.seen == nil {
		c.seen = map[Error]bool{}
	}
	c.seen[e] = true
	c.list = append(c.list, &e)
}

func (c *errs) result() error {
	if len(c.list) == 0 {
		return nil
	}
	l := c.list.sortDedup()
	if c.dropped > 0 || c.full() {
		l = append(l, &Error{Pos: Pos{File: l[0].Pos.File}, Msg: fmt.Sprintf("more errors not shown: loading stops after %d", maxErrors)})
	}
	return &l
}
