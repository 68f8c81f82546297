// Package builtin is the registry of the built-in launch-plan service types
// (Types, Names): the run's broker (package broker) and Nightshift's own
// daemons, so a plan boots its provisioner and controller without wrapper
// scripts. For the daemons it owns what each one accepts in its `config`
// table and how that becomes the daemon's command line and files (Spec),
// and how a daemon is booted, checked and stopped (Type, in daemon.go).
package builtin

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/brokerurl"
	"nightshift/internal/busid"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/nsenv"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/builtin/broker"
	"nightshift/launchplan"
	"nightshift/sitter"
)

// RunRedactor returns a redactor that knows the run's secrets kept in files:
// the run secret, in the hex it is handed out in and its other encodings,
// the run's command key likewise, the private keys of the run's PKI, and the values in the run's registry.
// A missing file adds nothing (the run may not have one yet); an unreadable
// one is reported, and the redactor holds whatever could be read.
func RunRedactor(home, run string) (*redact.Redactor, error) {
	red := redact.NewRedactor()
	var errs []error
	data, err := os.ReadFile(runlayout.Of(home, run).Secret())
	switch {
	case err == nil:
		s := strings.TrimSpace(string(data))
		if raw, herr := hex.DecodeString(s); herr == nil {
			red.AddBytes(raw)
		}
		red.Add(s)
	case !errors.Is(err, fs.ErrNotExist):
		errs = append(errs, fmt.Errorf("run secret: %w", err))
	}
	// The run's command key (its hex seed as stored, and the seed and the
	// whole private key in any encoding); its public half is no secret.
	keyData, err := os.ReadFile(envelope.CommandKeyPath(runlayout.Of(home, run).Secret()))
	switch {
	case err == nil:
		s := strings.TrimSpace(string(keyData))
		if seed, herr := hex.DecodeString(s); herr == nil && len(seed) == ed25519.SeedSize {
			red.AddBytes(seed)
			red.AddBytes(ed25519.NewKeyFromSeed(seed))
		}
		red.Add(s)
	case !errors.Is(err, fs.ErrNotExist):
		errs = append(errs, fmt.Errorf("run command key: %w", err))
	}
	if err := red.LoadRegistry(runlayout.Of(home, run).RedactValues()); err != nil {
		errs = append(errs, err)
	}
	// The private keys of the run's PKI (the CA's, the broker's).
	keys, _ := filepath.Glob(filepath.Join(runlayout.Of(home, run).PKI(), "*.key"))
	for _, k := range keys {
		data, err := os.ReadFile(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("run key: %w", err))
			continue
		}
		red.Add(string(data))
	}
	return red, errors.Join(errs...)
}

// EnvRunSecret is the ${env.NAME} a plan uses to hand the run's secret (hex,
// as in the secret file) to components that do not share this machine's
// home, such as daemons on EC2 instances, so that they verify what mgmt
// signs. It is served by RunEnv, never set in the environment.
const EnvRunSecret = launchplan.EnvRunSecret

// RunEnv serves the run-scoped ${env.NAME} values (bootlevel.Engine.RunEnv):
// EnvRunSecret, from the run's secret file, created if the run has none yet;
// launchplan.EnvCommandKey, from the run's command key file, likewise;
// and the TLS material of launchplan's EnvTLS* names, from the run's CA
// (runlayout.Run.PKI), created likewise. The broker certificate served is kept beside
// the CA and re-served on every boot while it is fit, so a re-boot of a
// remote broker keeps its certificate, as it keeps its password.
func RunEnv(home string) func(run, name string) (string, bool) {
	return func(run, name string) (string, bool) {
		switch name {
		case EnvRunSecret:
			secret, err := envelope.LoadOrCreateSecret(runlayout.Of(home, run).Secret())
			if err != nil {
				return "", false
			}
			return hex.EncodeToString(secret), true
		case launchplan.EnvCommandKey:
			key, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(runlayout.Of(home, run).Secret()))
			if err != nil {
				return "", false
			}
			return hex.EncodeToString(key.Seed()), true
		case launchplan.EnvTLSBrokerName:
			return pki.BrokerName(run), true
		case launchplan.EnvTLSCA, launchplan.EnvTLSBrokerCert, launchplan.EnvTLSBrokerKey:
			v, err := tlsEnv(home, run, name)
			return v, err == nil
		}
		return "", false
	}
}

