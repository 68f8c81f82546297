package builtin

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/localservice"
	"nightshift/launchplan"
)

// hostDriver stands in for the ssh and ec2 drivers: it hands out a host,
// and keeps each script it is asked to run (as the remote host would get
// it) instead of running it.
type hostDriver struct {
	mu       sync.Mutex
	scripts  []string
	paths    []string
	released []bootlevel.Host
	outputs  map[string]string
}

func (d *hostDriver) Acquire(_ context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	return bootlevel.Host{Hostname: "10.0.0.7", InstanceID: "i-" + svc.Name}, nil
}

func (d *hostDriver) Run(_ context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	data, err := os.ReadFile(req.Program.Path)
	if err != nil {
		return bootlevel.StepResult{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.scripts = append(d.scripts, string(data))
	d.paths = append(d.paths, req.Program.Path)
	if req.Step == bootlevel.StepBoot {
		return bootlevel.StepResult{Outputs: d.outputs}, nil
	}
	return bootlevel.StepResult{}, nil
}

func (d *hostDriver) Release(_ context.Context, _ string, _ *launchplan.Service, h bootlevel.Host) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.released = append(d.released, h)
	return nil
}

// remoteProvisioner is a provisioner service placed by the "ssh" driver,
// with the plan and scope writeRunJobs needs.
func remoteProvisioner(t *testing.T, cfg map[string]any) (bootlevel.StepRequest, *launchplan.Service) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	svc := &launchplan.Service{Name: "provisioner", Type: "provisioner", Driver: launchplan.DriverSSH, TypeConfig: cfg}
	jobs := map[string]any{"sleeper": map[string]any{"engine": "npreserving", "driver": "ec2",
		"instance": map[string]any{"image": "ami-1", "sitter_url": "https://rel/sitter"}, "worker": map[string]any{"command": []any{"/bin/sleeper"}}}}
	req := bootlevel.StepRequest{
		Run: "r1", Service: svc, Plan: controllerPlan(jobs), Expand: scope(),
		WorkDir: runlayout.Of(home, "r1").Work("provisioner"), LogPath: filepath.Join(home, "step.log"),
		Host: bootlevel.Host{Hostname: "10.0.0.7", InstanceID: "i-provisioner"},
	}
	return req, svc
}

// unitOf decodes the unit file an install script writes.
func unitOf(t *testing.T, script string) string {
	t.Helper()
	m := regexp.MustCompile(`put 0644 root '/etc/systemd/system/[^']+' '([^']+)'`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no unit in the script:\n%s", script)
	}
	unit, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(unit)
}

