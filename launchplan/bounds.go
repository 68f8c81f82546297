package launchplan

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what one plan may be. They bound the work of loading before the
// TOML parser sees a byte: the parser's cost is quadratic in the dotted
// parts of a key and its recursion follows the nesting, so a small hostile
// file could otherwise burn minutes of CPU or exhaust the stack. Real plans
// sit far below every one of them.
const (
	// MaxFileSize bounds each file a plan reads (top file, level files,
	// -G files).
	MaxFileSize = 1 << 20
	// MaxTotalSize bounds all the files of one plan together: a level
	// file may be included by every level.
	MaxTotalSize = 4 << 20
	// MaxKeys bounds keys and table headers, all files together.
	MaxKeys = 10_000
	// MaxValues bounds values, array elements included, all files together.
	MaxValues = 50_000
	// MaxKeyParts bounds the dotted parts of one key or table header.
	MaxKeyParts = 16
	// MaxKeyLen bounds one part of a key, in bytes.
	MaxKeyLen = 256
	// MaxDepth bounds nesting: the parts of the table header above a
	// value, the dotted parts of its key, and every array and inline
	// table around it, counted together.
	MaxDepth = 32
	// MaxStringLen bounds one string as written, in bytes.
	MaxStringLen = 64 << 10
	// MaxLevels bounds the [[level]] tables of a plan.
	MaxLevels = 256
	// MaxServices bounds the services of a plan after replicas are counted.
	MaxServices = 2000
	// MaxExpandedLen bounds one value after its ${...} references are
	// substituted: references to references could otherwise double a
	// value at every step.
	MaxExpandedLen = 1 << 20
)

// maxErrors bounds the errors one load reports: a hostile plan can make
// thousands, and each costs a message (some with suggestions).
const maxErrors = 100

// limitError is a plan that breaks one of the limits above, found by scan.
type limitError struct {
	line int
	msg  string
}

func (e *limitError) Error() string { return e.msg }

// layout is what the scan learns besides the limits.
type layout struct {
	// levelLines are the lines of top-level "[[level]]" headers, in order.
	levelLines []int
	// lines maps key paths (parts joined by NUL, without array indices)
	// to the line that defined them last.
	lines map[string]int
}

// budget is what is left of the limits that span every file of a plan.
type budget struct {
	bytes, keys, values int
}

func newBudget() budget { return budget{bytes: MaxTotalSize, keys: MaxKeys, values: MaxValues} }

// scanner walks TOML text once, without building anything, counting keys,
// values, dotted parts and nesting, measuring strings and key parts, and
// noting the line of every key. It has to be exact only for valid TOML; for
// invalid input it may count more than there is (never less where it
// matters: every run of dotted parts and every open bracket outside strings
// and comments is counted, whatever its role), and the parser reports the
// syntax error afterwards.
type scanner struct {
	data  []byte
	i     int
	line  int
	b     *budget
	stack []frame // open '[' and '{'
	depth int     // sum of the stack's adds
	table []string
	// key is the full path of the key whose value comes next, nil when none.
	key []string
	lay layout
}

type frame struct {
	add    int      // nesting the bracket adds, with the key before it
	prefix []string // key path of what is inside
}

// scan checks data against the limits, charging b, and returns its layout.
func scan(data []byte, b *budget) (layout, *limitError) {
	if len(data) > MaxFileSize {
		return layout{}, &limitError{msg: fmt.Sprintf("file is larger than %d MiB (%d bytes)", MaxFileSize>>20, len(data))}
	}
	if len(data) > b.bytes {
		return layout{}, &limitError{msg: fmt.Sprintf("the plan's files together are larger than %d MiB", MaxTotalSize>>20)}
	}
	b.bytes -= len(data)
	s := &scanner{data: data, line: 1, b: b, lay: layout{lines: map[string]int{}}}
	err := s.run()
	return s.lay, err
}

func (s *scanner) errf(line int, format string, args ...any) *limitError {
	return &limitError{line: line, msg: fmt.Sprintf(format, args...)}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) skipBlanks() {
	for s.i < len(s.data) && (s.data[s.i] == ' ' || s.data[s.i] == '\t') {
		s.i++
	}
}

// note records the line of a key path; later definitions win, as in the
// decoder (which is why a file's [[level]] tables get a scan each).
func (s *scanner) note(path []string, line int) {
	s.lay.lines[strings.Join(path, "\x00")] = line
}

// prefix is the key path of the current position.
func (s *scanner) prefix() []string {
	if k := len(s.stack); k > 0 {
		return s.stack[k-1].prefix
	}
	return s.table
}

func (s *scanner) tooDeep(line int) *limitError {
	return s.errf(line, "nested deeper than %d (table headers, dotted keys, arrays and inline tables count together)", MaxDepth)
}

