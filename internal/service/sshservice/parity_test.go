package sshservice_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/service/builtin"
	"nightshift/internal/service/localservice"
	"nightshift/internal/service/sshservice"
	"nightshift/internal/store/runstore"
	"nightshift/internal/testsupport/sshtest"
	"nightshift/launchplan"
)

// TestDriversExportTheSameAttributes boots one plan through the engine,
// once on the local driver and once on the ssh driver (a real sshd, so
// the ec2 driver's remote path too), and requires the same attributes:
// numbers as written, and a later level that sees them the same way. A
// duplicate key fails the boot on both.
func TestDriversExportTheSameAttributes(t *testing.T) {
	srv := sshtest.Start(t)
	prog, err := filepath.Abs(filepath.Join("testdata", "parity", "exporter.sh"))
	if err != nil {
		t.Fatal(err)
	}
	wantDB := map[string]string{
		"port": "5672", "ratio": "0.10", "scale": "1.50", "big": "123456789012345678901",
		"exp": "2500", "tiny": "0.0000001", "neg": "-0.0", "on": "true", "off": "false",
		"url": "amqp://h:5672/x?a=1", "uni": "grüße",
	}

	got := map[string]map[string]map[string]string{}
	for _, driver := range []string{launchplan.DriverLocal, launchplan.DriverSSH} {
		attrs, err := bootPlan(t, srv, driver, prog, "numbers")
		if err != nil {
			t.Fatalf("%s driver: launch: %v", driver, err)
		}
		got[driver] = attrs
	}
	local, ssh := got[launchplan.DriverLocal], got[launchplan.DriverSSH]
	if !reflect.DeepEqual(local, ssh) {
		t.Fatalf("drivers disagree:\n local %v\n ssh   %v", local, ssh)
	}
	if !reflect.DeepEqual(local["db"], wantDB) {
		t.Errorf("db exported %v, want %v", local["db"], wantDB)
	}
	if want := "0.10 1.50 2500"; local["app"]["seen"] != want {
		t.Errorf("app saw %q, want %q", local["app"]["seen"], want)
	}

	for _, driver := range []string{launchplan.DriverLocal, launchplan.DriverSSH} {
		_, err := bootPlan(t, srv, driver, prog, "dup")
		if err == nil || !strings.Contains(err.Error(), `key "port": given twice`) {
			t.Errorf("%s driver: duplicate key: err = %v, want it refused", driver, err)
		}
	}
}

// bootPlan launches a two-level plan on driver and returns each service's
// exported attributes (the built-in ones, which name the host, left out).
// The run is terminated before the test ends.
func bootPlan(t *testing.T, srv *sshtest.Server, driver, prog, mode string) (map[string]map[string]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	home := t.TempDir()
	var ssh string
	if driver == launchplan.DriverSSH {
		c := srv.SSH(filepath.Join(home, "stage"))
		ssh = fmt.Sprintf("ssh = { host = %q, port = %d, user = %q, key_file = %q, known_hosts_file = %q, stage_dir = %q }",
			c.Host, c.Port, c.User, c.KeyFile, c.KnownHostsFile, c.StageDir)
	}
	src := fmt.Sprintf(`name = "parity"

[defaults]
driver = %q
timeout = "30s"
%s

[[level]]
[level.service.db]
boot = [%q, %q]
exports = ["ratio", "scale", "exp"]

[[level]]
[level.service.app]
boot = [%q, "echo", "${db.ratio}", "${db.scale}", "${db.exp}"]
`, driver, ssh, prog, mode, prog)
	planPath := filepath.Join(home, "plan.toml")
	if err := os.WriteFile(planPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	plan, err := launchplan.Load(planPath, launchplan.Options{Types: builtin.Names()})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	st, err := runstore.Open(ctx, filepath.Join(home, "nightshift.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	eng := &bootlevel.Engine{
		Store: st, Home: home, Log: log,
		Drivers: map[string]bootlevel.Driver{
			launchplan.DriverLocal: localservice.New(log),
			launchplan.DriverSSH:   sshservice.New(home, log),
		},
	}
	run := "parity-" + driver + "-" + mode
	t.Cleanup(func() {
		if _, err := eng.Terminate(context.Background(), run); err != nil {
			t.Errorf("terminate %s: %v", run, err)
		}
	})
	if _, err := eng.Launch(ctx, plan, bootlevel.LaunchOptions{Run: run}); err != nil {
		return nil, err
	}
	recs, err := st.Services(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, r := range recs {
		attrs := maps.Clone(r.Attributes)
		for _, k := range []string{launchplan.AttrHostname, launchplan.AttrInstanceID, launchplan.AttrRun, launchplan.AttrLevel} {
			delete(attrs, k)
		}
		out[r.Name] = attrs
	}
	return out, nil
}