// TestRemoteDaemonInstallsThroughItsDriver: a provisioner whose driver is
// not local gets its host from the driver and is installed there as a
// systemd unit by a script the driver runs; the daemon is told about its
// files where they will be on that host, never this machine's paths, and
// the service exports what a local one does.
func TestRemoteDaemonInstallsThroughItsDriver(t *testing.T) {
	drv := &hostDriver{outputs: map[string]string{"metrics_url": "http://127.0.0.1:9464/metrics"}}
	ty := &Type{Spec: provisionerSpec, Log: slog.New(slog.DiscardHandler), Drivers: map[string]bootlevel.Driver{launchplan.DriverSSH: drv}}
	req, svc := remoteProvisioner(t, map[string]any{"amqp_url": "amqps://u:pw@10.0.0.5:5671/", "driver": "ec2", "shared_worker_user": true,
		"release_url": "https://rel/v1/", "ec2_region": "us-east-1"})
	host, err := ty.Acquire(context.Background(), "r1", svc)
	if err != nil || host.InstanceID != "i-provisioner" {
		t.Fatalf("acquire: %v %v, want the driver's host", host, err)
	}
	req.Step = bootlevel.StepBoot
	res, err := ty.Run(context.Background(), req)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("boot: %v %+v", err, res)
	}
	want := map[string]string{"component": "provisioner", "unit": "nightshift-r1-provisioner.service", "metrics_url": "http://127.0.0.1:9464/metrics"}
	for k, v := range want {
		if res.Outputs[k] != v {
			t.Errorf("export %s = %q, want %q (all: %v)", k, res.Outputs[k], v, res.Outputs)
		}
	}
	if len(drv.scripts) != 1 {
		t.Fatalf("%d scripts run, want 1", len(drv.scripts))
	}
	script := drv.scripts[0]
	if _, err := os.Stat(drv.paths[0]); err == nil {
		t.Errorf("the install script, which holds the run's secret, is left at %s", drv.paths[0])
	}
	home := os.Getenv("NIGHTSHIFT_HOME")
	if strings.Contains(script, home) {
		t.Errorf("the script names this machine's home %s:\n%s", home, script)
	}
	for _, w := range []string{"curl -fsSL --retry 5 -o \"$t\" 'https://rel/v1/provisioner'",
		"'/var/lib/nightshift/runs/r1/secret'", "'/var/lib/nightshift/runs/r1/command.key'",
		"'/var/lib/nightshift/runs/r1/work/provisioner/provisioner/jobs.json'", "systemctl restart 'nightshift-r1-provisioner.service'"} {
		if !strings.Contains(script, w) {
			t.Errorf("script lacks %s:\n%s", w, script)
		}
	}
	unit := unitOf(t, script)
	dir := "/var/lib/nightshift/runs/r1/work/provisioner/provisioner"
	for _, w := range []string{`ExecStart="/opt/nightshift/r1/provisioner/provisioner" "--run" "r1" "--amqp-url-file" "` + dir + `/amqp-url"`,
		`"--home" "/var/lib/nightshift"`, `"--jobs" "` + dir + `/jobs.json"`, `"--driver" "ec2"`, `"--metrics-url-file" "` + dir + `/metrics-url"`,
		"User=nightshift", "Restart=always"} {
		if !strings.Contains(unit, w) {
			t.Errorf("unit lacks %s:\n%s", w, unit)
		}
	}
	verifyUnit(t, strings.ReplaceAll(unit, "/opt/nightshift/r1/provisioner/provisioner", "/bin/sh"))

	// Watched by systemd there, not by this machine's keeper.
	if _, _, watched := ty.Process(req.WorkDir, svc); watched {
		t.Error("a daemon on another host is watched here")
	}
	req.Step = bootlevel.StepTerminate
	if res, err := ty.Run(context.Background(), req); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate: %v %+v", err, res)
	}
	if len(drv.scripts) != 2 || !strings.Contains(drv.scripts[1], "systemctl disable --now 'nightshift-r1-provisioner.service'") {
		t.Errorf("terminate did not disable the unit through the driver: %q", drv.scripts[1:])
	}
	if err := ty.Release(context.Background(), "r1", svc, host); err != nil || len(drv.released) != 1 {
		t.Errorf("release: %v, released %v; want the driver to release the host", err, drv.released)
	}
}

// verifyUnit runs systemd-analyze verify on a unit, when it is installed
// (hostinstall's test insists on it under NIGHTSHIFT_TEST_STRICT).
func verifyUnit(t *testing.T, unit string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found: unit not verified")
		return
	}
	p := filepath.Join(t.TempDir(), "nightshift-r1-provisioner.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(sa, "verify", p)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s\n%s", err, out.String(), unit)
	}
}

