package bootlevel

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"nightshift/internal/redact"
	"nightshift/launchplan"
)

// TestSecretsSeedRedactionEverywhere: a value the Secrets hook knows, and a
// password a service exports under a plain key's URL, are scrubbed from the
// events, the step log and the error, and the driver gets the same
// redactor, which has learnt the exported password too.
func TestSecretsSeedRedactionEverywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const seeded, exported = "seeded-run-secret-0001", "exported-pw-0002"
		shared := redact.NewRedactor(seeded)
		var got *redact.Redactor
		drv := &fakeDriver{script: func(ctx context.Context, req StepRequest) (StepResult, error) {
			switch {
			case req.Service.Name == "db" && req.Step == StepBoot:
				return StepResult{Outputs: map[string]string{"dsn": "postgres://app:" + exported + "@db/x"}}, nil
			case req.Service.Name == "web" && req.Step == StepBoot:
				got = req.Redactor
				return StepResult{ExitCode: 1, Tail: []string{"printed " + seeded, "and " + exported}}, nil
			}
			return StepResult{}, nil
		}}
		e, st := newEngine(t, drv)
		e.Secrets = func(run string) *redact.Redactor { return shared }
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{service("db")}, []launchplan.Service{service("web")}), LaunchOptions{Run: "sec"})
		if err == nil {
			t.Fatal("launch succeeded; web's boot was scripted to fail")
		}
		if got != shared {
			t.Fatal("the driver did not get the run's redactor")
		}
		if s := got.String(exported); s != redact.Marker {
			t.Fatalf("the redactor did not learn the exported password: %q", s)
		}
		log, _ := os.ReadFile(filepath.Join(e.Home, "runs", "sec", "logs", "web.log"))
		texts := []string{err.Error(), string(log), st.service(t, "sec", "web").Error}
		for _, ev := range st.eventsOf("sec") {
			texts = append(texts, ev.Message)
		}
		for _, s := range texts {
			if strings.Contains(s, seeded) || strings.Contains(s, exported) {
				t.Errorf("a secret leaked: %q", s)
			}
		}
		if !strings.Contains(err.Error(), "printed "+redact.Marker) {
			t.Errorf("error lacks the redacted tail: %v", err)
		}
	})
}

// TestStepLogsArePrivate: the engine creates service logs 0600 in a 0700
// directory, and tightens what an older version left 0644 and 0755.
func TestStepLogsArePrivate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := newEngine(t, &fakeDriver{})
		logs := filepath.Join(e.Home, "runs", "modes", "logs")
		if err := os.MkdirAll(logs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(logs, "old.log"), []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Launch(t.Context(), plan([]launchplan.Service{service("old"), service("new")}), LaunchOptions{Run: "modes"}); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(logs); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("log directory is %v (err %v), want 0700", st.Mode().Perm(), err)
		}
		for _, n := range []string{"old", "new"} {
			st, err := os.Stat(filepath.Join(logs, n+".log"))
			if err != nil {
				t.Fatal(err)
			}
			if m := st.Mode().Perm(); m != 0o600 {
				t.Errorf("%s.log is %v, want 0600", n, m)
			}
		}
	})
}
