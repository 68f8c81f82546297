// A daemon on the host its service's driver gives it. The type still says
// what runs (the same arguments, files, broker user and exports as on this
// machine); the driver says where: Acquire and Release are the driver's,
// and boot sends an install script through the driver's Run
// (hostinstall), which makes the daemon a systemd unit on that host. Where
// the driver runs the steps on this machine instead (ec2 against moto in
// tests), the script writes the same files here and starts the daemon
// detached, so it is watched and stopped as a local one.

package builtin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"nightshift/bootlevel"
	"nightshift/internal/envelope"
	"nightshift/internal/metrics"
	"nightshift/internal/nsenv"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/hostinstall"
	"nightshift/launchplan"
)

// StepsHere is implemented by a driver that may run a service's steps on
// this machine although the service names another host (ec2service when
// its steps are local, for tests against moto).
type StepsHere interface {
	StepsHere(svc *launchplan.Service) bool
}

func stepsHere(drv bootlevel.Driver, svc *launchplan.Service) bool {
	h, ok := drv.(StepsHere)
	return ok && h.StepsHere(svc)
}

// placed returns the driver that places a service's daemon, or nil when it
// runs on this machine (driver local).
func (t *Type) placed(svc *launchplan.Service) (bootlevel.Driver, error) {
	if svc == nil || svc.Driver == "" || svc.Driver == launchplan.DriverLocal {
		return nil, nil
	}
	drv := t.Drivers[svc.Driver]
	if drv == nil {
		return nil, fmt.Errorf("%s %s: driver %q is not available to built-in types here", t.Spec.Name, svc.Name, svc.Driver)
	}
	return drv, nil
}

// installPlan is where a daemon's pieces go on its host.
type installPlan struct {
	home, dir, binary string
	mode              hostinstall.Mode
}

func (t *Type) where(req bootlevel.StepRequest, here bool) installPlan {
	if here {
		dir := filepath.Join(req.WorkDir, t.Spec.Name)
		return installPlan{home: os.Getenv(nsenv.Home), dir: dir, binary: filepath.Join(dir, "bin", t.Spec.Name), mode: hostinstall.Process}
	}
	home := hostinstall.Home
	return installPlan{
		home:   home,
		dir:    path.Join(runlayout.Of(home, req.Run).Work(req.Service.Name), t.Spec.Name),
		binary: hostinstall.BinaryPath(req.Run, req.Service.Name, t.Spec.Name),
		mode:   hostinstall.Systemd,
	}
}

// install boots the daemon through drv: the files it reads are made here in
// a private staging directory exactly as for a local daemon, then carried
// to the host by the script, which starts the daemon.
func (t *Type) install(ctx context.Context, drv bootlevel.Driver, req bootlevel.StepRequest, cfg map[string]any, localDir string, say func(string, ...any)) (map[string]string, error) {
	here := stepsHere(drv, req.Service)
	at := t.where(req, here)
	if here {
		// Never two daemons for one service, as for a local one.
		if err := t.stop(ctx, localDir, say); err != nil {
			return nil, err
		}
	}
	binURL, err := t.releaseURL(cfg, here)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(req.WorkDir, 0o700); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(req.WorkDir, ".install-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)

	own, self, err := t.identity(ctx, req, cfg, staging)
	if err != nil {
		return nil, err
	}
	self.Home, self.Away = at.home, true
	if self.User != "" {
		say("broker user %s created for the %s", self.User, t.Spec.Name)
	}
	if err := os.WriteFile(filepath.Join(staging, runlayout.URLFile), []byte(own+"\n"), 0o600); err != nil {
		return nil, err
	}
	args := []string{at.binary, "--run", req.Run, "--amqp-url-file", filepath.Join(staging, runlayout.URLFile)}
	ca, err := caFile(cfg)
	if err != nil {
		return nil, err
	}
	if ca != "" {
		// The CA is a file of the launcher's; its host gets a copy.
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("config.amqp_ca_file: %w", err)
		}
		if err := os.WriteFile(filepath.Join(staging, "amqp-ca.pem"), pem, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--amqp-ca-file", filepath.Join(staging, "amqp-ca.pem"))
	}
	metricsAddr, _ := cfg["metrics_addr"].(string)
	if metricsAddr == "" {
		metricsAddr = metrics.DefaultAddr
	}
	metricsFile := ""
	args = append(args, "--metrics-addr", metricsAddr)
	if metricsAddr != "off" {
		metricsFile = path.Join(at.dir, "metrics-url")
		args = append(args, "--metrics-url-file", filepath.Join(staging, "metrics-url"))
	}
	if t.Spec.Args != nil {
		more, err := t.Spec.Args(req, cfg, staging, t.BinDir, self)
		if err != nil {
			return nil, err
		}
		args = append(args, more...)
	}
	// What the daemon is told about its files names them where they will be.
	for i, a := range args {
		if a == staging || strings.HasPrefix(a, staging+string(filepath.Separator)) {
			args[i] = path.Join(at.dir, filepath.ToSlash(strings.TrimPrefix(a, staging)))
		}
	}
	files, err := stagedFiles(staging, at.dir)
	if err != nil {
		return nil, err
	}
	secrets, err := runSecrets(req.Run, at.home)
	if err != nil {
		return nil, err
	}
	files = append(files, secrets...)

	in := hostinstall.Install{
		Mode: at.mode,
		Unit: hostinstall.Unit{
			Name:             hostinstall.UnitName(req.Run, req.Service.Name),
			Description:      fmt.Sprintf("Nightshift %s (run %s, service %s)", t.Spec.Name, req.Run, req.Service.Name),
			Argv:             args,
			WorkingDirectory: at.dir,
		},
		BinaryURL:   binURL,
		Binary:      at.binary,
		Dirs:        hostDirs(at, req),
		Files:       files,
		MetricsFile: metricsFile,
		Log:         path.Join(at.dir, "daemon.log"),
		PIDFile:     path.Join(at.dir, "pid"),
	}
	script, err := hostinstall.Script(in)
	if err != nil {
		return nil, err
	}
	where := "on this machine (the driver runs its steps here)"
	if !here {
		where = fmt.Sprintf("on %s as unit %s", req.Host.Hostname, in.Unit.Name)
	}
	say("installing the %s %s", t.Spec.Name, where)
	res, err := t.runScript(ctx, drv, req, staging, "install-"+t.Spec.Name+".sh", script)
	if err != nil {
		return nil, err
	}
	out := map[string]string{launchplan.AttrComponent: t.Spec.Component, "broker_user": self.User, "metrics_url": res.Outputs["metrics_url"]}
	if here {
		out["pid"], out["log"] = res.Outputs["pid"], in.Log
	} else {
		out["unit"] = in.Unit.Name
	}
	if metricsFile != "" && out["metrics_url"] == "" {
		return nil, errors.New("the install script exported no metrics_url")
	}
	say("%s started %s", t.Spec.Name, where)
	return out, nil
}

// runScript writes script (it holds secrets) to a private file and runs it
// as the service's boot or terminate step through drv.
func (t *Type) runScript(ctx context.Context, drv bootlevel.Driver, req bootlevel.StepRequest, dir, name, script string) (bootlevel.StepResult, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		return bootlevel.StepResult{}, err
	}
	defer os.Remove(p)
	sreq := req
	sreq.Program = launchplan.Program{Path: p, Pos: req.Service.Pos}
	res, err := drv.Run(ctx, sreq)
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 {
		return res, fmt.Errorf("%s exited %d: %s", name, res.ExitCode, strings.Join(res.Tail, " | "))
	}
	return res, nil
}

