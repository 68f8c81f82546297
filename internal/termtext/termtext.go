// Package termtext owns the one rule for putting untrusted text in front of
// a person: service output, attribute values, error messages and reasons can
// hold escape sequences that would recolour, retitle or rewrite the
// operator's terminal, or forge lines of output. Every control character,
// format character (bidi overrides, zero-width marks) and invalid UTF-8 byte
// is shown escaped, strconv-style (\x1b, \u202e), so the sequence is visible
// and inert. Printable text, backslashes included, is left alone: the result
// is for reading, not for parsing back; --json and --raw outputs are exact.
package termtext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s made safe for a single line of output: newlines, carriage
// returns and tabs are escaped as well, so one value stays one line (and one
// table cell).
func Line(s string) string { return escape(s, false) }

// Text returns s made safe for a block of lines: newlines and tabs stay (a
// log or a multi-line error is meant to span lines); everything else that
// Line escapes is escaped, carriage returns included, since a bare \r lets a
// line overwrite what came before it.
func Text(s string) string { return escape(s, true) }

// Bytes is Text for a line read from a file.
func Bytes(b []byte) string { return escape(string(b), true) }

func escape(s string, multiline bool) string {
	clean := true
	for i, r := range s {
		if (r == utf8.RuneError && invalidAt(s, i)) || (unsafe(r) && !(multiline && (r == '\n' || r == '\t'))) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unsafe(r):
			b.WriteString(quoteRune(r))
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func invalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// unsafe reports whether a rune must not reach a terminal as itself: C0 and
// C1 controls and DEL (unicode.Cc), format characters such as the bidi
// overrides U+202A..U+202E and isolates U+2066..U+2069 and zero-width marks
// (unicode.Cf), and the line and paragraph separators, which some terminals
// and viewers treat as line breaks.
func unsafe(r rune) bool {
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

func quoteRune(r rune) string {
	q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e', '\n'
	return q[1 : len(q)-1]
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

// Trim shortens s to at most n runes, marking the cut with "…". Cutting by
// bytes could split a multi-byte rune and print an invalid byte after all.
func Trim(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := 0
	for i := range s {
		if runes == n-1 {
			return s[:i] + "…"
		}
		runes++
	}
	return s
}
