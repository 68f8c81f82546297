package mgmt

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/internal/termtext"
)

// TestWriteDecisionsNamesVictims: the table of decisions says, under each
// decision, which workers a scale-in chose and why (idle, busy and drained,
// or past drain_timeout), and a bad actions column is an error, not a
// silent blank.
func TestWriteDecisionsNamesVictims(t *testing.T) {
	acts := func(a ...DecisionAction) json.RawMessage {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ds := []controller.DecisionRecord{
		{Seq: 3, Time: time.Unix(30, 0), Reason: "queue depth 0: -1; terminate 1 past drain_timeout", Actions: acts(
			DecisionAction{Type: "terminate", IDs: []string{"w3"}, Reason: "drain_timeout 5m0s passed while still busy"})},
		{Seq: 2, Time: time.Unix(20, 0), Reason: "queue depth 2 < low_water 5: -2 (6 -> 4, min 1)", Actions: acts(
			DecisionAction{Type: "terminate", IDs: []string{"w6"}, Reason: "scale in 6 -> 4: idle, newest first"},
			DecisionAction{Type: "drain", IDs: []string{"w5"}, Reason: "scale in 6 -> 4: busy, terminate once idle or after drain_timeout 5m0s"})},
		{Seq: 1, Time: time.Unix(10, 0), Reason: "grow", Error: "boom\x1b[2J", Actions: acts(
			DecisionAction{Type: "launch", Count: 2, LaunchID: "work.1.d1.0", Reason: "grow 4 -> 6"})},
		{Seq: 0, Time: time.Unix(0, 0), Reason: "hold"},
	}
	var out bytes.Buffer
	if err := WriteDecisions(&out, ds, termtext.Line); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"    terminate w3: drain_timeout 5m0s passed while still busy\n",
		"    terminate w6: scale in 6 -> 4: idle, newest first\n",
		"    drain w5: scale in 6 -> 4: busy, terminate once idle or after drain_timeout 5m0s\n",
		"    launch 2 (work.1.d1.0): grow 4 -> 6\n",
		`    error: boom\x1b[2J`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("decisions lack %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != 9 {
		t.Errorf("want 4 decisions, 4 actions and 1 error line:\n%s", got)
	}
	bad := []controller.DecisionRecord{{Seq: 7, Actions: json.RawMessage(`{"not":"a list"}`)}}
	if err := WriteDecisions(&bytes.Buffer{}, bad, termtext.Line); err == nil || !strings.Contains(err.Error(), "decision 7: actions") {
		t.Errorf("bad actions: err %v, want one naming decision 7", err)
	}
}
