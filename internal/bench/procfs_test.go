package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

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

func oneTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
