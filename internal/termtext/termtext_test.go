package termtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLineAndText(t *testing.T) {
	cases := []struct {
		name, in, line, text string
	}{
		{"plain", "ready on port 8080", "ready on port 8080", "ready on port 8080"},
		{"unicode kept", "déjà vu ✔ 日本 🎉", "déjà vu ✔ 日本 🎉", "déjà vu ✔ 日本 🎉"},
		{"backslash kept", `C:\dir \x1b`, `C:\dir \x1b`, `C:\dir \x1b`},
		{"CSI colour", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`, `\x1b[31mred\x1b[0m`},
		{"clear screen", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`, `\x1b[2J\x1b[H`},
		{"OSC title BEL", "\x1b]0;pwned\x07", `\x1b]0;pwned\a`, `\x1b]0;pwned\a`},
		{"OSC 8 link ST", "\x1b]8;;http://evil\x1b\\x\x1b]8;;\x1b\\", `\x1b]8;;http://evil\x1b\x\x1b]8;;\x1b\`, `\x1b]8;;http://evil\x1b\x\x1b]8;;\x1b\`},
		{"C1 CSI as UTF-8", "a\u009b31mb", `a\u009b31mb`, `a\u009b31mb`},
		{"C1 OSC as UTF-8", "\u009d0;t\u009c", `\u009d0;t\u009c`, `\u009d0;t\u009c`},
		{"raw C1 byte is invalid UTF-8", "a\x9b31m", `a\x9b31m`, `a\x9b31m`},
		{"invalid UTF-8", "ok\xff\xfe end", `ok\xff\xfe end`, `ok\xff\xfe end`},
		{"truncated rune", "caf\xc3", `caf\xc3`, `caf\xc3`},
		{"NUL and DEL", "a\x00b\x7fc", `a\x00b\x7fc`, `a\x00b\x7fc`},
		{"bell backspace", "x\x08\x08y\a", `x\b\by\a`, `x\b\by\a`},
		{"newline", "one\ntwo", `one\ntwo`, "one\ntwo"},
		{"forged log line", "ok\r2026-01-01 INFO all good", `ok\r2026-01-01 INFO all good`, `ok\r2026-01-01 INFO all good`},
		{"tab", "a\tb", `a\tb`, "a\tb"},
		{"bidi override", "file\u202Egnp.exe", `file\u202egnp.exe`, `file\u202egnp.exe`},
		{"bidi isolates", "\u2066x\u2069\u2067y\u2068", `\u2066x\u2069\u2067y\u2068`, `\u2066x\u2069\u2067y\u2068`},
		{"LRM RLM ALM", "\u200e\u200f\u061c", `\u200e\u200f\u061c`, `\u200e\u200f\u061c`},
		{"zero width and BOM", "a\u200bb\ufeffc", `a\u200bb\ufeffc`, `a\u200bb\ufeffc`},
		{"line separator", "a\u2028b\u2029c", `a\u2028b\u2029c`, `a\u2028b\u2029c`},
		{"empty", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Line(c.in); got != c.line {
				t.Errorf("Line(%q) = %q, want %q", c.in, got, c.line)
			}
			if got := Text(c.in); got != c.text {
				t.Errorf("Text(%q) = %q, want %q", c.in, got, c.text)
			}
			if got := Bytes([]byte(c.in)); got != c.text {
				t.Errorf("Bytes(%q) = %q, want %q", c.in, got, c.text)
			}
		})
	}
}

// FuzzLine: whatever comes in, what goes out is valid UTF-8 without a
// control or format character, and clean input is left as it is.
func FuzzLine(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[31m", "\u202e", "\xff", "a\nb\tc\r", "\u009b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Line(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Line(%q) = %q is not valid UTF-8", s, out)
		}
		for _, r := range out {
			if unsafe(r) {
				t.Fatalf("Line(%q) = %q keeps %U", s, out, r)
			}
		}
		txt := Text(s)
		if !utf8.ValidString(txt) || strings.ContainsAny(txt, "\x1b\r\x00\u009b") {
			t.Fatalf("Text(%q) = %q", s, txt)
		}
		if Line(out) != out {
			t.Fatalf("Line is not idempotent on %q: %q then %q", s, out, Line(out))
		}
	})
}

func TestTrim(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefgh", 5, "abcd…"},
		{"日本語日本語", 4, "日本語…"},
		{"anything", 0, "anything"},
	}
	for _, c := range cases {
		got := Trim(c.in, c.n)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("Trim(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
