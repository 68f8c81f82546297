package psutil

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// A real line (kernel 5.x, `sleep 300`), fields 1-52.
const sleepStat = "4242 (sleep) S 4241 4241 4100 34816 4242 4194304 101 0 0 0 7 3 0 0 20 0 1 0 313390 " +
	"5763072 129 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	cases := []struct {
		name, line string
		want       stat
		err        string
	}{
		{name: "sleep", line: sleepStat,
			want: stat{ppid: 4241, pgid: 4241, utime: 7, stime: 3, threads: 1, start: 313390, rssPages: 129}},
		{name: "comm with spaces and parens", line: strings.Replace(sleepStat, "(sleep)", "(a) b (c)", 1),
			want: stat{ppid: 4241, pgid: 4241, utime: 7, stime: 3, threads: 1, start: 313390, rssPages: 129}},
		{name: "no trailing newline", line: strings.TrimSuffix(sleepStat, "\n"),
			want: stat{ppid: 4241, pgid: 4241, utime: 7, stime: 3, threads: 1, start: 313390, rssPages: 129}},
		{name: "cut after rss", line: sleepStat[:strings.Index(sleepStat, " 1844674")],
			want: stat{ppid: 4241, pgid: 4241, utime: 7, stime: 3, threads: 1, start: 313390, rssPages: 129}},
		{name: "empty", line: "", err: "stat: no fields after (comm)"},
		{name: "no comm", line: "4242 sleep S 1 2 3", err: "stat: no fields after (comm)"},
		{name: "truncated", line: "4242 (sleep) S 4241 4241 4100", err: "stat: field rss: missing"},
		{name: "negative rss", line: strings.Replace(sleepStat, " 129 ", " -129 ", 1), err: `stat: field rss: "-129" is not a non-negative integer`},
		{name: "bad ppid", line: strings.Replace(sleepStat, "S 4241", "S x41", 1), err: `stat: field ppid: "x41"`},
		{name: "overflow utime", line: strings.Replace(sleepStat, " 7 3 ", " 99999999999999999999 3 ", 1), err: "stat: field utime:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseStat([]byte(c.line))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("parseStat = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestParseStatOwnProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	st, err := parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() || st.threads < 1 || st.rssPages == 0 || st.start == 0 {
		t.Errorf("own stat = %+v (ppid %d)", st, os.Getppid())
	}
}

func TestAppendPIDs(t *testing.T) {
	cases := []struct {
		in   string
		want []int
		err  string
	}{
		{"", nil, ""},
		{"12 345 ", []int{12, 345}, ""},
		{"7\n", []int{7}, ""},
		{"12 x4", []int{12}, `children: "x4" is not a pid`},
		{"0", nil, `children: "0" is not a pid`},
		{"99999999", nil, "is not a pid"},
	}
	for _, c := range cases {
		got, err := appendPIDs(nil, []byte(c.in))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) || !slices.Equal(got, c.want) {
			t.Errorf("appendPIDs(%q) = %v, %v; want %v, %q", c.in, got, err, c.want, c.err)
		}
	}
}

// FuzzParseStat: any bytes give a stat or an error naming the field, never
// a panic; a parsed line keeps its numbers when comm changes.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte(sleepStat))
	f.Add([]byte("1 ((x)) R 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"))
	f.Add([]byte("1 (x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "stat: ") {
				t.Fatalf("error %q does not say where it came from", err)
			}
			return
		}
		i := strings.LastIndexByte(string(b), ')')
		renamed := append([]byte("9 (a (b) c)"), b[i+1:]...)
		if again, err := parseStat(renamed); err != nil || again != st {
			t.Fatalf("same fields after another comm: %+v, %v; want %+v", again, err, st)
		}
		if st.threads < 0 || st.ppid < 0 || st.pgid < 0 {
			t.Fatalf("negative field from %q: %+v", b, st)
		}
	})
}

func FuzzAppendPIDs(f *testing.F) {
	f.Add([]byte("12 345 "))
	f.Add([]byte("1\n2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := appendPIDs(nil, b)
		for _, pid := range got {
			if pid <= 0 || pid > 1<<22 {
				t.Fatalf("appendPIDs(%q) gave pid %d", b, pid)
			}
		}
		if err != nil && !strings.HasPrefix(err.Error(), "children: ") {
			t.Fatalf("error %q does not say where it came from", err)
		}
	})
}
