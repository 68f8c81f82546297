package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func names(ss []Scenario) string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

func TestSelect(t *testing.T) {
	all := []Scenario{{Name: "boot"}, {Name: "sitter"}, {Name: "controller"}}
	for _, tc := range []struct{ list, want, err string }{
		{"", "boot,sitter,controller", ""},
		{"all", "boot,sitter,controller", ""},
		{"sitter", "sitter", ""},
		{"controller, boot", "boot,controller", ""}, // the harness's order, not the flag's
		{"boot,boot", "boot", ""},
		{"bot", "", `-run: unknown scenario "bot" (known: boot, sitter, controller)`},
		{"boot,", "", `-run: unknown scenario ""`},
	} {
		got, err := Select(all, tc.list)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("Select(%q) err = %v, want %q", tc.list, err, tc.err)
			}
			continue
		}
		if err != nil || names(got) != tc.want {
			t.Errorf("Select(%q) = %s, %v; want %s", tc.list, names(got), err, tc.want)
		}
	}
}

func TestExecute(t *testing.T) {
	curve := []Series{{Name: "c", Points: pts(1, 1, 2, 2)}, {Name: "bad", Points: pts(1, 1)}}
	for _, tc := range []struct {
		name         string
		res          Result
		err          error
		status, why  string
		wantFigures  int
		wantVerdicts []string
	}{
		{"measured", Result{Figures: []Figure{{Name: "x"}}, Series: curve}, nil, StatusMeasured, "", 1, []string{GrowthLinear, ""}},
		{"component not ready", Result{}, fmt.Errorf("boot: %w", NotMeasured("go build %s failed", "./cmd/sitter")), StatusNotMeasured, "go build ./cmd/sitter failed", 0, nil},
		{"partial result kept", Result{Figures: []Figure{{Name: "own"}}}, NotMeasured("peer missing"), StatusNotMeasured, "peer missing", 1, nil},
		{"failure", Result{}, errors.New("sitter exited during start-up"), StatusFailed, "sitter exited during start-up", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := clockwork.NewFakeClock()
			s := Scenario{Name: "s", Title: "S", Reproduce: "go run ./cmd/nsbench -run s", Run: func(context.Context) (Result, error) {
				clock.Advance(3 * time.Second)
				return tc.res, tc.err
			}}
			o := Execute(context.Background(), clock, s)
			if o.Status != tc.status || o.Reason != tc.why {
				t.Errorf("status %q reason %q; want %q %q", o.Status, o.Reason, tc.status, tc.why)
			}
			if o.Elapsed != 3*time.Second {
				t.Errorf("elapsed %v, want the 3s the scenario took", o.Elapsed)
			}
			if len(o.Figures) != tc.wantFigures {
				t.Errorf("figures %d, want %d", len(o.Figures), tc.wantFigures)
			}
			for i, v := range tc.wantVerdicts {
				got := ""
				if o.Series[i].Linearity != nil {
					got = o.Series[i].Linearity.Verdict
				}
				if got != v {
					t.Errorf("series %d verdict %q, want %q", i, got, v)
				}
			}
			if len(tc.wantVerdicts) > 1 && !strings.Contains(o.Series[1].Problem, "need at least 2 sizes") {
				t.Errorf("series with one point: problem %q", o.Series[1].Problem)
			}
		})
	}
}
