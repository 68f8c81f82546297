package localworker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/envelope"
	"nightshift/internal/testsupport"
	"nightshift/provisioner"
)

// In helper mode the test binary plays a provisioner that launches one
// instance and exits at once, so tests can check the instance outlives it.
func TestMain(m *testing.M) {
	if os.Getenv("LOCALWORKER_HELPER") == "1" {
		d, err := New(Config{Home: os.Getenv("H_HOME"), Run: os.Getenv("H_RUN"), Command: []string{"sleep", "300"}})
		if err == nil {
			var res provisioner.LaunchResult
			res, err = d.Launch(context.Background(), provisioner.InstanceSpec{ID: os.Getenv("H_ID"), Job: "web", LaunchID: "L1", Run: os.Getenv("H_RUN")})
			fmt.Println(res.PID)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newDriver(t *testing.T, argv ...string) *Driver {
	t.Helper()
	home := t.TempDir()
	d, err := New(Config{Home: home, Run: "r1", Command: argv, Grace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if killed, err := Sweep(context.Background(), home, "r1"); err != nil || len(killed) > 0 {
			t.Errorf("stray instances after test: %v %v", killed, err)
		}
	})
	return d
}

func launch(t *testing.T, d *Driver, id string) provisioner.LaunchResult {
	t.Helper()
	res, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: id, Job: "web", LaunchID: "L1", Run: "r1", Spec: []byte(`{"k":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func procAlive(pid int) bool {
	p, err := readStat("/proc", pid)
	return err == nil && !p.zombie
}

// sessionMembers polls until the instance's session has at least n live
// processes (its shell has forked its children), or fails.
func sessionMembers(t *testing.T, leader, n int) []proc {
	t.Helper()
	var got []proc
	testsupport.Eventually(t, 10*time.Second, func() error {
		procs, err := scan("/proc")
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, p := range procs {
			if p.sid == leader {
				got = append(got, p)
			}
		}
		if len(got) < n {
			return fmt.Errorf("session %d has %d processes, want %d", leader, len(got), n)
		}
		return nil
	})
	return got
}

func TestInstanceOutlivesLauncherAndSweepKillsIt(t *testing.T) {
	home := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCALWORKER_HELPER=1", "LOCALWORKER_SECRET=hunter2", "H_HOME="+home, "H_RUN=r1", "H_ID=web-1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("launcher: %v: %s", err, out)
	}
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil || pid <= 0 {
		t.Fatalf("launcher printed %q", out)
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })

	if !procAlive(pid) {
		t.Fatalf("instance pid %d died with its launcher", pid)
	}
	st, err := readStat("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := readStat("/proc", os.Getpid())
	if st.sid != pid || st.sid == self.sid {
		t.Errorf("instance session %d, want its own (pid %d, ours %d)", st.sid, pid, self.sid)
	}
	dir := InstanceDir(home, "r1", "web-1")
	o, err := readOwner(dir)
	if err != nil {
		t.Fatalf("ownership marker: %v", err)
	}
	if o.PID != pid || o.StartTime != st.startTime || o.Run != "r1" || o.Job != "web" || o.InstanceID != "web-1" {
		t.Errorf("owner.json = %+v, want pid %d start %d", o, pid, st.startTime)
	}
	if fi, err := os.Stat(filepath.Join(dir, ownerFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("owner.json mode: %v %v", fi.Mode(), err)
	}
	for _, f := range []string{"stdout", "stderr"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	for _, kv := range []string{"NIGHTSHIFT_RUN=r1", "NIGHTSHIFT_JOB=web", "NIGHTSHIFT_INSTANCE_ID=web-1"} {
		if !bytes.Contains(env, []byte(kv+"\x00")) {
			t.Errorf("instance environment lacks %s", kv)
		}
	}
	if bytes.Contains(env, []byte("LOCALWORKER_SECRET=")) {
		t.Error("instance inherited the launcher's private environment")
	}
	owned, err := ListOwned(home, "r1")
	if err != nil || len(owned) != 1 || owned[0].PID != pid {
		t.Fatalf("ListOwned = %+v, %v; want pid %d", owned, err, pid)
	}

	killed, err := Sweep(context.Background(), home, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(killed, ",") != "web-1" {
		t.Errorf("Sweep killed %v, want [web-1]", killed)
	}
	if procAlive(pid) {
		t.Errorf("pid %d still alive after Sweep", pid)
	}
	if owned, _ := ListOwned(home, "r1"); len(owned) != 0 {
		t.Errorf("ListOwned after Sweep = %+v", owned)
	}
}

func TestTerminateKillsWholeTree(t *testing.T) {
	cases := []struct {
		name string
		argv []string
		n    int // processes in the session once started
	}{
		{"children", []string{"sh", "-c", "sleep 300 & sleep 300 & wait"}, 3},
		{"ignores SIGTERM", []string{"sh", "-c", `trap "" TERM; sleep 300 & wait`}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, c.argv...)
			d.cfg.Grace = 300 * time.Millisecond
			res := launch(t, d, "web-1")
			ps := sessionMembers(t, res.PID, c.n)
			if err := d.Terminate(context.Background(), "web-1"); err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if procAlive(p.pid) {
					t.Errorf("pid %d survived Terminate", p.pid)
				}
			}
			if err := d.Terminate(context.Background(), "web-1"); err != nil {
				t.Errorf("second Terminate: %v, want nil (idempotent)", err)
			}
		})
	}
}

func TestLaunchIsIdempotent(t *testing.T) {
	d := newDriver(t, "sleep", "300")
	a := launch(t, d, "web-1")
	b := launch(t, d, "web-1")
	if a.PID != b.PID {
		t.Errorf("second launch started pid %d, want the first %d", b.PID, a.PID)
	}
	spec, err := os.ReadFile(filepath.Join(InstanceDir(d.cfg.Home, "r1", "web-1"), "spec.json"))
	if err != nil || string(spec) != `{"k":1}` {
		t.Errorf("spec.json = %q, %v", spec, err)
	}
	if err := d.Terminate(context.Background(), "web-1"); err != nil {
		t.Fatal(err)
	}
}

func TestListFindsInstanceWhoseMarkerIsMissing(t *testing.T) {
	d := newDriver(t, "sleep", "300")
	res := launch(t, d, "web-1")
	if err := os.Remove(filepath.Join(InstanceDir(d.cfg.Home, "r1", "web-1"), ownerFile)); err != nil {
		t.Fatal(err)
	}
	owned, err := d.List(context.Background())
	if err != nil || len(owned) != 1 || owned[0].InstanceID != "web-1" || owned[0].PID != res.PID {
		t.Fatalf("List = %+v, %v; want web-1 pid %d found by environment", owned, err, res.PID)
	}
	if err := d.Terminate(context.Background(), "web-1"); err != nil {
		t.Fatal(err)
	}
	if procAlive(res.PID) {
		t.Error("instance without marker survived Terminate")
	}
}

func TestReusedPIDIsNotMistakenForInstance(t *testing.T) {
	d := newDriver(t, "sleep", "300")
	// A process that is not an instance, with a marker naming its pid but
	// another start time: what a reused pid looks like.
	bystander := exec.Command("sleep", "300")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })
	st, err := readStat("/proc", bystander.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := InstanceDir(d.cfg.Home, "r1", "web-9")
	os.MkdirAll(dir, 0o700)
	b, _ := json.Marshal(Owner{Run: "r1", Job: "web", InstanceID: "web-9", PID: st.pid, StartTime: st.startTime + 1})
	os.WriteFile(filepath.Join(dir, ownerFile), b, 0o600)

	if owned, _ := d.List(context.Background()); len(owned) != 0 {
		t.Errorf("List = %+v, want nothing", owned)
	}
	if err := d.Terminate(context.Background(), "web-9"); err != nil {
		t.Fatal(err)
	}
	if !procAlive(st.pid) {
		t.Error("Terminate killed a process whose pid merely matched the marker")
	}
}

func TestBadInput(t *testing.T) {
	d := newDriver(t, "sleep", "300")
	for _, id := range []string{"", "../etc", "a/b", ".hidden", strings.Repeat("x", 200)} {
		if _, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: id, Run: "r1"}); err == nil || !strings.Contains(err.Error(), "instance id") {
			t.Errorf("Launch(%q): err = %v, want instance id error", id, err)
		}
		if err := d.Terminate(context.Background(), id); err == nil {
			t.Errorf("Terminate(%q): want error", id)
		}
	}
	if _, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: "x", Run: "other"}); err == nil {
		t.Error("Launch for another run: want error")
	}
	if _, err := New(Config{Home: t.TempDir(), Run: "../x", Command: []string{"true"}}); err == nil {
		t.Error("New with path-unsafe run: want error")
	}
	d2, _ := New(Config{Home: t.TempDir(), Run: "r1", Command: []string{"/nonexistent/binary"}})
	if _, err := d2.Launch(context.Background(), provisioner.InstanceSpec{ID: "x", Run: "r1"}); err == nil || !strings.Contains(err.Error(), "start") {
		t.Errorf("Launch of missing binary: err = %v", err)
	}
}

// TestInstanceGetsItsOwnBrokerURL: a launch carrying the instance's own
// broker URL puts it in a 0600 file of the instance's own, and that file,
// not a run-wide one from Config.Env, is what the instance is pointed at.
// Without per-worker users the shared URL goes into that file too: an
// isolated instance could not read the provisioner's.
func TestInstanceGetsItsOwnBrokerURL(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) { testOwnBrokerURL(t, shared) })
	}
}

func testOwnBrokerURL(t *testing.T, shared bool) {
	home := t.TempDir()
	out := filepath.Join(home, "env-seen")
	own := "amqp://ns.r1.worker.web-1:own-pw@127.0.0.1:5672/"
	cfg := Config{Home: home, Run: "r1", Grace: 2 * time.Second,
		Command: []string{"/bin/sh", "-c", `cat "$NIGHTSHIFT_AMQP_URL_FILE" > ` + out + `; env >> ` + out + `; sleep 300`},
		Env:     []string{"NIGHTSHIFT_AMQP_URL_FILE=/shared/provisioner-url"}}
	spec := provisioner.InstanceSpec{ID: "web-1", Job: "web", LaunchID: "L1", Run: "r1", BrokerURL: own}
	if shared {
		own = "amqp://ns.r1.provisioner.p:prov-pw@127.0.0.1:5672/"
		cfg.SharedBrokerURL, spec.BrokerURL = own, ""
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Sweep(context.Background(), home, "r1") })
	if _, err := d.Launch(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(InstanceDir(home, "r1", "web-1"), "amqp-url")
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("instance URL file: %v %v, want mode 0600", st, err)
	}
	var seen []byte
	for i := 0; i < 100 && !bytes.Contains(seen, []byte("PATH=")); i++ {
		time.Sleep(50 * time.Millisecond)
		seen, _ = os.ReadFile(out)
	}
	if !bytes.HasPrefix(seen, []byte(own)) || !bytes.Contains(seen, []byte("NIGHTSHIFT_AMQP_URL_FILE="+file)) {
		t.Errorf("instance saw:\n%s\nwant its own URL through %s", seen, file)
	}
	if bytes.Contains(seen, []byte("/shared/provisioner-url")) || bytes.Contains(seen, []byte("secret")) {
		t.Errorf("instance environment holds the run-wide URL file or a secret:\n%s", seen)
	}
}

// TestInstanceGetsTheCommandPublicKeyOnly: every instance's environment
// carries the public half of the run's command key, which its sitter needs
// to verify drain and control, and neither the private key nor the run's
// secret, even when a plan tries to set the variable itself.
func TestInstanceGetsTheCommandPublicKeyOnly(t *testing.T) {
	home := t.TempDir()
	secretPath := filepath.Join(home, "runs", "r1", "secret")
	secret, err := envelope.LoadOrCreateSecret(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(secretPath))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(home, "env-seen")
	d, err := New(Config{Home: home, Run: "r1", Grace: 2 * time.Second,
		Command:    []string{"/bin/sh", "-c", `env > ` + out + `.tmp; mv ` + out + `.tmp ` + out + `; sleep 300`},
		Env:        []string{"NIGHTSHIFT_COMMAND_KEY=00"},
		CommandKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Sweep(context.Background(), home, "r1") })
	if _, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: "web-2", Job: "web", LaunchID: "L1", Run: "r1"}); err != nil {
		t.Fatal(err)
	}
	var seen []byte
	for i := 0; i < 100 && len(seen) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		seen, _ = os.ReadFile(out)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(seen), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	if got := env["NIGHTSHIFT_COMMAND_KEY"]; got != envelope.EncodePublicKey(key) {
		t.Errorf("NIGHTSHIFT_COMMAND_KEY = %q, want the run's public key %q", got, envelope.EncodePublicKey(key))
	}
	text := strings.ToLower(string(seen))
	for name, v := range map[string][]byte{"command key seed": key.Seed(), "private key": key, "run secret": secret} {
		if strings.Contains(text, hex.EncodeToString(v)) {
			t.Errorf("instance environment holds the %s:\n%s", name, seen)
		}
	}
}
