package bench

import (
	"math"
	"strings"
	"testing"
)

func pts(sizeCost ...float64) []Point {
	var p []Point
	for i := 0; i+1 < len(sizeCost); i += 2 {
		p = append(p, Point{Size: sizeCost[i], Cost: sizeCost[i+1]})
	}
	return p
}

func TestCheckLinear(t *testing.T) {
	for _, tc := range []struct {
		name       string
		points     []Point
		verdict    string
		spread     float64
		linearFrom float64
	}{
		{"exactly proportional", pts(100, 1, 1000, 10, 10000, 100), GrowthLinear, 1, 0},
		{"noise within 2x", pts(1, 40, 2, 100, 5, 215), GrowthLinear, 1.25, 0},
		{"just under the limit", pts(1, 1, 10, 19.9), GrowthLinear, 1.99, 0},
		{"at the limit is not linear", pts(1, 1, 10, 20), GrowthSuperlinear, 2, 0},
		{"n squared", pts(10, 100, 100, 10000, 1000, 1e6), GrowthSuperlinear, 100, 0},
		{"fixed cost dominates small sizes", pts(10, 5, 100, 12, 1000, 150, 10000, 1500), GrowthSublinear, 0.5 / 0.12, 100},
		{"order of points does not matter", pts(10000, 1500, 10, 5, 1000, 150, 100, 12), GrowthSublinear, 0.5 / 0.12, 100},
		{"constant cost", pts(1, 5, 10, 5, 100, 5), GrowthSublinear, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := CheckLinear(tc.points)
			if err != nil {
				t.Fatal(err)
			}
			if l.Verdict != tc.verdict || math.Abs(l.Spread-tc.spread) > 1e-9 || l.LinearFrom != tc.linearFrom {
				t.Errorf("got %s spread %g linear from %g; want %s spread %g linear from %g",
					l.Verdict, l.Spread, l.LinearFrom, tc.verdict, tc.spread, tc.linearFrom)
			}
			if len(l.Ratios) != len(tc.points) {
				t.Errorf("ratios = %v, want one per point", l.Ratios)
			}
		})
	}
}

func TestCheckLinearRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		points []Point
		want   string
	}{
		{"no points", nil, "need at least 2 sizes, got 0"},
		{"one point", pts(10, 1), "need at least 2 sizes, got 1"},
		{"zero cost", pts(10, 1, 100, 0), "point 2: size 100 and cost 0 must be positive"},
		{"negative size", pts(-1, 1, 100, 3), "point 1: size -1 and cost 1 must be positive"},
		{"NaN cost", pts(1, math.NaN(), 2, 1), "point 1: size 1 and cost NaN must be positive"},
		{"infinite cost", pts(1, math.Inf(1), 2, 1), "point 1: size 1 and cost +Inf must be positive"},
		{"same size twice", pts(10, 1, 10, 2), "all points have the same size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckLinear(tc.points)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
