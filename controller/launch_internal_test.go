package controller

import (
	"encoding/json"
	"testing"

	"nightshift/internal/jobspec"
)

// TestLaunchRequest: a pending launch is sent as the job's spec digest and
// the engine's labels as stored; a launch stored by an older controller
// (a whole spec) goes without labels rather than failing.
func TestLaunchRequest(t *testing.T) {
	j := Job{Name: "web", Driver: DriverLocal, Worker: map[string]any{"command": []any{"/bin/worker"}}}
	digest, err := jobspec.Spec{Driver: j.Driver, Worker: j.Worker}.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name           string
		spec           string
		wantDeployable string // "" means no engine labels
	}{
		{"engine labels", `{"deployable":"big","vars":{"k":"v"}}`, "big"},
		{"no labels", `{}`, ""},
		{"nothing stored", ``, ""},
		{"a whole spec from an older controller", `{"driver":"local","worker":{"command":["/bin/worker"]},"engine":{"deployable":"big"}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := Launch{LaunchID: "web.e.d1.0", Job: "web", Count: 2, Spec: json.RawMessage(tc.spec)}
			req, err := launchRequest(j, l)
			if err != nil {
				t.Fatal(err)
			}
			if req.LaunchID != l.LaunchID || req.Job != "web" || req.Count != 2 || req.SpecDigest != digest {
				t.Fatalf("request %+v, want launch %s of 2 with digest %s", req, l.LaunchID, digest)
			}
			switch {
			case tc.wantDeployable == "" && req.Engine != nil:
				t.Fatalf("engine labels %+v, want none", req.Engine)
			case tc.wantDeployable != "" && (req.Engine == nil || req.Engine.Deployable != tc.wantDeployable):
				t.Fatalf("engine labels %+v, want deployable %s", req.Engine, tc.wantDeployable)
			}
		})
	}
}
