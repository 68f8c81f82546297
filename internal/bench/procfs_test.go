package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     uint64
		err      string
	}{
		{"supervisord", "1234 (supervisord) S 1 1234 1234 0 -1 4194560 1500 0 0 0 17 4 0 0 20 0 1 0 100 30000000 7000 18446744073709551615\n", 21, ""},
		{"name with spaces and parens", "42 (a) b (c)) R 1 42 42 0 -1 0 0 0 0 0 300 200 0 0 20 0 1 0 5 0 0 0\n", 500, ""},
		{"no closing paren", "42 (sitter S 1", 0, "no ')'"},
		{"truncated", "42 (sitter) S 1 42 42 0 -1 0 0 0 0 0 7", 0, "12 fields after the command name, want at least 13"},
		{"utime not a number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 x 2 0 0", 0, "field utime"},
		{"overflow", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 18446744073709551615 1 0 0", 0, "overflows"},
		{"stime not a number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 1 -2 0 0", 0, "field stime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     uint64
		err      string
	}{
		{"normal", "Name:\tsitter\nVmPeak:\t  9000 kB\nVmRSS:\t   25600 kB\nRssAnon:\t 1 kB\n", 25600 * 1024, ""},
		{"kernel thread", "Name:\tkworker\nState:\tI (idle)\n", 0, "no VmRSS line"},
		{"other unit", "VmRSS:\t 25 MB\n", 0, `field VmRSS: "25 MB" is not "N kB"`},
		{"not a number", "VmRSS:\t x kB\n", 0, "field VmRSS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseVmRSS([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParsePIDs(t *testing.T) {
	got, err := ParsePIDs([]byte("101 102 4000 \n"))
	if err != nil || !slices.Equal(got, []int{101, 102, 4000}) {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := ParsePIDs(nil); err != nil || len(got) != 0 {
		t.Errorf("empty: got %v, %v", got, err)
	}
	for _, bad := range []string{"12 x", "0", "-3"} {
		if _, err := ParsePIDs([]byte(bad)); err == nil {
			t.Errorf("ParsePIDs(%q) accepted a non-pid", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"odd median unsorted", ms(9, 1, 5), 50, 5 * time.Millisecond},
		{"even median takes the upper middle", ms(4, 1, 3, 2), 50, 3 * time.Millisecond},
		{"p99 of 1..100", ms(oneTo(100)...), 99, 100 * time.Millisecond},
		{"p50 of 1..100", ms(oneTo(100)...), 50, 51 * time.Millisecond},
		{"p0", ms(3, 2, 1), 0, time.Millisecond},
		{"p100 clamps", ms(3, 2, 1), 100, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Error("Percentile reordered its input")
			}
		})
	}
	if Median(ms(3, 1, 2)) != 2*time.Millisecond {
		t.Error("Median is not the 50th percentile")
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 0 0 0 0 0 5 6 0 0"))
	f.Add([]byte("2 ((x)) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseStatCPU(b)
		if err != nil && !strings.HasPrefix(err.Error(), "proc stat:") {
			t.Fatalf("error does not say which file: %v", err)
		}
		if err != nil && v != 0 {
			t.Fatalf("value %d with error %v", v, err)
		}
	})
}

func oneTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