// tlsEnv returns the run CA's certificate, or the remote broker's
// certificate or key, issued for pki.BrokerName(run) and loopback.
func tlsEnv(home, run, name string) (string, error) {
	now := time.Now()
	dir := runlayout.Of(home, run).PKI()
	ca, err := pki.LoadOrCreateCA(dir, run, now)
	if err != nil {
		return "", err
	}
	if name == launchplan.EnvTLSCA {
		return string(ca.CertPEM), nil
	}
	cert, key, _, err := ca.LoadOrIssue(dir, "broker", []string{pki.BrokerName(run), "localhost", "127.0.0.1"}, now)
	if err != nil {
		return "", err
	}
	if name == launchplan.EnvTLSBrokerKey {
		return string(key), nil
	}
	return string(cert), nil
}

// Types returns the built-in service types for an engine. drivers are the
// engine's drivers by name: a typed service whose driver is not local gets
// its host from its driver and installs its daemon there through it.
func Types(binDir string, log *slog.Logger, drivers map[string]bootlevel.Driver) map[string]bootlevel.Driver {
	b := broker.New(log)
	b.Drivers = drivers
	return map[string]bootlevel.Driver{
		"broker":      b,
		"provisioner": &Type{Spec: provisionerSpec, BinDir: binDir, Log: log, Drivers: drivers},
		"controller":  &Type{Spec: controllerSpec, BinDir: binDir, Log: log, Drivers: drivers},
	}
}

// Names are the built-in types a plan may name, sorted: the keys of Types,
// which launchplan.Options.Types validates a plan against.
func Names() []string {
	return slices.Sorted(maps.Keys(Types("", slog.New(slog.DiscardHandler), nil)))
}

var provisionerSpec = Spec{
	Name:        "provisioner",
	Component:   "provisioner",
	Role:        busid.RoleProvisioner,
	Permissions: busid.ProvisionerPermissions,
	Keys:        []string{"driver", "worker_command", "max_launches", "max_terminations", "reconcile_every", "sim_connections", "ec2_region", "ec2_endpoint_url", "store", "replicas", "lease_ttl", "shared_worker_user"},
	Check:       checkWorkerIdentity,
	Args: withStore(func(req bootlevel.StepRequest, cfg map[string]any, dir, binDir string, self Self) ([]string, error) {
		jobsFile := filepath.Join(dir, "jobs.json")
		jobs, err := writeRunJobs(req, jobsFile)
		if err != nil {
			return nil, err
		}
		driver, err := provisionerDriver(cfg, jobs)
		if err != nil {
			return nil, err
		}
		if driver == simDriver {
			return simArgs(cfg, jobsFile, self)
		}
		if driver == ec2Driver {
			return ec2Args(cfg, jobsFile, self)
		}
		if self.Away {
			return nil, fmt.Errorf("config.driver: %q workers run beside the provisioner, which runs on a host of its own here: use driver \"ec2\" (or \"sim\")", driver)
		}
		for _, k := range []string{"ec2_region", "ec2_endpoint_url"} {
			if _, ok := cfg[k]; ok {
				return nil, fmt.Errorf("config.%s: only for driver \"ec2\"", k)
			}
		}
		worker, err := stringList(cfg, "worker_command")
		if err != nil {
			return nil, err
		}
		if len(worker) == 0 {
			sitter, err := FindBinary(binDir, "sitter")
			if err != nil {
				return nil, err
			}
			worker = []string{sitter, "agent"}
		}
		for _, w := range worker {
			if strings.ContainsAny(w, " \t\n") {
				return nil, fmt.Errorf("config.worker_command: %q holds white space, which the provisioner cannot pass through", w)
			}
		}
		args := []string{
			"--home", self.Home,
			"--jobs", jobsFile,
			"--driver", driver,
			"--worker-command", strings.Join(worker, " "),
		}
		if self.ManagementURLFile != "" {
			// Each worker gets a broker user of its own, created by the
			// provisioner, which needs the management API for that.
			args = append(args, "--management-url-file", self.ManagementURLFile)
		} else {
			// No management API, accepted with shared_worker_user (see
			// checkWorkerIdentity): the sitters share the provisioner's URL.
			if err := sharedWorkerUserAccepted(cfg); err != nil {
				return nil, err
			}
			args = append(args, "--worker-env", nsenv.AMQPURLFile+"="+filepath.Join(dir, runlayout.URLFile))
		}
		if _, ok := cfg["sim_connections"]; ok {
			return nil, fmt.Errorf("config.sim_connections: only for driver \"sim\"")
		}
		return tuningArgs(args, cfg, "max_launches", "max_terminations")
	}),
}

