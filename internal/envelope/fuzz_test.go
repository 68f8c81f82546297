package envelope

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every failure is a
// *DecodeError worded "message...", and that anything it accepts survives a
// marshal/decode round trip unchanged. DecodeReply must fail the same way
// (a *DecodeError, no body) and accept whatever Decode accepts: it only
// relaxes unknown body fields, of the reply type alone.
func FuzzDecode(f *testing.F) {
	f.Add(msg("launch", 1, `{"deployable_type":"web","count":2}`))
	f.Add(msg("reply", 1, `{"ok":true,"newer":1}`))
	f.Add(msg("terminate_all", 1, `{"reason":"x"}`))
	f.Add([]byte(`{"type":"launch"`))
	reg := testRegistry()
	f.Fuzz(func(t *testing.T, data []byte) {
		renv, rbody, rerr := reg.DecodeReply(data, 4096, "reply")
		if rerr != nil {
			var de *DecodeError
			if !errors.As(rerr, &de) || !strings.HasPrefix(rerr.Error(), "message") || rbody != nil {
				t.Fatalf("DecodeReply error %T %q (body %v), want a *DecodeError worded \"message...\" and no body", rerr, rerr, rbody)
			}
		}
		env, body, err := reg.Decode(data, 4096)
		if err == nil && rerr != nil {
			t.Fatalf("Decode accepts a message DecodeReply refuses: %v", rerr)
		}
		if err != nil && rerr == nil && renv.Type != "reply" {
			t.Fatalf("DecodeReply accepts a %q message Decode refuses: %v", renv.Type, err)
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "message") {
				t.Fatalf("error %q does not start with \"message\"", err)
			}
			if body != nil {
				t.Fatalf("body %v returned with error", body)
			}
			return
		}
		if body == nil {
			t.Fatal("nil body without error")
		}
		again, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		env2, _, err := reg.Decode(again, 0)
		if err != nil {
			t.Fatalf("accepted message fails after round trip: %v\n%s", err, again)
		}
		if env2.ID != env.ID || env2.Type != env.Type || !env2.Time.Equal(env.Time) {
			t.Fatalf("round trip changed envelope: %+v vs %+v", env, env2)
		}
	})
}
