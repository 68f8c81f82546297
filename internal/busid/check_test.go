package busid_test

import (
	"errors"
	"strings"
	"testing"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
)

func TestRoleOf(t *testing.T) {
	for _, c := range []struct{ user, role string }{
		{"ns.r1.provisioner.provisioner", busid.RoleProvisioner},
		{"ns.r1.controller.ctl2", busid.RoleController},
		{"ns.r1.mgmt", busid.RoleMgmt},
		{"ns.r1.worker.sleeper-ab-0", busid.RoleWorker},
		{"ns.r1.worker.job.with.dots-ab-0", busid.RoleWorker},
		{"ns.r1.provisioner", ""}, // a daemon's name carries its service
		{"ns.r1.mgmt.x", ""},
		{"ns.r1.sim", busid.RoleSimulator},
		{"ns.r1.sim.x", ""},
		{"ns.r2.mgmt", ""}, // another run's
		{"ns.r1.admin.x", ""},
		{"guest", ""},
		{"", ""},
	} {
		if got := busid.RoleOf("r1", c.user); got != c.role {
			t.Errorf("RoleOf(r1, %q) = %q, want %q", c.user, got, c.role)
		}
	}
	if w := busid.WorkerUser("r1", "i-1"); busid.RoleOf("r1", w) != busid.RoleWorker || !strings.HasPrefix(w, busid.WorkerPrefix("r1")) {
		t.Errorf("WorkerUser %q", w)
	}
}

func TestOriginChecks(t *testing.T) {
	const run = "r1"
	ctl := busid.ComponentUser(run, busid.RoleController, "controller")
	prov := busid.ComponentUser(run, busid.RoleProvisioner, "provisioner")
	mgmt := busid.MgmtUser(run)
	w1, w2 := busid.WorkerUser(run, "i-1"), busid.WorkerUser(run, "i-2")
	strict := busid.Origin{Run: run, Self: prov}
	shared := busid.Origin{Run: run, Self: "guest"}
	type tc struct {
		name   string
		o      busid.Origin
		check  func(busid.Origin) error
		accept bool
	}
	from := func(user string, roles ...string) func(busid.Origin) error {
		return func(o busid.Origin) error { return o.From("provisioner.launch", user, roles...) }
	}
	hb := func(user, about string) func(busid.Origin) error {
		return func(o busid.Origin) error { return o.Heartbeat("sitter.heartbeat", user, about) }
	}
	cmdRoles := []string{busid.RoleController, busid.RoleMgmt}
	for _, c := range []tc{
		{"controller commands the provisioner", strict, from(ctl, cmdRoles...), true},
		{"mgmt commands the provisioner", strict, from(mgmt, cmdRoles...), true},
		{"a worker may not", strict, from(w1, cmdRoles...), false},
		{"the provisioner may not command itself", strict, from(prov, cmdRoles...), false},
		{"another run's controller may not", strict, from("ns.r2.controller.controller", cmdRoles...), false},
		{"no user_id", strict, from("", cmdRoles...), false},
		{"shared identity: own user", shared, from("guest", cmdRoles...), true},
		{"shared identity: another user", shared, from("someone", cmdRoles...), false},
		{"shared identity: no user_id", shared, from("", cmdRoles...), false},
		{"shared identity: mgmt's own user", shared, from(mgmt, cmdRoles...), true},
		{"shared identity: a worker's own user", shared, from(w1, cmdRoles...), false},
		{"heartbeat about itself", strict, hb(w1, "i-1"), true},
		{"heartbeat about another worker", strict, hb(w2, "i-1"), false},
		{"heartbeat from the controller", strict, hb(ctl, "i-1"), false},
		{"heartbeat without user_id", strict, hb("", "i-1"), false},
		{"shared heartbeat", shared, hb("guest", "i-1"), true},
		{"shared heartbeat from a stranger", shared, hb("x", "i-1"), false},
		{"shared: a worker's own heartbeat", shared, hb(w1, "i-1"), true},
		{"shared: another worker's heartbeat", shared, hb(w2, "i-1"), false},
	} {
		err := c.check(c.o)
		if (err == nil) != c.accept {
			t.Errorf("%s: err %v, want accept=%v", c.name, err, c.accept)
			continue
		}
		if err != nil && (!errors.Is(err, amqpbus.ErrReject) || !strings.Contains(err.Error(), "field user_id")) {
			t.Errorf("%s: %v: want an ErrReject naming the user_id field", c.name, err)
		}
	}
}

