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

// errs collects errors during one Load.
type errs struct {
	list ErrorList
}

func (c *errs) add(pos Pos, key, format string, args ...any) {
	c.list = append(c.list, &Error{Pos: pos, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *errs) result() error {
	if len(c.list) == 0 {
		return nil
	}
	l := c.list.sortDedup()
	return &l
}