// uninstall stops and removes the daemon's unit on its host.
func (t *Type) uninstall(ctx context.Context, drv bootlevel.Driver, req bootlevel.StepRequest, say func(string, ...any)) error {
	at := t.where(req, false)
	in := hostinstall.Install{
		Mode: at.mode,
		Unit: hostinstall.Unit{
			Name:             hostinstall.UnitName(req.Run, req.Service.Name),
			Description:      fmt.Sprintf("Nightshift %s (run %s, service %s)", t.Spec.Name, req.Run, req.Service.Name),
			Argv:             []string{at.binary},
			WorkingDirectory: at.dir,
		},
		BinaryURL: "file:///unused",
		Binary:    at.binary,
		RunDir:    runlayout.Of(at.home, req.Run).Dir(),
	}
	script, err := hostinstall.StopScript(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(req.WorkDir, 0o700); err != nil {
		return err
	}
	say("removing unit %s from %s", in.Unit.Name, req.Host.Hostname)
	_, err = t.runScript(ctx, drv, req, req.WorkDir, "uninstall-"+t.Spec.Name+".sh", script)
	return err
}

// releaseURL is where the script fetches the daemon from: config
// release_url (a directory serving the binaries by name). Without it, a
// daemon started on this machine is copied from the binary launch would
// run locally.
func (t *Type) releaseURL(cfg map[string]any, here bool) (string, error) {
	if u, _ := cfg["release_url"].(string); u != "" {
		return strings.TrimRight(u, "/") + "/" + t.Spec.Name, nil
	}
	if !here {
		return "", fmt.Errorf("config.release_url: required for a %s on another host (a URL serving the Linux binaries, such as ${global.release_url})", t.Spec.Name)
	}
	bin, err := t.binary(cfg)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	return "file://" + abs, nil
}

// stagedFiles are the files the type wrote into staging, as the host gets
// them in dir.
func stagedFiles(staging, dir string) ([]hostinstall.File, error) {
	ents, err := os.ReadDir(staging)
	if err != nil {
		return nil, err
	}
	var out []hostinstall.File
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(staging, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, hostinstall.File{Path: path.Join(dir, e.Name()), Data: data})
	}
	return out, nil
}

// runSecrets are the run's secret and command key as the daemons read them
// under home, copied from the launcher's (created if the run has none yet),
// so what mgmt signs here verifies there. A daemon on this machine reads
// the launcher's own files.
func runSecrets(run, home string) ([]hostinstall.File, error) {
	src := runlayout.Of(os.Getenv(nsenv.Home), run).Secret()
	if _, err := envelope.LoadOrCreateSecret(src); err != nil {
		return nil, err
	}
	if _, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(src)); err != nil {
		return nil, err
	}
	dst := runlayout.Of(home, run).Secret()
	if filepath.Clean(dst) == filepath.Clean(src) {
		return nil, nil
	}
	var out []hostinstall.File
	for _, p := range [][2]string{{src, dst}, {envelope.CommandKeyPath(src), envelope.CommandKeyPath(dst)}} {
		data, err := os.ReadFile(p[0])
		if err != nil {
			return nil, err
		}
		out = append(out, hostinstall.File{Path: filepath.ToSlash(p[1]), Data: data})
	}
	return out, nil
}

// hostDirs are the directories the script makes for the daemon, parents
// first: on a host of its own the whole home down to its directory.
func hostDirs(at installPlan, req bootlevel.StepRequest) []string {
	if at.mode == hostinstall.Process {
		return []string{at.dir}
	}
	lay := runlayout.Of(at.home, req.Run)
	return []string{at.home, runlayout.Runs(at.home), lay.Dir(), path.Dir(lay.Work(req.Service.Name)), lay.Work(req.Service.Name), at.dir}
}