func (s *scanner) run() *limitError {
	lineStart := true
	n := len(s.data)
	for s.i < n {
		c := s.data[s.i]
		switch {
		case c == '\n':
			s.line++
			s.i++
			lineStart = true
			if len(s.stack) == 0 {
				s.key = nil
			}
			continue
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
			continue
		case c == '#':
			for s.i < n && s.data[s.i] != '\n' {
				s.i++
			}
			continue
		case c == '[' && lineStart && len(s.stack) == 0:
			if err := s.header(); err != nil {
				return err
			}
		case isBare(c) || c == '"' || c == '\'':
			if err := s.chain(); err != nil {
				return err
			}
		case c == '[' || c == '{':
			if err := s.value(); err != nil {
				return err
			}
			f := frame{add: 1, prefix: s.prefix()}
			if s.key != nil {
				f = frame{add: len(s.key) - len(f.prefix) + 1, prefix: s.key}
			}
			s.stack = append(s.stack, f)
			s.depth += f.add
			s.key = nil
			if len(s.table)+s.depth > MaxDepth {
				return s.tooDeep(s.line)
			}
			s.i++
		case c == ']' || c == '}':
			if k := len(s.stack); k > 0 {
				s.depth -= s.stack[k-1].add
				s.stack = s.stack[:k-1]
			}
			s.key = nil
			s.i++
		case c == ',':
			s.key = nil
			s.i++
		default:
			s.i++ // '=', '+', ':' and the like: nothing to count
		}
		lineStart = false
	}
	return nil
}

func (s *scanner) value() *limitError {
	s.b.values--
	if s.b.values < 0 {
		return s.errf(s.line, "more than %d values (array elements included)", MaxValues)
	}
	return nil
}

func (s *scanner) countKey(line int, parts []string, longest int) *limitError {
	s.b.keys--
	switch {
	case s.b.keys < 0:
		return s.errf(line, "more than %d keys and table headers", MaxKeys)
	case len(parts) > MaxKeyParts:
		return s.errf(line, "key has %d dotted parts; at most %d", len(parts), MaxKeyParts)
	case longest > MaxKeyLen:
		return s.errf(line, "key part of %d bytes; at most %d", longest, MaxKeyLen)
	}
	return nil
}

// header reads a "[a.b]" or "[[a.b]]" table header.
func (s *scanner) header() *limitError {
	line := s.line
	s.i++
	array := s.i < len(s.data) && s.data[s.i] == '['
	if array {
		s.i++
	}
	s.skipBlanks()
	parts, longest, err := s.parts()
	if err != nil {
		return err
	}
	if err := s.countKey(line, parts, longest); err != nil {
		return err
	}
	if len(parts) > MaxDepth {
		return s.tooDeep(line)
	}
	s.table = parts
	s.key = nil
	s.note(parts, line)
	if array && len(parts) == 1 && parts[0] == "level" {
		s.lay.levelLines = append(s.lay.levelLines, line)
		if len(s.lay.levelLines) > MaxLevels {
			return s.errf(line, "more than %d [[level]] tables", MaxLevels)
		}
	}
	return nil
}

// chain reads a run of dotted parts: a key when '=' follows, else a value
// (a string, number, boolean or date).
func (s *scanner) chain() *limitError {
	line := s.line
	parts, longest, err := s.parts()
	if err != nil {
		return err
	}
	s.skipBlanks()
	if s.i < len(s.data) && s.data[s.i] == '=' {
		if err := s.countKey(line, parts, longest); err != nil {
			return err
		}
		if len(s.table)+s.depth+len(parts) > MaxDepth {
			return s.tooDeep(line)
		}
		pre := s.prefix()
		full := make([]string, 0, len(pre)+len(parts))
		full = append(append(full, pre...), parts...)
		s.key = full
		s.note(full, line)
		s.i++
		return nil
	}
	if len(parts) > MaxKeyParts {
		return s.errf(line, "value has %d dotted parts; at most %d", len(parts), MaxKeyParts)
	}
	s.key = nil
	return s.value()
}

// parts reads parts separated by dots, each a bare word or a quoted
// string, stopping at anything else, and returns them unquoted.
func (s *scanner) parts() (parts []string, longest int, err *limitError) {
	n := len(s.data)
	for s.i < n {
		var part string
		switch c := s.data[s.i]; {
		case c == '"' || c == '\'':
			start := s.i
			var l int
			if l, err = s.str(); err != nil {
				return nil, 0, err
			}
			longest = max(longest, l)
			if l <= MaxKeyLen {
				part = unquoteKey(string(s.data[start:s.i]))
			}
		case isBare(c):
			start := s.i
			for s.i < n && isBare(s.data[s.i]) {
				s.i++
			}
			longest = max(longest, s.i-start)
			if s.i-start <= MaxKeyLen {
				part = string(s.data[start:s.i])
			}
		default:
			// A dot not followed by a part: invalid, left to the parser.
			return parts, longest, nil
		}
		parts = append(parts, part)
		if len(parts) > MaxKeyParts {
			// Stop here: the parser must never see this key, and reading
			// the rest would be work for nothing.
			return parts, longest, nil
		}
		s.skipBlanks()
		if s.i >= n || s.data[s.i] != '.' {
			return parts, longest, nil
		}
		s.i++
		s.skipBlanks()
	}
	return parts, longest, nil
}