// checkWorkerIdentity refuses, at plan load, a provisioner that would hand
// its own broker credentials to every worker: without the management API
// it cannot create a user per worker, and a worker holding the
// provisioner's user could consume its commands, purge queues and publish
// events as it. shared_worker_user = true accepts that, for a broker that
// offers no management API on a network where every worker is trusted.
// Simulated workers speak through the simulator's own restricted user, so
// a sim provisioner needs neither.
func checkWorkerIdentity(cfg map[string]any) error {
	shared := false
	if v, ok := cfg["shared_worker_user"]; ok {
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("config.shared_worker_user: want true or false, got %T", v)
		}
		shared = b
	}
	if d, _ := cfg["driver"].(string); d == simDriver || shared {
		return nil
	}
	if s, _ := cfg["management_url"].(string); s != "" {
		return nil
	}
	return fmt.Errorf("config.management_url: required so that each worker gets a broker user of its own " +
		"(for example \"${broker.management_url}\"); without it every worker would hold the provisioner's credentials " +
		"and could take its commands and purge queues. Set shared_worker_user = true to accept that on a trusted network")
}

// tuningArgs appends the provisioner's whole-number flags named by keys
// and its reconcile period, as config gives them.
func tuningArgs(args []string, cfg map[string]any, keys ...string) ([]string, error) {
	for _, k := range keys {
		if v, ok := cfg[k]; ok {
			n, ok := v.(float64)
			if !ok || n < 1 || n != float64(int(n)) {
				return nil, fmt.Errorf("config.%s: want a whole number >= 1, got %v", k, v)
			}
			args = append(args, "--"+strings.ReplaceAll(k, "_", "-"), fmt.Sprint(int(n)))
		}
	}
	if v, ok := cfg["reconcile_every"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("config.reconcile_every: want a duration such as \"30s\", got %v", v)
		}
		args = append(args, "--reconcile-every", s)
	}
	return args, nil
}

const simDriver = "sim"

// provisionerDriver is config.driver, or, when the plan sets none, the
// driver every job names ("local" unless they all say "sim"): a plan asks
// for simulated workers with `driver = "sim"` on its jobs. One provisioner
// runs one driver, so a sim provisioner refuses jobs of another driver.
func provisionerDriver(cfg map[string]any, jobs map[string]jobspec.Spec) (string, error) {
	allSim := len(jobs) > 0
	for _, j := range jobs {
		allSim = allSim && j.Driver == simDriver
	}
	driver := "local"
	if allSim {
		driver = simDriver
	}
	if d, ok := cfg["driver"].(string); ok && d != "" {
		driver = d
	}
	switch driver {
	case "local", ec2Driver:
		return driver, nil
	case simDriver:
		for _, n := range slices.Sorted(maps.Keys(jobs)) {
			if jobs[n].Driver != simDriver {
				return "", fmt.Errorf("config.driver: \"sim\": job %s has driver %q; a sim provisioner runs only jobs with driver = \"sim\"", n, jobs[n].Driver)
			}
		}
		return driver, nil
	}
	return "", fmt.Errorf("config.driver: %q is not available to the provisioner (local, ec2 or sim)", driver)
}

