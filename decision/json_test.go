package decision

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecisionJSONRoundTrip(t *testing.T) {
	d := Decision{
		Engine: "queuelen",
		Actions: []Action{
			Terminate{IDs: []string{"a"}, Reason: "unhealthy: a missing"},
			Drain{IDs: []string{"b", "c"}, Reason: "scale in"},
			Launch{Count: 2, Spec: LaunchSpec{Deployable: "w", Vars: map[string]string{"k": "v"}}, Reason: "grow 1 -> 3"},
		},
		Reason: "queue depth 240 (ready+unacked, mgmt api) > high_water 100: +1 (3 -> 4, max 6)",
		Target: 3, Scaled: true, Stable: false,
	}
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Decision
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if !reflect.DeepEqual(d, back) {
		t.Fatalf("round trip:\n%+v\n%+v", d, back)
	}
}

func TestDecodeDecisionErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"reason":"x","actions":[{"type":"launch"}]}`, "decision: actions[0] (launch): count: must be at least 1, got 0"},
		{`{"reason":"x","actions":[{"type":"launch","count":1,"ids":["a"]}]}`, "decision: actions[0] (launch): ids: not allowed on a launch"},
		{`{"reason":"x","actions":[{"type":"launch","count":1},{"type":"terminate"}]}`, "decision: actions[1] (terminate): ids: required"},
		{`{"reason":"x","actions":[{"type":"drain","ids":["a",""]}]}`, "decision: actions[0] (drain): ids[1]: empty"},
		{`{"reason":"x","actions":[{"type":"drain","ids":["a"],"count":2}]}`, "decision: actions[0] (drain): count and spec are only allowed on a launch"},
		{`{"reason":"x","actions":[{"count":2}]}`, "decision: actions[0]: type: required (launch, terminate or drain)"},
		{`{"reason":"x","actions":[{"type":"reboot","ids":["a"]}]}`, "decision: actions[0] (reboot): type: unknown (want launch, terminate or drain)"},
		{`{"reason":"x","acions":[]}`, `decision: json: unknown field "acions"`},
		{`{"reason":"x","actions":[{"type":"launch","count":"2"}]}`, "decision: json: cannot unmarshal string into Go struct field wireAction.actions.count of type int"},
		{`{"reason":"x","target":-1}`, "decision: target: -1 must not be negative"},
		{`{"reason":"x"} {"reason":"y"}`, "decision: trailing data after the JSON object"},
		{``, "decision: EOF"},
	}
	for _, tc := range cases {
		_, _, err := DecodeDecision([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("DecodeDecision(%s)\n error %v\n want  %s", tc.in, err, tc.want)
		}
	}
}
