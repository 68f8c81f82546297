package bootlevel

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"

	"nightshift/launchplan"
)

// TestHostSettingsAreExpandedBeforeAcquire: an ec2 table that takes its
// region and image from globals (-g region=...) must reach Acquire and
// Release expanded, or the driver launches with "${global.region}".
func TestHostSettingsAreExpandedBeforeAcquire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []map[string]any
		drv := &fakeDriver{
			acquire: func(_ context.Context, svc *launchplan.Service) (Host, error) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, svc.EC2)
				return Host{Hostname: "10.0.0.1", InstanceID: "i-1"}, nil
			},
			release: func(svc *launchplan.Service) error {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, svc.EC2)
				return nil
			},
		}
		e, _ := newEngine(t, drv)
		svc := service("broker")
		svc.EC2 = map[string]any{"region": "${global.region}", "image": "${global.ami}", "security_groups": []any{"${global.sg}"}}
		p := plan([]launchplan.Service{svc})
		p.Globals = map[string]string{"region": "eu-west-1", "ami": "ami-123", "sg": "sg-9"}
		if _, err := e.Launch(t.Context(), p, LaunchOptions{Run: "hv"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Terminate(t.Context(), "hv"); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 {
			t.Fatalf("acquire/release saw %d tables, want 2", len(seen))
		}
		for i, tbl := range seen {
			if tbl["region"] != "eu-west-1" || tbl["image"] != "ami-123" {
				t.Errorf("call %d got %v, want expanded region and image", i, tbl)
			}
			if sg, _ := tbl["security_groups"].([]any); len(sg) != 1 || sg[0] != "sg-9" {
				t.Errorf("call %d security_groups %v", i, tbl["security_groups"])
			}
		}
	})
}