const ec2Driver = "ec2"

// ec2Args are the provisioner's arguments for EC2 workers: each is an
// instance of its job's instance table, which names the sitter it runs, so
// there is no worker command; ec2_region and ec2_endpoint_url set the
// driver's default region and endpoint (empty: the SDK's and AWS's).
func ec2Args(cfg map[string]any, jobsFile string, self Self) ([]string, error) {
	for _, k := range []string{"worker_command", "sim_connections"} {
		if _, ok := cfg[k]; ok {
			return nil, fmt.Errorf("config.%s: not for driver \"ec2\"; an ec2 worker runs the sitter its job's instance table names", k)
		}
	}
	args := []string{"--home", self.Home, "--jobs", jobsFile, "--driver", ec2Driver}
	for _, k := range []string{"ec2_region", "ec2_endpoint_url"} {
		v, ok := cfg[k]
		if !ok {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("config.%s: want a string, got %T", k, v)
		}
		if s != "" {
			args = append(args, "--"+strings.ReplaceAll(k, "_", "-"), s)
		}
	}
	if self.ManagementURLFile != "" {
		// Each worker gets a broker user of its own, created by the
		// provisioner, which needs the management API for that.
		args = append(args, "--management-url-file", self.ManagementURLFile)
	} else if err := sharedWorkerUserAccepted(cfg); err != nil {
		return nil, err
	}
	return tuningArgs(args, cfg, "max_launches", "max_terminations")
}

// sharedWorkerUserAccepted is checkWorkerIdentity again at boot, on the
// resolved config: a management_url that was a ${...} reference at load
// may resolve to nothing, and workers would then get the provisioner's
// own credentials although the plan never accepted that.
func sharedWorkerUserAccepted(cfg map[string]any) error {
	if shared, _ := cfg["shared_worker_user"].(bool); shared {
		return nil
	}
	return fmt.Errorf("config.management_url: resolved to nothing, so every worker would hold the provisioner's broker credentials; " +
		"give the broker's management API, or set shared_worker_user = true to accept that on a trusted network")
}

// simArgs are the provisioner's arguments for simulated workers; a job's
// instance table sets their boot delay, heartbeat interval and fail rate.
func simArgs(cfg map[string]any, jobsFile string, self Self) ([]string, error) {
	if _, ok := cfg["worker_command"]; ok {
		return nil, fmt.Errorf("config.worker_command: simulated workers run nothing")
	}
	args := []string{"--home", self.Home, "--jobs", jobsFile, "--driver", simDriver}
	if self.ManagementURLFile != "" {
		// The provisioner creates the simulator's own broker user.
		args = append(args, "--management-url-file", self.ManagementURLFile)
	}
	return tuningArgs(args, cfg, "max_launches", "max_terminations", "sim_connections")
}