func TestSimHeartbeat(t *testing.T) {
	o := busid.Origin{Run: "r1", Self: busid.ComponentUser("r1", busid.RoleController, "controller")}
	sim := busid.SimulatorUser("r1")
	for _, c := range []struct {
		name, user, key, job, id string
		accept                   bool
		field                    string
	}{
		{"the simulator about its job", sim, "heartbeat.load.i-1", "load", "i-1", true, ""},
		{"another run's simulator", "ns.r2.sim", "heartbeat.load.i-1", "load", "i-1", false, "user_id"},
		{"a worker", busid.WorkerUser("r1", "i-1"), "heartbeat.load.i-1", "load", "i-1", false, "user_id"},
		{"mgmt", busid.MgmtUser("r1"), "heartbeat.load.i-1", "load", "i-1", false, "user_id"},
		{"no user_id", "", "heartbeat.load.i-1", "load", "i-1", false, "user_id"},
		{"body names another job than the key", sim, "heartbeat.load.i-1", "real", "i-1", false, "job"},
		{"body names another instance than the key", sim, "heartbeat.load.i-1", "load", "i-2", false, "job"},
	} {
		err := o.SimHeartbeat("sitter.heartbeat", c.user, c.key, c.job, c.id)
		if (err == nil) != c.accept {
			t.Errorf("%s: err %v, want accept=%v", c.name, err, c.accept)
			continue
		}
		if err != nil && (!errors.Is(err, amqpbus.ErrReject) || !strings.Contains(err.Error(), "field "+c.field)) {
			t.Errorf("%s: %v: want an ErrReject naming field %s", c.name, err, c.field)
		}
	}
}

func TestSimulatorPermissionsNameOnlySimulatedJobs(t *testing.T) {
	p := busid.SimulatorPermissions("r1", []string{"load", "a.b"})
	if len(p.Topics) != 1 || p.Topics[0].Write != `^heartbeat\.(load|a\.b)\.[^.]+$` || p.Read != "^$" || p.Configure != "^$" || p.Tags != "" {
		t.Fatalf("SimulatorPermissions = %+v", p)
	}
	if none := busid.SimulatorPermissions("r1", nil); none.Topics[0].Write != "^$" {
		t.Fatalf("no simulated jobs: topic write %q, want none", none.Topics[0].Write)
	}
}

func TestReserved(t *testing.T) {
	for q, want := range map[string]bool{
		"nightshift.r1.dead": true, "nightshift.r1.dlx": true, "nightshift.r1.events": true,
		"nightshift.r1.cmd.provisioner": true, "nightshift.r1.sub.x": true,
		"nightshift.r1.work": false, "nightshift.r2.dead": false, "jobs": false,
	} {
		if got := busid.Reserved("r1", q); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestPasswordIsStablePerUserAndKey(t *testing.T) {
	a, b := busid.Password([]byte("k"), "u1"), busid.Password([]byte("k"), "u1")
	if a != b || len(a) < 24 {
		t.Fatalf("Password not stable or too short: %q %q", a, b)
	}
	if busid.Password([]byte("k"), "u2") == a || busid.Password([]byte("k2"), "u1") == a {
		t.Fatal("Password must differ by user and by key")
	}
}

func TestWithUserAndVHost(t *testing.T) {
	got, err := busid.WithUser("amqp://admin:secret@h:5672/v%2F1", "ns.r.mgmt", "p@ss")
	if err != nil || strings.Contains(got, "admin") || strings.Contains(got, "secret") || !strings.Contains(got, "ns.r.mgmt:p%40ss@h:5672") {
		t.Fatalf("WithUser = %q, %v", got, err)
	}
	if v := busid.VHost(got); v != "v/1" {
		t.Errorf("VHost = %q", v)
	}
	if v := busid.VHost("amqp://u:p@h:5672/"); v != "/" {
		t.Errorf("VHost of / = %q", v)
	}
	if _, err := busid.WithUser("not a url", "u", "p"); err == nil {
		t.Error("WithUser accepted a bad URL")
	}
	// A cluster's list: every node gets the user, none keeps the admin.
	got, err = busid.WithUser("amqp://admin:secret@h:5701/v,amqp://admin:secret@h:5702/v", "ns.r.mgmt", "pw")
	if want := "amqp://ns.r.mgmt:pw@h:5701/v,amqp://ns.r.mgmt:pw@h:5702/v"; err != nil || got != want {
		t.Fatalf("WithUser of a list = %q, %v; want %q", got, err, want)
	}
	if v := busid.VHost(got); v != "v" {
		t.Errorf("VHost of a list = %q", v)
	}
	if _, err := busid.WithUser("amqp://admin:secret@h:5701/,amqp:///", "u", "p"); err == nil {
		t.Error("WithUser accepted a list with a bad URL")
	}
}