// unquoteKey returns the key a quoted part names. Go's escapes are close
// enough to TOML's for keys; a part it cannot read only costs its line.
func unquoteKey(q string) string {
	if len(q) >= 2 && q[0] == '\'' {
		return q[1 : len(q)-1]
	}
	if u, err := strconv.Unquote(q); err == nil {
		return u
	}
	return q
}

// str reads a string starting at s.i (basic, literal, or their multi-line
// forms), leaves s.i after it and returns the length of its content.
func (s *scanner) str() (int, *limitError) {
	line := s.line
	data, n := s.data, len(s.data)
	q := data[s.i]
	multi := s.i+2 < n && data[s.i+1] == q && data[s.i+2] == q
	j := s.i + 1
	if multi {
		j = s.i + 3
	}
	start := j
	end := n
	for j < n {
		d := data[j]
		if d == '\\' && q == '"' {
			if j+1 < n && data[j+1] == '\n' {
				s.line++
			}
			j += 2
			continue
		}
		if d == '\n' {
			if !multi {
				end = j // unterminated; the parser says so
				break
			}
			s.line++
		}
		if d == q {
			if !multi {
				end = j
				j++
				break
			}
			if j+2 < n && data[j+1] == q && data[j+2] == q {
				// A closing """ may be followed by up to two more quotes.
				k := j + 3
				for k < n && k < j+5 && data[k] == q {
					k++
				}
				end = k - 3
				j = k
				break
			}
		}
		j++
	}
	if j > n {
		j = n
	}
	s.i = j
	l := max(end-start, 0)
	if l > MaxStringLen {
		return l, s.errf(line, "string of %d bytes; at most %d", l, MaxStringLen)
	}
	return l, nil
}

// badControl returns the first control character in s that a plan may not
// hold: NUL, escape sequences and the like would reach logs, terminals and
// argv. Values may hold tabs and line breaks (a multi-line script or
// certificate); keys may not.
func badControl(s string, value bool) (rune, bool) {
	for _, r := range s {
		if value && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		if unicode.IsControl(r) {
			return r, true
		}
	}
	return 0, false
}

// checkControl reports every key and string value of src holding a
// control character, with its line.
func (b *builder) checkControl(src *source) {
	for _, k := range src.keys() {
		v, ok := src.value(k)
		if !ok {
			continue
		}
		b.controlWalk(src, src.loc, []string{k}, keyPart(k), v, func(i int) *locator {
			if k == "level" && i < len(src.levelLocs) && src.levelLocs[i] != nil {
				return src.levelLocs[i]
			}
			return nil
		})
	}
}

func (b *builder) controlWalk(src *source, loc *locator, path []string, key string, v any, elemLoc func(int) *locator) {
	if b.errs.full() {
		return
	}
	if r, bad := badControl(path[len(path)-1], false); bad {
		b.errs.add(Pos{File: src.display, Line: loc.line(path...)}, key, "key holds control character %U", r)
	}
	switch t := v.(type) {
	case string:
		if r, bad := badControl(t, true); bad {
			b.errs.add(Pos{File: src.display, Line: loc.line(path...)}, key, "value holds control character %U; only tab and line breaks may appear", r)
		}
		if strings.Contains(t, PlaceholderMark) {
			b.notePlaceholder(Pos{File: src.display, Line: loc.line(path...)}, path, key, t)
		}
	case map[string]any:
		for _, k := range sortedKeys(t) {
			b.controlWalk(src, loc, append(path[:len(path):len(path)], k), key+"."+keyPart(k), t[k], nil)
		}
	case []any:
		for i, e := range t {
			l := loc
			if elemLoc != nil && elemLoc(i) != nil {
				l = elemLoc(i)
			}
			b.controlWalk(src, l, path, fmt.Sprintf("%s[%d]", key, i), e, nil)
		}
	case []map[string]any:
		for i, e := range t {
			l := loc
			if elemLoc != nil && elemLoc(i) != nil {
				l = elemLoc(i)
			}
			idx := i
			if len(path) == 1 && path[0] == "level" {
				idx++ // levels are numbered from 1 everywhere else
			}
			b.controlWalk(src, l, path, fmt.Sprintf("%s[%d]", key, idx), e, nil)
		}
	}
}

// keyPart shows a key part in an error, quoted and escaped when it holds a
// control character, so that none reaches the terminal.
func keyPart(k string) string {
	if _, bad := badControl(k, false); bad || !utf8.ValidString(k) {
		return strconv.Quote(k)
	}
	return k
}