// writeRunJobs writes the worker specs of every job the plan's controller
// services define to path (0600), resolved as the controllers resolve
// them, for the provisioner to load with --jobs: it launches only these,
// so no message can choose what a worker runs. Two controllers may define
// one job only identically.
func writeRunJobs(req bootlevel.StepRequest, path string) (map[string]jobspec.Spec, error) {
	if req.Plan == nil || req.Expand == nil {
		return nil, fmt.Errorf("the provisioner needs the plan's job definitions, and this engine passes none")
	}
	jobs := map[string]jobspec.Spec{}
	from := map[string]string{}
	for _, lv := range req.Plan.Levels {
		for _, svc := range lv.Services {
			if svc.Type != "controller" {
				continue
			}
			tables, _ := svc.TypeConfig["jobs"].(map[string]any)
			for _, name := range slices.Sorted(maps.Keys(tables)) {
				t, ok := tables[name].(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s: service %s: config.jobs.%s: want a table", svc.Pos, svc.Name, name)
				}
				spec, err := resolvedSpec(t, req.Expand)
				if err != nil {
					return nil, fmt.Errorf("%s: service %s: config.jobs.%s: %w", svc.Pos, svc.Name, name, err)
				}
				if prev, dup := jobs[name]; dup {
					a, _ := prev.Digest()
					b, _ := spec.Digest()
					if a != b {
						return nil, fmt.Errorf("%s: service %s: config.jobs.%s: defined differently by service %s; a job has one definition per run", svc.Pos, svc.Name, name, from[name])
					}
				}
				jobs[name], from[name] = spec, svc.Name
			}
		}
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("the plan has no controller service with [config.jobs.NAME] tables: the provisioner launches only the run's jobs")
	}
	return jobs, jobspec.Write(path, jobs)
}

// JobSpec is the worker spec of a controller service's job table t, its
// templates resolved with expand as the provisioner's type resolves them at
// boot: what mgmt rollout --from-plan takes from an edited plan.
func JobSpec(t map[string]any, expand func(string) (string, error)) (jobspec.Spec, error) {
	return resolvedSpec(t, expand)
}

// resolvedSpec expands the templates of a job's driver, instance and
// worker, the keys that decide what runs; the controller's keys (queue,
// ...) may refer to services that boot after the provisioner and are left
// alone.
func resolvedSpec(t map[string]any, expand func(string) (string, error)) (jobspec.Spec, error) {
	cp := maps.Clone(t)
	for _, k := range []string{"driver", "instance", "worker", jobspec.DNSKey} {
		if v, ok := t[k]; ok {
			e, err := expandValue(k, v, expand)
			if err != nil {
				return jobspec.Spec{}, err
			}
			cp[k] = e
		}
	}
	spec, err := jobspec.FromTable(cp)
	if err != nil {
		return spec, err
	}
	if h, ok := spec.Worker["health"]; ok {
		if _, err := sitter.ProbeFromTable("worker.", h); err != nil {
			return spec, err
		}
	}
	// Linked tasks' probes are checked the same way, at their keys.
	linked, _ := spec.Worker["linked"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(linked)) {
		t, _ := linked[name].(map[string]any)
		if h, ok := t["health"]; ok {
			if _, err := sitter.ProbeFromTable("worker.linked."+name+".", h); err != nil {
				return spec, err
			}
		}
	}
	return spec, nil
}

