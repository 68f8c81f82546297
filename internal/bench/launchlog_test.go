package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseLevelTimes(t *testing.T) {
	f, err := os.Open("testdata/launch/two-levels.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseLevelTimes("two-levels.txt", f)
	if err != nil {
		t.Fatal(err)
	}
	want := []LevelTime{{1, 10 * time.Millisecond}, {2, 5 * time.Millisecond}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("level %d: got %v, want %v", i+1, got[i], want[i])
		}
	}
}

func TestParseLevelTimesCases(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []time.Duration
		err      string
	}{
		{"across midnight", "23:59:59.990 L1 level.start: level 1\n00:00:00.010 L1 level.done state=ready\n", []time.Duration{20 * time.Millisecond}, ""},
		{"levels reported out of order", "10:00:00.000 L2 level.start\n10:00:00.100 L2 level.done\n09:00:00.000 L1 level.start\n09:00:00.003 L1 level.done\n",
			[]time.Duration{3 * time.Millisecond, 100 * time.Millisecond}, ""},
		{"no levels", "run b is ready\n", nil, ""},
		{"done without start", "10:00:00.000 L3 level.done\n", nil, "src:1: level 3 is done but never started"},
		{"never finished", "10:00:00.000 L1 level.start: level 1\n", nil, "src: level 1 started but never finished"},
		{"bad time", "10:61:00.000 L1 level.start: level 1\n", nil, "src:1: time \"10:61:00.000\""},
		{"bad level", "10:00:00.000 X1 level.start: level 1\n", nil, "src:1: level \"X1\": want L<n> with n >= 1"},
		{"level zero", "10:00:00.000 L0 level.start: level 1\n", nil, "src:1: level \"L0\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLevelTimes("src", strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("err = %v, want prefix %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i, d := range tc.want {
				if got[i].Duration != d || got[i].Level != i+1 {
					t.Errorf("#%d: got %+v, want level %d %v", i, got[i], i+1, d)
				}
			}
		})
	}
}

func FuzzParseLevelTimes(f *testing.F) {
	f.Add("10:00:00.000 L1 level.start: x\n10:00:00.005 L1 level.done\n")
	f.Add("10:00:00.000 L2 level.done\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseLevelTimes("fuzz", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("error does not name its source: %v", err)
			}
			return
		}
		for _, l := range got {
			if l.Duration < 0 || l.Duration >= 24*time.Hour || l.Level < 1 {
				t.Fatalf("impossible level time %+v", l)
			}
		}
	})
}
