package broker

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"nightshift/bootlevel"
	"nightshift/launchplan"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		in      map[string]any
		wantErr string
	}{
		{nil, ""},
		{map[string]any{"mode": "external", "url": "amqp://guest:guest@127.0.0.1:5672/"}, ""},
		{map[string]any{"mode": "external"}, "config.url: required"},
		{map[string]any{"mode": "external", "url": "http://x:secret@h/"}, "want amqp://"},
		{map[string]any{"mode": "cloud"}, "config.mode"},
		{map[string]any{"port": int64(70000)}, "not a port"},
		{map[string]any{"prot": int64(5)}, "config.prot: unknown key"},
		{map[string]any{"url": "amqp://h/"}, "only for mode"},
	}
	for _, c := range cases {
		_, err := ParseConfig(c.in)
		if c.wantErr == "" && err != nil {
			t.Errorf("%v: %v", c.in, err)
		}
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%v: got %v, want %q", c.in, err, c.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks a password: %v", err)
		}
	}
}

func step(svc *launchplan.Service, st bootlevel.Step, dir string) bootlevel.StepRequest {
	return bootlevel.StepRequest{Run: "t", Service: svc, Step: st, WorkDir: dir, LogPath: filepath.Join(dir, "broker.log")}
}

func TestExternalBrokerIsAdoptedAndLeftAlone(t *testing.T) {
	if os.Getenv("NIGHTSHIFT_TEST_STRICT") != "1" {
		if _, err := os.Stat("/usr/sbin/rabbitmqctl"); err != nil {
			t.Skip("no RabbitMQ here")
		}
	}
	ty := New(nil)
	dir := t.TempDir()
	svc := &launchplan.Service{Name: "mq", Type: "broker", TypeConfig: map[string]any{"mode": "external", "url": "amqp://guest:guest@127.0.0.1:5672/"}}
	ctx := context.Background()
	res, err := ty.Run(ctx, step(svc, bootlevel.StepBoot, dir))
	if err != nil || res.ExitCode != 0 || res.Outputs["port"] != "5672" {
		t.Fatalf("boot: %+v %v", res, err)
	}
	svc.Attributes = res.Outputs
	if res, err := ty.Run(ctx, step(svc, bootlevel.StepReady, dir)); err != nil || res.ExitCode != 0 {
		t.Fatalf("ready: %+v %v", res, err)
	}
	if res, err := ty.Run(ctx, step(svc, bootlevel.StepTerminate, dir)); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate: %+v %v", res, err)
	}
	bad := &launchplan.Service{Name: "mq", Type: "broker", TypeConfig: map[string]any{"mode": "external", "url": "amqp://guest:wrong@127.0.0.1:5672/"}}
	res, err = ty.Run(ctx, step(bad, bootlevel.StepReady, dir))
	if err != nil || res.ExitCode == 0 {
		t.Fatalf("ready with a wrong password passed: %+v %v", res, err)
	}
	if strings.Contains(strings.Join(res.Tail, "\n"), "wrong") {
		t.Fatalf("failure output leaks the password: %v", res.Tail)
	}
}

// TestPrivateNodeLifecycle starts a real private RabbitMQ node beside the
// system one, proves it serves AMQP and the management API, and that
// terminate leaves no process of it.
func TestPrivateNodeLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a RabbitMQ node (~10 s)")
	}
	ty := needServer(t)
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	dir := filepath.Join(home, "runs", "t", "work", "mq")
	svc := &launchplan.Service{Name: "mq", Type: "broker"}
	ctx := context.Background()
	res, err := ty.Run(ctx, step(svc, bootlevel.StepBoot, dir))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("boot: %+v %v", res, err)
	}
	t.Cleanup(func() { ty.Run(context.Background(), step(svc, bootlevel.StepTerminate, dir)) })
	if !strings.HasPrefix(res.Outputs["url"], "amqp://nightshift:") || res.Outputs["port"] == "5672" {
		t.Fatalf("outputs %v", res.Outputs)
	}
	svc.Attributes = res.Outputs
	var ready bootlevel.StepResult
	for i := 0; i < 120; i++ { // the engine retries ready the same way
		ready, err = ty.Run(ctx, step(svc, bootlevel.StepReady, dir))
		if err == nil && ready.ExitCode == 0 {
			break
		}
		waitABit()
	}
	if err != nil || ready.ExitCode != 0 {
		t.Fatalf("node never became ready: %+v %v", ready, err)
	}
	pidData, err := os.ReadFile(filepath.Join(dir, "rabbit", "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if res, err := ty.Run(ctx, step(svc, bootlevel.StepTerminate, dir)); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate: %+v %v", res, err)
	}
	if err := syscall.Kill(pid, 0); err == nil && isNode(pid, filepath.Join(dir, "rabbit")) {
		t.Fatalf("node pid %d still alive after terminate", pid)
	}
	// Terminate again: nothing to do, still success.
	if res, err := ty.Run(ctx, step(svc, bootlevel.StepTerminate, dir)); err != nil || res.ExitCode != 0 {
		t.Fatalf("second terminate: %+v %v", res, err)
	}
}

