package launchplan

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// BurntSushi/toml keeps the line of every key but has no public API for it.
// What it does expose: when a toml.Unmarshaler fails, the decoder wraps the
// failure in a toml.ParseError positioned at the key being decoded. So the
// line of any key is found by decoding that key's Primitive into a probe that
// always fails, and reading the position back.

var errLineProbe = errors.New("launchplan: line probe")

// lineProbe is the always-failing Unmarshaler described above.
type lineProbe struct{}

func (*lineProbe) UnmarshalTOML(any) error { return errLineProbe }

// keyLine returns the line where the key behind p was defined, or 0 when the
// decoder does not know it (implicit tables such as "level.service" in
// "[level.service.web]" have no line of their own).
func keyLine(md *toml.MetaData, p toml.Primitive) int {
	err := md.PrimitiveDecode(p, &lineProbe{})
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Position.Line
	}
	return 0
}

// locator answers "on which line is this key?" for one parsed TOML text.
// Keys are paths without array indices, exactly as the decoder records them,
// which is why a file with several [[level]] tables is also split into one
// locator per level (see chunkLocators).
type locator struct {
	md    *toml.MetaData
	root  map[string]toml.Primitive
	cache map[string]int
	prims map[string]primEntry
}

type primEntry struct {
	p  toml.Primitive
	ok bool
}

func newLocator(text string) (*locator, error) {
	var root map[string]toml.Primitive
	md, err := toml.Decode(text, &root)
	if err != nil {
		return nil, err
	}
	return &locator{md: &md, root: root, cache: map[string]int{}, prims: map[string]primEntry{}}, nil
}

// line returns the line of path, or of its nearest ancestor that has one, or 0.
func (l *locator) line(path ...string) int {
	if l == nil {
		return 0
	}
	for n := len(path); n > 0; n-- {
		if ln := l.exact(path[:n]); ln > 0 {
			return ln
		}
	}
	return 0
}

func (l *locator) exact(path []string) int {
	ck := strings.Join(path, "\x00")
	if ln, ok := l.cache[ck]; ok {
		return ln
	}
	ln := 0
	if p, ok := l.prim(path); ok {
		// Each probe costs a pass over the text inside the decoder, hence the caches.
		ln = keyLine(l.md, p)
	}
	l.cache[ck] = ln
	return ln
}

// prim finds the Primitive of path, reusing the walk to its parent.
func (l *locator) prim(path []string) (toml.Primitive, bool) {
	if len(path) == 1 {
		p, ok := l.root[path[0]]
		return p, ok
	}
	ck := strings.Join(path, "\x00")
	if e, ok := l.prims[ck]; ok {
		return e.p, e.ok
	}
	var e primEntry
	if parent, ok := l.prim(path[:len(path)-1]); ok {
		e.p, e.ok = l.child(parent, path[len(path)-1])
	}
	l.prims[ck] = e
	return e.p, e.ok
}

// child finds key under p, looking through array elements when p is an
// array of tables: the decoder's key context has no index, so any element
// holding the key yields the same recorded line.
func (l *locator) child(p toml.Primitive, key string) (toml.Primitive, bool) {
	// Arrays first: decoding an array of tables into a map "succeeds" with
	// an empty map, while decoding a table into a slice fails as it should.
	var arr []toml.Primitive
	if err := l.md.PrimitiveDecode(p, &arr); err == nil {
		for _, e := range arr {
			var em map[string]toml.Primitive
			if err := l.md.PrimitiveDecode(e, &em); err == nil {
				if c, ok := em[key]; ok {
					return c, true
				}
			}
		}
		return toml.Primitive{}, false
	}
	var m map[string]toml.Primitive
	if err := l.md.PrimitiveDecode(p, &m); err != nil {
		return toml.Primitive{}, false
	}
	c, ok := m[key]
	return c, ok
}

// maxNesting bounds array/table nesting. The TOML decoder recurses once per
// level and a few megabytes of "[" exhaust memory long before they fail.
const maxNesting = 64

var levelHeader = regexp.MustCompile(`^\[\[[ \t]*level[ \t]*\]\]`)

// nestingError reports input nested deeper than maxNesting.
type nestingError struct{ line int }

func (e *nestingError) Error() string {
	return fmt.Sprintf("arrays and tables nested deeper than %d", maxNesting)
}

// layout is what a cheap lexical pass learns before the real parse.
type layout struct {
	// levelLines are the lines of top-level "[[level]]" headers, in order.
	levelLines []int
}

// scanLayout walks the text once, skipping strings and comments, to reject
// absurd nesting and to find the [[level]] header lines. It only has to be
// right for valid TOML; invalid input is rejected by the parser afterwards.
func scanLayout(data []byte) (layout, error) {
	var lay layout
	line, depth := 1, 0
	lineStart := true
	n := len(data)
	for i := 0; i < n; i++ {
		c := data[i]
		switch {
		case c == '\n':
			line++
			lineStart = true
			continue
		case c == ' ' || c == '\t' || c == '\r':
			continue
		case c == '#':
			for i+1 < n && data[i+1] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			multi := i+2 < n && data[i+1] == c && data[i+2] == c
			j := i + 1
			if multi {
				j = i + 3
			}
			for j < n {
				d := data[j]
				if d == '\\' && c == '"' {
					if j+1 < n && data[j+1] == '\n' {
						line++
					}
					j += 2
					continue
				}
				if d == '\n' {
					if !multi {
						break
					}
					line++
				}
				if d == c {
					if !multi {
						break
					}
					if j+2 < n && data[j+1] == c && data[j+2] == c {
						j += 2
						// A closing """ may be followed by up to two more quotes.
						for j+1 < n && data[j+1] == c {
							j++
						}
						break
					}
				}
				j++
			}
			if j < n && data[j] == '\n' {
				j-- // let the outer loop count this newline
			}
			i = j
		case c == '[' || c == '{':
			if depth == 0 && lineStart && c == '[' && levelHeader.Match(data[i:min(n, i+64)]) {
				lay.levelLines = append(lay.levelLines, line)
			}
			depth++
			if depth > maxNesting {
				return lay, &nestingError{line: line}
			}
		case c == ']' || c == '}':
			if depth > 0 {
				depth--
			}
		}
		lineStart = false
	}
	return lay, nil
}

// chunkLocators returns one locator per [[level]] table of a top plan file,
// each built from the text between that header and the next, padded with
// newlines so that line numbers stay those of the whole file. Keys that repeat
// in every level (parallelism, file) then resolve to their own level's line.
// Nil entries mean "use the whole-file locator".
func chunkLocators(data []byte, lines []int, levels int) []*locator {
	if len(lines) != levels || levels < 2 {
		return nil
	}
	all := bytes.SplitAfter(data, []byte("\n"))
	out := make([]*locator, levels)
	for i, start := range lines {
		end := len(all)
		if i+1 < len(lines) {
			end = lines[i+1] - 1
		}
		if start-1 > len(all) || end > len(all) || start-1 > end {
			return nil
		}
		var b strings.Builder
		b.WriteString(strings.Repeat("\n", start-1))
		for _, ln := range all[start-1 : end] {
			b.Write(ln)
		}
		if l, err := newLocator(b.String()); err == nil {
			out[i] = l
		}
	}
	return out
}