func TestRemoteDaemonRefusals(t *testing.T) {
	cases := []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"no release url", map[string]any{"amqp_url": "amqp://u:p@h/", "driver": "ec2", "shared_worker_user": true}, "config.release_url: required"},
		{"local workers beside a remote provisioner", map[string]any{"amqp_url": "amqp://u:p@h/", "driver": "local", "release_url": "https://rel", "shared_worker_user": true}, "runs on a host of its own"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			drv := &hostDriver{}
			ty := &Type{Spec: provisionerSpec, Log: slog.New(slog.DiscardHandler), Drivers: map[string]bootlevel.Driver{launchplan.DriverSSH: drv}}
			req, _ := remoteProvisioner(t, c.cfg)
			req.Step = bootlevel.StepBoot
			res, err := ty.Run(context.Background(), req)
			if err == nil && res.ExitCode == 0 {
				t.Fatal("boot passed")
			}
			if !strings.Contains(strings.Join(res.Tail, "\n"), c.want) {
				t.Errorf("tail %q does not say %q", res.Tail, c.want)
			}
			if len(drv.scripts) != 0 {
				t.Errorf("a script was sent to the host")
			}
		})
	}
	ty := &Type{Spec: provisionerSpec, Log: slog.New(slog.DiscardHandler)}
	svc := &launchplan.Service{Name: "p", Type: "provisioner", Driver: launchplan.DriverEC2, TypeConfig: map[string]any{"amqp_url": "amqp://h/", "shared_worker_user": true}}
	if _, err := ty.Acquire(context.Background(), "r1", svc); err == nil || !strings.Contains(err.Error(), `driver "ec2" is not available`) {
		t.Errorf("acquire without the driver: %v", err)
	}
}

// hereDriver is the local driver saying the service's steps run here, as
// ec2service does against moto.
type hereDriver struct{ *localservice.Driver }

func (hereDriver) StepsHere(*launchplan.Service) bool { return true }

// TestDaemonStepsHereRunAsLocal: when the driver runs the steps on this
// machine, the same install script writes the same files here and starts
// the daemon detached, where the keeper watches it and terminate stops it
// as a local daemon.
func TestDaemonStepsHereRunAsLocal(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "fake-provisioner")
	if err := os.WriteFile(fake, []byte(`#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --metrics-url-file ] && echo http://127.0.0.1:9/metrics >"$2"; shift; done
exec sleep 600
`), 0o755); err != nil {
		t.Fatal(err)
	}
	ty := &Type{Spec: provisionerSpec, Log: slog.New(slog.DiscardHandler), Grace: 0,
		Drivers: map[string]bootlevel.Driver{launchplan.DriverSSH: hereDriver{localservice.New(nil)}}}
	req, svc := remoteProvisioner(t, map[string]any{"amqp_url": "amqp://u:p@127.0.0.1:1/", "driver": "ec2", "binary": fake, "shared_worker_user": true})
	req.Step = bootlevel.StepBoot
	res, err := ty.Run(context.Background(), req)
	if err != nil || res.ExitCode != 0 {
		data, _ := os.ReadFile(req.LogPath)
		t.Fatalf("boot: %v %+v\n%s", err, res, data)
	}
	pid, _ := strconv.Atoi(res.Outputs["pid"])
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	dir := filepath.Join(req.WorkDir, "provisioner")
	if res.Outputs["log"] != filepath.Join(dir, "daemon.log") || res.Outputs["metrics_url"] != "http://127.0.0.1:9/metrics" || res.Outputs["component"] != "provisioner" {
		t.Errorf("exports %v", res.Outputs)
	}
	if got, alive, watched := ty.Process(req.WorkDir, svc); got != pid || !alive || !watched {
		t.Errorf("Process = %d %v %v, want pid %d alive and watched", got, alive, watched, pid)
	}
	for _, f := range []string{runlayout.URLFile, "jobs.json"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f, st, err)
		}
	}
	ents, _ := os.ReadDir(req.WorkDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".install-") {
			t.Errorf("staging directory %s left behind", e.Name())
		}
	}
	req.Step = bootlevel.StepTerminate
	if res, err := ty.Run(context.Background(), req); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate: %v %+v", err, res)
	}
	if _, alive, _ := ty.Process(req.WorkDir, svc); alive {
		t.Error("the daemon still runs after terminate")
	}
}