// TestRebootKeepsPasswordAndPorts: after the node dies, repair boots the
// service again; the node's database keeps its first password, and every
// daemon and sitter holds a URL with it and the port, so both must stay.
// A dead node's ready check says so at once (Gone), so repair does not
// wait out the ready timeout first.
func TestRebootKeepsPasswordAndPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a RabbitMQ node twice")
	}
	ty := needServer(t)
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	dir := filepath.Join(home, "runs", "t", "work", "mq2")
	svc := &launchplan.Service{Name: "mq2", Type: "broker"}
	ctx := context.Background()
	t.Cleanup(func() { ty.Run(context.Background(), step(svc, bootlevel.StepTerminate, dir)) })
	waitReady := func() {
		t.Helper()
		for i := 0; i < 160; i++ {
			res, err := ty.Run(ctx, step(svc, bootlevel.StepReady, dir))
			if err == nil && res.ExitCode == 0 {
				return
			}
			waitABit()
		}
		t.Fatal("node never became ready")
	}
	first, err := ty.Run(ctx, step(svc, bootlevel.StepBoot, dir))
	if err != nil || first.ExitCode != 0 {
		t.Fatalf("boot: %+v %v", first, err)
	}
	svc.Attributes = first.Outputs
	waitReady()
	// A daemon's own broker user, as the provisioner and controller types
	// create theirs: it must outlive the node's restart.
	api := func(method, path, body string) int {
		t.Helper()
		u, err := url.Parse(first.Outputs["management_url"])
		if err != nil {
			t.Fatal(err)
		}
		pass, _ := u.User.Password()
		req, err := http.NewRequestWithContext(ctx, method, u.Scheme+"://"+u.Host+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(u.User.Username(), pass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := api(http.MethodPut, "/api/users/ns.t.controller", `{"password":"pw","tags":""}`); code/100 != 2 {
		t.Fatalf("create user: HTTP %d", code)
	}
	pidData, _ := os.ReadFile(filepath.Join(dir, "rabbit", "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && isNode(pid, filepath.Join(dir, "rabbit")); i++ {
		waitABit()
	}
	res, err := ty.Run(ctx, step(svc, bootlevel.StepReady, dir))
	if err != nil || res.ExitCode == 0 || !res.Gone {
		t.Fatalf("ready of a dead node: %+v %v, want a failure marked Gone", res, err)
	}
	// The engine's restart terminates before it boots again, marked as a
	// reboot: the node's data stays.
	stop := step(svc, bootlevel.StepTerminate, dir)
	stop.Reboot = true
	if res, err := ty.Run(ctx, stop); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate before reboot: %+v %v", res, err)
	}
	second, err := ty.Run(ctx, step(svc, bootlevel.StepBoot, dir))
	if err != nil || second.ExitCode != 0 {
		t.Fatalf("re-boot: %+v %v", second, err)
	}
	for _, k := range []string{"url", "password", "port", "management_url"} {
		if second.Outputs[k] != first.Outputs[k] {
			t.Errorf("re-boot changed %s", k)
		}
	}
	svc.Attributes = second.Outputs
	waitReady() // the old URL, password included, still connects
	if code := api(http.MethodGet, "/api/users/ns.t.controller", ""); code != http.StatusOK {
		t.Errorf("after the restart the daemon's broker user is gone (HTTP %d): every client would be refused", code)
	}
}

// needServer returns the broker type, skipping (failing under strict mode)
// where RabbitMQ is not installed.
func needServer(t *testing.T) *Type {
	t.Helper()
	ty := New(nil)
	if _, err := os.Stat(ty.ServerPath); err != nil {
		if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
			t.Fatal("rabbitmq-server not installed")
		}
		t.Skip("rabbitmq-server not installed")
	}
	return ty
}