func expandValue(key string, v any, expand func(string) (string, error)) (any, error) {
	switch v := v.(type) {
	case string:
		s, err := expand(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (a worker may refer only to globals and to services of levels before the provisioner's)", key, err)
		}
		return s, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := expandValue(fmt.Sprintf("%s[%d]", key, i), e, expand)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			x, err := expandValue(key+"."+k, e, expand)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	default:
		return v, nil
	}
}

var controllerSpec = Spec{
	Name:        "controller",
	Component:   "controller",
	Role:        busid.RoleController,
	Permissions: busid.ControllerPermissions,
	Keys:        []string{"jobs", "tick", "store", "replicas", "lease_ttl"},
	Args: withStore(func(req bootlevel.StepRequest, cfg map[string]any, dir, binDir string, self Self) ([]string, error) {
		jobs, ok := cfg["jobs"].(map[string]any)
		if !ok || len(jobs) == 0 {
			return nil, fmt.Errorf("config.jobs: want one [config.jobs.NAME] table per worker pool")
		}
		if self.ManagementURL != "" {
			// A copy: the plan's tables are read by other services too.
			var mine map[string]any
			b, err := json.Marshal(jobs)
			if err == nil {
				err = json.Unmarshal(b, &mine)
			}
			if err != nil {
				return nil, fmt.Errorf("config.jobs: %w", err)
			}
			if err := ownQueueCredentials(mine, self.ManagementURL); err != nil {
				return nil, err
			}
			jobs = mine
		}
		data, err := json.MarshalIndent(map[string]any{"jobs": jobs}, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("config.jobs: %w", err)
		}
		jobsFile := filepath.Join(dir, "jobs.json")
		if err := os.WriteFile(jobsFile, data, 0o600); err != nil {
			return nil, err
		}
		// --state-dir is the controller's own (its store); --home is the
		// Nightshift home, as for every daemon; the launcher's own home
		// keeps the redaction registry.
		home := os.Getenv(nsenv.Home)
		args := []string{"--state-dir", dir, "--jobs", jobsFile, "--secret-file", runlayout.Of(self.Home, req.Run).Secret()}
		if self.Home != "" {
			args = append(args, "--home", self.Home)
		}
		if t, ok := cfg["tick"].(string); ok {
			args = append(args, "--tick", t)
		}
		if req.Plan != nil && req.Plan.Alerts != nil {
			// 0600: a webhook's URL is often its only credential.
			data, err := json.MarshalIndent(req.Plan.Alerts, "", "  ")
			if err != nil {
				return nil, fmt.Errorf("alerts: %w", err)
			}
			alertsFile := filepath.Join(dir, "alerts.json")
			if err := os.WriteFile(alertsFile, data, 0o600); err != nil {
				return nil, err
			}
			args = append(args, "--alerts", alertsFile)
			for _, sk := range req.Plan.Alerts.Sinks {
				if sk.URL != "" && home != "" {
					// Hidden wherever Nightshift shows text, as any secret.
					if err := redact.Register(runlayout.Of(home, req.Run).RedactValues(), sk.URL); err != nil {
						return nil, fmt.Errorf("alerts: %w", err)
					}
				}
			}
		}
		return args, nil
	}),
}

// ownQueueCredentials points every job's queue.management_url at the
// controller's own user, so the broker's admin credentials a plan names
// there never reach the controller's files.
func ownQueueCredentials(jobs map[string]any, own string) error {
	u, err := url.Parse(brokerurl.First(own))
	if err != nil {
		return fmt.Errorf("management url: %w", err)
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	for name, j := range jobs {
		job, _ := j.(map[string]any)
		q, _ := job["queue"].(map[string]any)
		raw, _ := q["management_url"].(string)
		if raw == "" {
			continue
		}
		mine, err := busid.WithUser(raw, user, pass)
		if err != nil {
			return fmt.Errorf("config.jobs.%s.queue.management_url: %w", name, err)
		}
		q["management_url"] = mine
	}
	return nil
}

func stringList(cfg map[string]any, key string) ([]string, error) {
	v, ok := cfg[key]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("config.%s: want a list of strings", key)
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("config.%s: want strings, got %T", key, e)
		}
		out = append(out, s)
	}
	return out, nil
}

