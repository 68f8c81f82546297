package launchplan

import (
	"reflect"
	"strings"
	"testing"
)

func TestLocatorLines(t *testing.T) {
	const text = `name = "x"          # 1
[globals]                 # 2
a = 1                     # 3
[[level]]                 # 4
[level.service.web]       # 5
boot = [                  # 6
  "x",
]
env = { A = "1" }         # 9
[level.service.web.ssh]   # 10
host = "h"                # 11
[jobs.j]                  # 12
engine = "e"              # 13
`
	b := newBudget()
	lay, serr := scan([]byte(text), &b)
	if serr != nil {
		t.Fatal(serr)
	}
	l, err := newLocator(text, lay.lines)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path []string
		want int
	}{
		{[]string{"name"}, 1},
		{[]string{"globals"}, 2},
		{[]string{"globals", "a"}, 3},
		{[]string{"level"}, 4},
		{[]string{"level", "service", "web"}, 5},
		{[]string{"level", "service", "web", "boot"}, 6},
		{[]string{"level", "service", "web", "env", "A"}, 9},
		{[]string{"level", "service", "web", "ssh", "host"}, 11},
		{[]string{"jobs", "j", "engine"}, 13},
		// Implicit tables and unknown keys fall back to the nearest ancestor.
		{[]string{"level", "service"}, 4},
		{[]string{"level", "service", "web", "nope"}, 5},
		{[]string{"nope"}, 0},
	}
	for _, c := range cases {
		if got := l.line(c.path...); got != c.want {
			t.Errorf("line(%s) = %d, want %d", strings.Join(c.path, "."), got, c.want)
		}
	}
	if got := (*locator)(nil).line("x"); got != 0 {
		t.Errorf("nil locator line = %d", got)
	}
}

func TestScanLayout(t *testing.T) {
	cases := []struct {
		name, text string
		want       []int
		wantErr    bool
	}{
		{name: "headers", text: "[[level]]\na = 1\n  [[ level ]] # c\n", want: []int{1, 3}},
		{name: "not top-level names", text: "[[levels]]\n[[level.x]]\nx = \"[[level]]\"\n", want: nil},
		{name: "in multi-line strings", text: "x = \"\"\"\n[[level]]\n\"\"\"\ny = '''\n[[level]]\n'''\n[[level]]\n", want: []int{7}},
		{name: "escaped quote", text: "x = \"a\\\"[[level]]\"\n[[level]]\n", want: []int{2}},
		{name: "in comment", text: "# [[level]]\n[[level]]\n", want: []int{2}},
		{name: "inside array", text: "x = [\n[[level]]\n]\n", want: nil},
		{name: "quoted", text: "[[ \"level\" ]]\n[['level']]\n", want: []int{1, 2}},
		{name: "too deep", text: "x = " + strings.Repeat("[", MaxDepth), wantErr: true},
		{name: "deep tables", text: "x = " + strings.Repeat("{a=", MaxDepth/2), wantErr: true},
		{name: "deep but fine", text: "x = " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1)},
		// 4 + 4, then 5 more for each brace and key inside it.
		{name: "dotted keys count", text: "[a.b.c.d]\ne.f.g.h = " + strings.Repeat("{ i.j.k.l = ", 5) + "1" + strings.Repeat("}", 5) + "\n", wantErr: true},
		{name: "dotted keys fine", text: "[a.b.c.d]\ne.f.g.h = " + strings.Repeat("{ i.j.k.l = ", 4) + "1" + strings.Repeat("}", 4) + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBudget()
			lay, err := scan([]byte(c.text), &b)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			if !c.wantErr && !reflect.DeepEqual(lay.levelLines, c.want) {
				t.Fatalf("levelLines = %v, want %v", lay.levelLines, c.want)
			}
		})
	}
}

func TestChunkLocatorsGiveEachLevelItsLines(t *testing.T) {
	text := "[[level]]\nparallelism = 1\n\n[[level]]\nparallelism = 2\n[[level]]\n\nparallelism = 3\n"
	b := newBudget()
	lay, err := scan([]byte(text), &b)
	if err != nil {
		t.Fatal(err)
	}
	locs := chunkLocators([]byte(text), lay.levelLines, 3)
	if len(locs) != 3 {
		t.Fatalf("got %d locators", len(locs))
	}
	for i, want := range []int{2, 5, 8} {
		if got := locs[i].line("level", "parallelism"); got != want {
			t.Errorf("level %d parallelism line = %d, want %d", i+1, got, want)
		}
	}
	// The whole-file locator only knows the last one: the reason chunks exist.
	whole, _ := newLocator(text, lay.lines)
	if got := whole.line("level", "parallelism"); got != 8 {
		t.Errorf("whole-file line = %d; if the decoder now tracks each element, chunking may go", got)
	}
	if chunkLocators([]byte(text), lay.levelLines, 2) != nil {
		t.Error("a header count that disagrees with the decoder must disable chunking")
	}
}

func TestEditDistanceAndSuggest(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "abc", 0}, {"ready_timout", "ready_timeout", 1},
		{"paralelism", "parallelism", 1}, {"hots", "host", 2}, {"kitten", "sitting", 3},
	}
	for _, c := range cases {
		if got := editDistance(c.a, c.b, 3); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := suggest("ready_timout", serviceKeys); got != " (did you mean ready_timeout?)" {
		t.Errorf("suggest = %q", got)
	}
	if got := suggest("zzzzzzzz", serviceKeys); got != "" {
		t.Errorf("suggest for a far word = %q, want none", got)
	}
}
