package mgmtbus_test

import (
	"context"
	"slices"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/busid"
	"nightshift/internal/busid/busidtest"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/mgmt/mgmtbus"
)

type services []bootlevel.ServiceRecord

func (s services) Services(context.Context, string) ([]bootlevel.ServiceRecord, error) { return s, nil }

// TestBrokerUserSweep: teardown's sweep lists (dry run) and deletes every
// broker user of the run, and only the run's; a broker that no longer
// answers, or none with a management API, leaves nothing to sweep.
func TestBrokerUserSweep(t *testing.T) {
	run := amqptest.UniqueName(t, "sw")
	attrs := busidtest.PrivateBroker(t, run)
	ctx := context.Background()
	admin := busid.Admin{URL: attrs["management_url"]}
	left := []string{busid.WorkerUser(run, "work-ab-0"), busid.ComponentUser(run, busid.RoleController, "controller")}
	other := busid.WorkerUser(run+"x", "work-ab-0")
	for _, u := range append(slices.Clone(left), other) {
		if err := admin.EnsureUser(ctx, u, "pw", busid.WorkerPermissions(run, "work", "work-ab-0", "")); err != nil {
			t.Fatal(err)
		}
	}
	sw := mgmtbus.BrokerUserSweeper{Store: services{{Name: "broker", Attributes: attrs}}}
	want := append(slices.Clone(left), busid.MgmtUser(run)) // the ready step made mgmt's
	slices.Sort(want)
	check := func(what string, got []string, want []string) {
		t.Helper()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	d, rem, err := sw.Sweep(ctx, run, true)
	if err != nil || len(rem) != 0 {
		t.Fatalf("dry run: %v %v %v", d, rem, err)
	}
	check("dry run lists", d, want)
	if us, _ := admin.Users(ctx, busid.RunPrefix(run)); len(us) != len(want) {
		t.Fatalf("dry run deleted users: %v left", us)
	}
	d, rem, err = sw.Sweep(ctx, run, false)
	if err != nil || len(rem) != 0 {
		t.Fatalf("sweep: %v %v %v", d, rem, err)
	}
	check("sweep deletes", d, want)
	if us, _ := admin.Users(ctx, busid.RunPrefix(run)); len(us) != 0 {
		t.Errorf("users left after the sweep: %v", us)
	}
	if us, _ := admin.Users(ctx, other); len(us) != 1 {
		t.Errorf("the sweep deleted another run's user")
	}
	if d, rem, err := sw.Sweep(ctx, run, false); err != nil || len(d)+len(rem) != 0 {
		t.Errorf("second sweep: %v %v %v", d, rem, err)
	}
	gone := mgmtbus.BrokerUserSweeper{Store: services{{Name: "broker", Attributes: map[string]string{
		"url": attrs["url"], "management_url": "http://u:p@127.0.0.1:1"}}}}
	if d, rem, err := gone.Sweep(ctx, run, false); err != nil || len(d)+len(rem) != 0 {
		t.Errorf("unreachable broker: %v %v %v, want nothing to sweep", d, rem, err)
	}
	none := mgmtbus.BrokerUserSweeper{Store: services{{Name: "broker", Attributes: map[string]string{"url": attrs["url"]}}}}
	if d, rem, err := none.Sweep(ctx, run, false); err != nil || len(d)+len(rem) != 0 {
		t.Errorf("no management API: %v %v %v", d, rem, err)
	}
}