// withStore adds the store the plan chose (config key store, a postgres://
// URL; absent means the daemon's SQLite file) to a daemon's arguments: the
// URL goes into a 0600 file in the daemon's directory (--store-file), never
// on its command line, and its password into the run's redaction
// registry, so it is hidden wherever Nightshift shows text.
func withStore(args func(req bootlevel.StepRequest, cfg map[string]any, dir, binDir string, self Self) ([]string, error)) func(req bootlevel.StepRequest, cfg map[string]any, dir, binDir string, self Self) ([]string, error) {
	return func(req bootlevel.StepRequest, cfg map[string]any, dir, binDir string, self Self) ([]string, error) {
		out, err := args(req, cfg, dir, binDir, self)
		if err != nil {
			return nil, err
		}
		v, ok := cfg["store"]
		if !ok {
			n, err := replicaCount(cfg)
			if err != nil {
				return nil, fmt.Errorf("config.replicas: %w", err)
			}
			if n > 1 {
				return nil, fmt.Errorf("config.replicas: %d replicas need a PostgreSQL store (config.store)", n)
			}
			return out, nil
		}
		s, _ := v.(string)
		u, perr := url.Parse(s)
		if perr != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			// Not echoed: it may hold a password.
			return nil, errors.New("config.store: want a postgres://user:password@host:port/database URL (leave it out for the SQLite store)")
		}
		if pass, ok := u.User.Password(); ok && pass != "" {
			if home := os.Getenv(nsenv.Home); home != "" {
				if err := redact.Register(runlayout.Of(home, req.Run).RedactValues(), pass); err != nil {
					return nil, fmt.Errorf("config.store: %w", err)
				}
			}
		}
		file := filepath.Join(dir, "store-url")
		if err := os.WriteFile(file, []byte(s+"\n"), 0o600); err != nil {
			return nil, err
		}
		out = append(out, "--store-file", file)
		n, err := replicaCount(cfg)
		if err != nil {
			return nil, fmt.Errorf("config.replicas: %w", err)
		}
		if _, ok := cfg["lease_ttl"]; ok && n <= 1 {
			return nil, errors.New("config.lease_ttl: only for replicas > 1")
		}
		if n > 1 {
			// Each replica stands by until it holds the role's lease, and
			// only then connects to the broker: a standby consumes nothing.
			out = append(out, "--lease", "--lease-file", filepath.Join(dir, LeaseFile))
			if v, ok := cfg["lease_ttl"]; ok {
				ttl, _ := v.(string)
				if d, err := time.ParseDuration(ttl); err != nil || d < 300*time.Millisecond {
					return nil, fmt.Errorf("config.lease_ttl: want a duration of at least 300ms such as \"15s\", got %v", v)
				}
				out = append(out, "--lease-ttl", ttl)
			}
		}
		return out, nil
	}
}

// LeaseFile is where, in its directory, a replica of a daemon records its
// role and epoch (leader.WriteState) for status.
const LeaseFile = "lease.json"

// MaxReplicas bounds config.replicas: one active daemon and a few standbys
// is the point; more only add connections to the store.
const MaxReplicas = 9

// CheckConfig is launchplan.Options.TypeCheck: the checks of a built-in
// type's config that hold whatever its ${...} references resolve to, run
// at plan load so that a plan the type would refuse mid-boot is refused
// before anything starts.
func CheckConfig(typ string, cfg map[string]any) error {
	for _, sp := range []Spec{provisionerSpec, controllerSpec} {
		if sp.Name == typ && sp.Check != nil {
			return sp.Check(cfg)
		}
	}
	return nil
}

// Replicas is launchplan.Options.Replicas for the built-in types: the
// provisioner's and the controller's config.replicas, 1 to MaxReplicas,
// more than 1 only with a PostgreSQL store (config.store), where the
// replicas' lease and shared state live. Other types have no replicas (0).
func Replicas(typ string, cfg map[string]any) (int, error) {
	if typ != "provisioner" && typ != "controller" {
		return 0, nil
	}
	n, err := replicaCount(cfg)
	if err != nil {
		return 0, err
	}
	if n > 1 {
		if s, _ := cfg["store"].(string); s == "" {
			return 0, fmt.Errorf("replicas = %d needs store = \"postgres://...\": replicas share their state and the lease that picks the active one in PostgreSQL", n)
		}
	}
	return n, nil
}

// replicaCount is config.replicas, 1 when absent; a plan's TOML gives an
// integer, a stored plan's JSON a float.
func replicaCount(cfg map[string]any) (int, error) {
	v, ok := cfg["replicas"]
	if !ok {
		return 1, nil
	}
	var n int
	switch x := v.(type) {
	case int64:
		n = int(x)
	case float64:
		if x != float64(int(x)) {
			return 0, fmt.Errorf("want a whole number of replicas, got %v", x)
		}
		n = int(x)
	default:
		return 0, fmt.Errorf("want a whole number of replicas, got %T", v)
	}
	if n < 1 || n > MaxReplicas {
		return 0, fmt.Errorf("want 1 to %d replicas, got %d", MaxReplicas, n)
	}
	return n, nil
}
