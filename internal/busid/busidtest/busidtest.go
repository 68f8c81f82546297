// Package busidtest gives tests a RabbitMQ node of their own with the
// management API, where broker users may be created: the shared test
// broker has no management API, and users must not be made there.
package busidtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/nsenv"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/builtin/broker"
	"nightshift/launchplan"
)

// PrivateBroker boots a RabbitMQ node of its own for run (the shared
// broker has no management API, and users must not be made there) and
// returns the broker service's attributes: url and management_url (the
// node's admin) and mgmt_url (mgmt's own user, created by the ready step).
func PrivateBroker(t *testing.T, run string) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a RabbitMQ node (~10 s)")
	}
	ty := broker.New(nil)
	if _, err := os.Stat(ty.ServerPath); err != nil {
		if os.Getenv(nsenv.TestStrict) == "1" {
			t.Fatal("rabbitmq-server not installed")
		}
		t.Skip("rabbitmq-server not installed")
	}
	home := t.TempDir()
	t.Setenv(nsenv.Home, home)
	dir := runlayout.Of(home, run).Work("mq")
	svc := &launchplan.Service{Name: "mq", Type: "broker"}
	req := func(st bootlevel.Step) bootlevel.StepRequest {
		return bootlevel.StepRequest{Run: run, Service: svc, Step: st, WorkDir: dir, LogPath: filepath.Join(dir, "broker.log")}
	}
	ctx := context.Background()
	res, err := ty.Run(ctx, req(bootlevel.StepBoot))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("boot: %+v %v", res, err)
	}
	t.Cleanup(func() { ty.Run(context.Background(), req(bootlevel.StepTerminate)) })
	svc.Attributes = res.Outputs
	for i := 0; ; i++ {
		ready, err := ty.Run(ctx, req(bootlevel.StepReady))
		if err == nil && ready.ExitCode == 0 {
			break
		}
		if i > 240 {
			t.Fatalf("node never became ready: %+v %v", ready, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return res.Outputs
}
