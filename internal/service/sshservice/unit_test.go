package sshservice

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"nightshift/launchplan"
)

// shellPrint runs the quoted word through a real POSIX shell and returns
// what the shell passed to printf, i.e. what a remote program would get.
func shellPrint(t testing.TB, word string) string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", "printf %s "+quote(word)).Output()
	if err != nil {
		t.Fatalf("sh -c printf %s: %v", quote(word), err)
	}
	return string(out)
}

func TestQuoteSurvivesShell(t *testing.T) {
	for _, s := range []string{
		"", "plain", "a b", "it's", "''", `"dq"`, "$(id)", "`id`", "; echo pwned", "a\nb",
		"*", "~", `\`, "-n", "$HOME", "a\tb", "%s%d", "!", "'\\''",
	} {
		if got := shellPrint(t, s); got != s {
			t.Errorf("quote(%q) through sh = %q", s, got)
		}
	}
}

func FuzzQuote(f *testing.F) {
	f.Add("it's $(id); `x`\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			t.Skip("argv cannot hold NUL")
		}
		if got := shellPrint(t, s); got != s {
			t.Fatalf("quote(%q) through sh = %q", s, got)
		}
	})
}

func TestRemoteCommandRejects(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		argv []string
		want string
	}{
		{"empty argv", nil, nil, "empty program"},
		{"dash program", nil, []string{"-x"}, "must not start with '-'"},
		{"assignment-like program", nil, []string{"A=b"}, "contain '='"},
		{"NUL in arg", nil, []string{"/p", "a\x00b"}, "argv[1] contains a NUL"},
		{"bad env key", map[string]string{"A-B": "x"}, []string{"/p"}, `env key "A-B"`},
		{"empty env key", map[string]string{"": "x"}, []string{"/p"}, `env key ""`},
		{"NUL in env value", map[string]string{"K": "a\x00"}, []string{"/p"}, "env K: value contains a NUL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := remoteCommand("/stage", tc.env, tc.argv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRemoteCommandIsDeterministic(t *testing.T) {
	env := map[string]string{"B": "2", "A": "1", "C": "3"}
	first, err := remoteCommand("/s", env, []string{"/p", "x"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		again, _ := remoteCommand("/s", env, []string{"/p", "x"})
		if again != first {
			t.Fatalf("command differs between calls:\n%s\n%s", first, again)
		}
	}
	if !strings.Contains(first, `env 'A=1' 'B=2' 'C=3' '/p' 'x'`) {
		t.Fatalf("env assignments not sorted and quoted: %s", first)
	}
}

func TestTailWriter(t *testing.T) {
	var log bytes.Buffer
	w := newTailWriter(&log)
	var all strings.Builder
	for i := 1; i <= 25; i++ {
		fmt.Fprintf(&all, "line %d\r\n", i)
	}
	all.WriteString("partial")
	// Split at awkward places, as ssh delivers arbitrary chunks.
	data := all.String()
	for len(data) > 0 {
		n := min(7, len(data))
		if _, err := w.Write([]byte(data[:n])); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if log.String() != all.String() {
		t.Fatalf("log did not get every byte verbatim")
	}
	tail := w.Tail()
	if len(tail) != tailLines {
		t.Fatalf("tail has %d lines, want %d: %q", len(tail), tailLines, tail)
	}
	if tail[0] != "line 7" || tail[18] != "line 25" || tail[19] != "partial" {
		t.Fatalf("tail = %q", tail)
	}
}

func TestTailWriterKeepsFlowingWhenLogFails(t *testing.T) {
	w := newTailWriter(failingWriter{})
	n, err := w.Write([]byte("a\nb\n"))
	if n != 4 || err != nil {
		t.Fatalf("Write = %d, %v; want 4, nil", n, err)
	}
	if w.Err() == nil {
		t.Fatal("log failure not reported")
	}
	if got := w.Tail(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("tail = %q", got)
	}
}

func TestTailWriterCapsLongLines(t *testing.T) {
	w := newTailWriter(nil)
	_, _ = w.Write(bytes.Repeat([]byte("x"), 3*maxLineLen))
	if got := w.Tail(); len(got) != 1 || len(got[0]) != maxLineLen {
		t.Fatalf("long line not capped: %d lines", len(got))
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestStageDir(t *testing.T) {
	tests := []struct {
		name      string
		cfg       *launchplan.SSH
		run, svc  string
		want, err string
	}{
		{"default base", &launchplan.SSH{}, "r1", "web", "/tmp/nightshift/r1/web", ""},
		{"custom base", &launchplan.SSH{StageDir: "/srv/st/"}, "r1", "web", "/srv/st/r1/web", ""},
		{"relative base", &launchplan.SSH{StageDir: "st"}, "r1", "web", "", "must be an absolute path"},
		{"run escapes", &launchplan.SSH{}, "..", "web", "", `run name ".."`},
		{"service with slash", &launchplan.SSH{}, "r1", "a/b", "", `service name "a/b"`},
		{"empty service", &launchplan.SSH{}, "r1", "", "", `service name ""`},
		{"no ssh section", nil, "r1", "web", "", "no [ssh] section"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stageDir(tc.cfg, tc.run, tc.svc)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
