package progress

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/redact"
)

// TestEventsAreRedactedAndEscaped: a step's message carrying the run's
// secret and terminal escape sequences reaches neither view raw; the live
// view's own cursor movements are the only escapes it writes.
func TestEventsAreRedactedAndEscaped(t *testing.T) {
	const secret = "0ddba11c0ffee0ddba11"
	red := redact.NewRedactor(secret)
	ev := bootlevel.Event{
		Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Level: 1, Service: "web\u202e", Kind: bootlevel.EventStepFailed,
		Step: bootlevel.StepBoot, State: "failed",
		Message: "boot said \x1b]0;pwned\a\x1b[2J key=" + secret + "\r12:00:00 L1 web ready\nsecond line",
	}
	for _, live := range []bool{false, true} {
		var out bytes.Buffer
		p := New(&out, live, red)
		p.Event(bootlevel.Event{Time: ev.Time, Level: 1, Service: "web\u202e", Kind: bootlevel.EventServiceState, State: "booting"})
		p.Event(ev)
		got := out.String()
		for _, bad := range []string{secret, "\x1b]", "\x1b[2J", "\a", "\r", "\u202e"} {
			if strings.Contains(got, bad) {
				t.Errorf("live=%v: output holds %q:\n%q", live, bad, got)
			}
		}
		if !strings.Contains(got, `\x1b]0;pwned\a`) || !strings.Contains(got, "key=xxxxx") {
			t.Errorf("live=%v: output does not show the escaped, redacted message:\n%q", live, got)
		}
		if live {
			continue
		}
		if n := strings.Count(got, "\n"); n != 2 {
			t.Errorf("plain view wrote %d lines for 2 events (a newline in a message must not start a line):\n%s", n, got)
		}
	}
}

// TestRetriesUpdateOneLine: a run of identical ready failures is one
// service row on a terminal, its note following the running count, and
// nothing at all in plain output beyond what history stores.
func TestRetriesUpdateOneLine(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	events := []bootlevel.Event{
		{Time: at, Level: 1, Service: "db", Kind: bootlevel.EventServiceState, State: "booting"},
		{Time: at, Level: 1, Service: "db", Kind: bootlevel.EventStepRetry, Step: bootlevel.StepReady, Message: "ready attempt 2 failed: exit code 1; retrying in 1s"},
	}
	for n := 2; n <= 40; n++ {
		events = append(events, bootlevel.Event{Time: at, Level: 1, Service: "db", Kind: bootlevel.EventStepRetry, Step: bootlevel.StepReady, Transient: true,
			Message: "ready attempt " + strconvI(n+1) + " failed: exit code 1; retrying in 1s (" + strconvI(n) + " identical failures since attempt 2)"})
	}
	for _, live := range []bool{false, true} {
		var out bytes.Buffer
		p := New(&out, live, nil)
		for _, ev := range events {
			p.Event(ev)
		}
		got := out.String()
		if !live {
			if n := strings.Count(got, "step.retry"); n != 1 {
				t.Errorf("plain view printed %d retry lines, want the 1 stored:\n%s", n, got)
			}
			continue
		}
		// The last frame, after the final cursor-up-and-clear, is the screen.
		frame := got[strings.LastIndex(got, "\x1b[J")+len("\x1b[J"):]
		if strings.Count(frame, "\n") != 2 || !strings.Contains(frame, "ready attempt 41 failed") {
			t.Errorf("live view's last frame is not one level line and one db line on the latest attempt:\n%q", frame)
		}
	}
}

func strconvI(n int) string { return fmt.Sprint(n) }
