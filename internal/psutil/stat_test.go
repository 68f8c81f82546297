package psutil

import (
	"slices"
	"strings"
	"testing"
)

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
