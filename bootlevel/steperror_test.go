package bootlevel

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"nightshift/launchplan"
)

func TestStepErrorFormat(t *testing.T) {
	cause := errors.New("dial tcp: refused")
	cases := []struct {
		name string
		err  *StepError
		want string
	}{
		{"exit code with tail", &StepError{Service: "web", Level: 2, Step: StepReady, ExitCode: 3, Tail: []string{"a", "b"}, LogPath: "/l/web.log"},
			"service \"web\" (level 2) step ready failed: exit code 3; last output:\n  a\n  b\nfull log: /l/web.log"},
		{"error only", &StepError{Service: "db", Level: 1, Step: StepAcquire, ExitCode: NoExit, Err: cause},
			`service "db" (level 1) step acquire failed: dial tcp: refused`},
		{"error and exit code", &StepError{Service: "db", Level: 1, Step: StepReady, ExitCode: 2, Err: errors.New("not ready within 5s after 3 attempts"), LogPath: "/x"},
			"service \"db\" (level 1) step ready failed: not ready within 5s after 3 attempts, exit code 2\nfull log: /x"},
		{"nothing known", &StepError{Service: "db", Level: 1, Step: StepBoot}, `service "db" (level 1) step boot failed: unknown error`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	se := &StepError{Err: cause}
	if !errors.Is(se, cause) {
		t.Error("StepError does not unwrap")
	}
}

func TestLoadRunPlan(t *testing.T) {
	p := plan([]launchplan.Service{service("a")})
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadRunPlan(Run{Name: "r", Plan: data})
	if err != nil || got.Levels[0].Services[0].Name != "a" || got.Levels[0].Services[0].BootTimeout != p.Levels[0].Services[0].BootTimeout {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	cases := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", `run "r": no stored plan`},
		{"garbage", "{", `run "r": decode stored plan`},
		{"wrong type", `{"levels":"x"}`, `run "r": decode stored plan`},
		{"nameless service", `{"levels":[{"index":1,"services":[{}]}]}`, "levels[0].services[0]: name is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadRunPlan(Run{Name: "r", Plan: []byte(tc.data)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzLoadRunPlan (seeds in testdata/fuzz/FuzzLoadRunPlan) feeds stored plans, as a damaged store might hold them,
// through the decoder and, when they decode, through Terminate: neither may
// panic, and bad input must come back as an error.
func FuzzLoadRunPlan(f *testing.F) {
	f.Add([]byte(`{"levels":[{"index":1,"services":[{"name":"a","driver":"local"},{"name":"a","driver":"local"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := LoadRunPlan(Run{Name: "fz", Plan: data})
		if err != nil {
			return
		}
		drv := &fakeDriver{}
		e, st := newEngine(t, drv)
		ctx := context.Background()
		if err := st.CreateRun(ctx, Run{Name: "fz", Plan: data, PlanHash: p.Hash, State: RunReady}); err != nil {
			t.Fatal(err)
		}
		_, _ = e.Terminate(ctx, "fz")
		_, _ = e.Verify(ctx, "fz")
	})
}
