package launchplan

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// node is a raw TOML value together with where it came from: the file, the
// key path the decoder knows it by (for its line) and the dotted key shown
// to the operator (which, unlike the path, numbers levels: level[2]).
type node struct {
	src  *source
	loc  *locator
	path []string
	key  string
	val  any
}

func (n node) pos() Pos { return Pos{File: n.src.display, Line: n.loc.line(n.path...)} }

func (n node) child(k string, v any) node {
	path := make([]string, len(n.path)+1)
	copy(path, n.path)
	path[len(n.path)] = k
	return node{src: n.src, loc: n.loc, path: path, key: n.key + "." + k, val: v}
}

// elem is element i of an array: the decoder has no index in its key
// paths, so the line is that of the array.
func (n node) elem(i int, v any) node {
	return node{src: n.src, loc: n.loc, path: n.path, key: fmt.Sprintf("%s[%d]", n.key, i), val: v}
}

func (b *builder) errf(n node, format string, args ...any) {
	if b.errs.full() {
		b.errs.dropped++ // and no line lookup for an error nobody sees
		return
	}
	b.errs.add(n.pos(), n.key, format, args...)
}

// typeName names a raw TOML value's type for messages.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case map[string]any:
		return "table"
	case []any, []map[string]any:
		return "array"
	case time.Time:
		return "datetime"
	}
	return fmt.Sprintf("%T", v)
}

// table returns the children of a table node sorted by name, checking keys
// against known when it is non-nil.
func (b *builder) table(n node, known []string) ([]node, bool) {
	m, ok := n.val.(map[string]any)
	if !ok {
		b.errf(n, "want a table, got %s", typeName(n.val))
		return nil, false
	}
	out := make([]node, 0, len(m))
	for k, v := range m {
		out = append(out, n.child(k, v))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	if known != nil {
		out = b.knownOnly(out, known)
	}
	return out, true
}

// knownOnly reports unknown keys (typos) and drops them.
func (b *builder) knownOnly(nodes []node, known []string) []node {
	kept := nodes[:0]
	for _, c := range nodes {
		if contains(known, c.path[len(c.path)-1]) {
			kept = append(kept, c)
			continue
		}
		b.errf(c, "unknown key%s", suggest(c.path[len(c.path)-1], known))
	}
	return kept
}

// sortNodes puts nodes in file order (by line, then name), which is the
// order services and jobs are reported in.
func sortNodes(nodes []node) {
	lines := make(map[string]int, len(nodes))
	for _, c := range nodes {
		lines[c.key] = c.loc.line(c.path...)
	}
	sort.Slice(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		if lines[a.key] != lines[b.key] {
			return lines[a.key] < lines[b.key]
		}
		return a.key < b.key
	})
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func (b *builder) str(n node) (string, bool) {
	s, ok := n.val.(string)
	if !ok {
		b.errf(n, "want a string, got %s", typeName(n.val))
	}
	return s, ok
}

// scalar accepts a string, number or boolean and returns it as a string:
// globals, env values and attributes end up as strings anyway, and
// `port = 8080` is what people write.
func (b *builder) scalar(n node) (string, bool) {
	switch v := n.val.(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	}
	b.errf(n, "want a string, number or boolean, got %s", typeName(n.val))
	return "", false
}

func (b *builder) integer(n node) (int64, bool) {
	v, ok := n.val.(int64)
	if !ok {
		b.errf(n, "want an integer, got %s", typeName(n.val))
	}
	return v, ok
}

func (b *builder) boolean(n node) (bool, bool) {
	v, ok := n.val.(bool)
	if !ok {
		b.errf(n, "want a boolean, got %s", typeName(n.val))
	}
	return v, ok
}

// array returns the element nodes of an array node.
func (b *builder) array(n node) ([]node, bool) {
	var out []node
	switch a := n.val.(type) {
	case []any:
		for i, v := range a {
			out = append(out, n.elem(i, v))
		}
	case []map[string]any:
		for i, v := range a {
			out = append(out, n.elem(i, v))
		}
	default:
		b.errf(n, "want an array, got %s", typeName(n.val))
		return nil, false
	}
	return out, true
}

// duration parses a Go duration string; positive demands > 0.
func (b *builder) duration(n node, positive bool) (time.Duration, bool) {
	s, ok := n.val.(string)
	if !ok {
		b.errf(n, "want a duration string such as \"30s\" or \"2m\", got %s", typeName(n.val))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.errf(n, "bad duration %q: want Go syntax such as \"1.5s\", \"30s\" or \"2m\"", s)
		return 0, false
	}
	if d < 0 {
		b.errf(n, "negative duration %q", s)
		return 0, false
	}
	if positive && d == 0 {
		b.errf(n, "duration must be greater than zero")
		return 0, false
	}
	return d, true
}

// countTables is the number of elements of a `level` value that are tables.
func countTables(v any) int {
	switch a := v.(type) {
	case []map[string]any:
		return len(a)
	case []any:
		n := 0
		for _, e := range a {
			if _, ok := e.(map[string]any); ok {
				n++
			}
		}
		if n != len(a) {
			return 0
		}
		return n
	}
	return 0
}

// oneOf lists choices for an error message: "a", "a or b", "a, b or c".
func oneOf(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}
