package progress

import (
	"bytes"
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
