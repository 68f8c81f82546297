// Package broker is the built-in `broker` service type: it gives a run
// its RabbitMQ. In private mode (the default for local plans) it starts a
// node of the run's own on this host — its own node name, ports, data and
// logs under the service's working directory, its own generated password —
// so several runs and the system broker never collide. In external mode it
// adopts an existing broker given by URL and never stops it. Readiness is an
// AMQP connection, plus the management API in private mode, because the
// queue-length engine needs it to count unacknowledged messages.
//
// With `tls = true` a private node serves AMQPS only (plain AMQP is off) and
// its management API over HTTPS, with a certificate issued by the run's own
// CA (package pki), whose key stays in the launcher's run directory. The
// service exports an amqps:// URL and `ca_file`, the CA certificate every
// client verifies the broker against.
package broker

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/bootlevel"
	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/nsenv"
	"nightshift/internal/pki"
	"nightshift/internal/process"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// Type implements bootlevel.Driver for `type = "broker"` services.
type Type struct {
	Log *slog.Logger
	// ServerPath is RabbitMQ's own start script (not Debian's wrapper, which
	// insists on /var/lib/rabbitmq as working directory).
	ServerPath string
	// Home is Nightshift's home, where a run's CA is kept (runlayout.Run.PKI); empty
	// means $NIGHTSHIFT_HOME, which launch and mgmt set.
	Home string
	// Drivers are the engine's drivers by name: a private node whose
	// service's driver is not local runs on the host that driver gives it
	// (remote.go).
	Drivers map[string]bootlevel.Driver
}

var _ bootlevel.Driver = (*Type)(nil)

// New returns the broker type with Debian's paths.
func New(log *slog.Logger) *Type {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Type{Log: log, ServerPath: "/usr/lib/rabbitmq/bin/rabbitmq-server"}
}

// Config is a broker service's `config` table.
type Config struct {
	Mode           string // "private" or "external"
	URL            string // external mode
	Port           int    // private mode; 0 picks a free port
	ManagementPort int
	DistPort       int
	User           string
	TLS            bool   // private mode: AMQPS and HTTPS only, certificates from the run's CA
	CAFile         string // external mode: the CA an amqps:// URL's broker is verified against
}

// Keys lists the accepted config keys.
func Keys() []string {
	return []string{"mode", "url", "port", "management_port", "dist_port", "user", "tls", "ca_file"}
}

// ParseConfig reads and checks a broker's config table.
func ParseConfig(m map[string]any) (Config, error) {
	c := Config{Mode: "private", User: "nightshift"}
	for k, v := range m {
		var err error
		switch k {
		case "mode":
			c.Mode, err = str(k, v)
		case "url":
			c.URL, err = str(k, v)
		case "user":
			c.User, err = str(k, v)
		case "port":
			c.Port, err = port(k, v)
		case "management_port":
			c.ManagementPort, err = port(k, v)
		case "dist_port":
			c.DistPort, err = port(k, v)
		case "tls":
			b, ok := v.(bool)
			if !ok {
				err = fmt.Errorf("config.tls: want true or false, got %T", v)
			}
			c.TLS = b
		case "ca_file":
			c.CAFile, err = str(k, v)
		default:
			err = fmt.Errorf("config.%s: unknown key for a broker (known: %s)", k, strings.Join(Keys(), ", "))
		}
		if err != nil {
			return Config{}, err
		}
	}
	switch c.Mode {
	case "private":
		if c.URL != "" {
			return Config{}, errors.New("config.url: only for mode = \"external\"")
		}
		if c.CAFile != "" {
			return Config{}, errors.New("config.ca_file: only for mode = \"external\" (a private node with tls = true makes its own CA)")
		}
	case "external":
		if c.URL == "" {
			return Config{}, errors.New("config.url: required for mode = \"external\"")
		}
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") {
			return Config{}, fmt.Errorf("config.url: want amqp://user:pass@host:port/vhost, got %q", redact.URL(c.URL))
		}
		if c.TLS {
			return Config{}, errors.New("config.tls: only for mode = \"private\"; an external broker uses TLS when its url is amqps://")
		}
		if c.CAFile != "" && u.Scheme != "amqps" {
			return Config{}, errors.New("config.ca_file: only with an amqps:// url")
		}
	default:
		return Config{}, fmt.Errorf("config.mode: want private or external, got %q", c.Mode)
	}
	return c, nil
}

func str(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("config.%s: want a string, got %T", k, v)
	}
	return s, nil
}

func port(k string, v any) (int, error) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64:
		n = int64(x)
	case string:
		p, err := strconv.Atoi(x)
		if err != nil {
			return 0, fmt.Errorf("config.%s: want a port number, got %q", k, x)
		}
		n = int64(p)
	default:
		return 0, fmt.Errorf("config.%s: want a port number, got %T", k, v)
	}
	if n < 0 || n > 65535 {
		return 0, fmt.Errorf("config.%s: %d is not a port", k, n)
	}
	return int(n), nil
}

// Acquire: the broker runs on this machine (private) or wherever its URL says.
func (t *Type) Acquire(ctx context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	cfg, err := ParseConfig(svc.TypeConfig)
	if err != nil {
		return bootlevel.Host{}, fmt.Errorf("broker %s: %w", svc.Name, err)
	}
	if drv, err := t.placed(svc, cfg); err != nil || drv != nil {
		if err != nil {
			return bootlevel.Host{}, err
		}
		return drv.Acquire(ctx, run, svc)
	}
	if cfg.Mode == "external" {
		u, _ := url.Parse(cfg.URL)
		return bootlevel.Host{Hostname: u.Hostname(), InstanceID: "external"}, nil
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return bootlevel.Host{Hostname: host, InstanceID: nodeName(run, svc.Name)}, nil
}

// Release: nothing to give back here, the terminate step stopped the
// node; a host the driver acquired goes back through it.
func (t *Type) Release(ctx context.Context, run string, svc *launchplan.Service, host bootlevel.Host) error {
	cfg, err := ParseConfig(svc.TypeConfig)
	if err != nil {
		return fmt.Errorf("broker %s: %w", svc.Name, err)
	}
	drv, err := t.placed(svc, cfg)
	if err != nil || drv == nil {
		return err
	}
	return drv.Release(ctx, run, svc, host)
}

// Run performs the boot, ready and terminate steps.
func (t *Type) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	cfg, err := ParseConfig(req.Service.TypeConfig)
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("broker %s: %w", req.Service.Name, err)
	}
	away, err := t.away(req.Service, cfg)
	if err != nil {
		return bootlevel.StepResult{}, err
	}
	lg := newStepLog(req.LogPath, req.Scrub)
	defer lg.close()
	var stepErr error
	var out map[string]string
	switch req.Step {
	case bootlevel.StepBoot:
		if away != nil {
			out, stepErr = t.install(ctx, away, req, cfg, lg)
		} else {
			out, stepErr = t.boot(ctx, req, cfg, lg)
		}
	case bootlevel.StepReady:
		if cfg.Mode == "private" && away == nil && !nodeRunning(t.dir(req)) {
			lg.printf("ready failed: the RabbitMQ node is not running")
			return bootlevel.StepResult{ExitCode: 1, Tail: lg.tail(), Gone: true}, nil
		}
		stepErr = t.ready(ctx, req, cfg, lg)
	case bootlevel.StepTerminate:
		if away != nil {
			stepErr = t.uninstall(ctx, away, req, lg)
		} else {
			stepErr = t.terminate(ctx, req, cfg, lg)
		}
	default:
		return bootlevel.StepResult{}, nil
	}
	if stepErr != nil {
		if ctx.Err() != nil {
			return bootlevel.StepResult{Tail: lg.tail()}, fmt.Errorf("broker %s %s: %w", req.Service.Name, req.Step, errors.Join(stepErr, ctx.Err()))
		}
		lg.printf("%s failed: %v", req.Step, stepErr)
		return bootlevel.StepResult{ExitCode: 1, Tail: lg.tail()}, nil
	}
	return bootlevel.StepResult{Outputs: out, Tail: lg.tail()}, nil
}

func nodeName(run, svc string) string { return "ns-" + run + "-" + svc + "@localhost" }

func (t *Type) dir(req bootlevel.StepRequest) string { return filepath.Join(req.WorkDir, "rabbit") }

func (t *Type) boot(ctx context.Context, req bootlevel.StepRequest, cfg Config, lg *stepLog) (map[string]string, error) {
	if cfg.Mode == "external" {
		u, _ := url.Parse(cfg.URL)
		lg.printf("using external broker %s", redact.URL(cfg.URL))
		// No management API, so no per-component users: mgmt shares the URL.
		return map[string]string{"url": cfg.URL, "mgmt_url": cfg.URL, "host": u.Hostname(), "port": portOf(u), "mode": "external", "management_url": "", "ca_file": cfg.CAFile}, nil
	}
	if _, err := os.Stat(t.ServerPath); err != nil {
		return nil, fmt.Errorf("rabbitmq-server is not installed (%s missing): apt-get install rabbitmq-server", t.ServerPath)
	}
	dir := t.dir(req)
	// A node left from an earlier boot of this service is stopped first, so
	// a re-boot never leaves two nodes of one service.
	if err := stopNode(ctx, dir, 30*time.Second, lg); err != nil {
		return nil, err
	}
	// A re-boot (repair after the node died) keeps the node's password and
	// ports: RabbitMQ applies default_pass only to an empty database, and
	// every daemon and sitter of the run holds a URL with both.
	prev, _ := loadState(dir)
	ports := []int{cfg.Port, cfg.ManagementPort, cfg.DistPort}
	for i, p := range []int{prev.Port, prev.ManagementPort, prev.DistPort} {
		if ports[i] == 0 && p != 0 {
			ports[i] = p
		}
	}
	for i, p := range ports {
		if p == 0 {
			free, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[i] = free
		}
	}
	pass := prev.Password
	if pass == "" || prev.User != cfg.User {
		var err error
		if pass, err = password(); err != nil {
			return nil, err
		}
	}
	mgmtPass := prev.MgmtPassword
	if mgmtPass == "" {
		var err error
		if mgmtPass, err = password(); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "mnesia"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	var tlsFiles *serverFiles
	if cfg.TLS {
		var err error
		if tlsFiles, err = t.serverCert(req.Run, dir, lg); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(nodeConf(ports, cfg.User, pass, tlsFiles)), 0o600); err != nil {
		return nil, err
	}
	if err := saveState(dir, nodeState{User: cfg.User, Password: pass, MgmtPassword: mgmtPass, Port: ports[0], ManagementPort: ports[1], DistPort: ports[2], Booted: time.Now()}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[rabbitmq_management].\n"), 0o600); err != nil {
		return nil, err
	}
	cred, err := runAs(dir, lg)
	if err != nil {
		return nil, err
	}
	node := nodeName(req.Run, req.Service.Name)
	cmd := exec.CommandContext(ctx, t.ServerPath, "-detached")
	cmd.Dir = dir // where a failed boot leaves erl_crash.dump
	cmd.Env = append(os.Environ(), envList(req.Env)...)
	cmd.Env = append(cmd.Env,
		"HOME="+dir,
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[2]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
	)
	if tlsFiles == nil {
		// Only for plain AMQP: RABBITMQ_NODE_PORT would open the TCP
		// listener that `listeners.tcp = none` keeps shut.
		cmd.Env = append(cmd.Env, "RABBITMQ_NODE_PORT="+strconv.Itoa(ports[0]))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setsid: true}
	if cred != nil {
		cmd.Env = append(cmd.Env, "USER=rabbitmq", "LOGNAME=rabbitmq")
	}
	cmd.Stdout, cmd.Stderr = lg.file(), lg.file()
	scheme, mgmtScheme := "amqp", "http"
	if tlsFiles != nil {
		scheme, mgmtScheme = "amqps", "https"
	}
	lg.printf("starting private RabbitMQ node %s on %s://127.0.0.1:%d (management %s port %d) in %s", node, scheme, ports[0], mgmtScheme, ports[1], dir)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("start rabbitmq node %s: %w", node, err)
	}
	u := &url.URL{Scheme: scheme, User: url.UserPassword(cfg.User, pass), Host: fmt.Sprintf("127.0.0.1:%d", ports[0]), Path: "/"}
	mgmtURL := (&url.URL{Scheme: mgmtScheme, User: url.UserPassword(cfg.User, pass), Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}).String()
	// mgmt's own user: created by the ready step, once the node answers.
	mgmtAMQP := &url.URL{Scheme: scheme, User: url.UserPassword(busid.MgmtUser(req.Run), mgmtPass), Host: u.Host, Path: "/"}
	out := map[string]string{
		"url": u.String(), "mgmt_url": mgmtAMQP.String(), "host": "127.0.0.1", "port": strconv.Itoa(ports[0]),
		"management_url": mgmtURL, "node": node, "mode": "private",
		"user": cfg.User, "password": pass, "data_dir": dir, "ca_file": "",
	}
	if tlsFiles != nil {
		out["ca_file"] = tlsFiles.runCA
	}
	return out, nil
}

// nodeConf renders rabbitmq.conf. With TLS the only AMQP listener is the
// TLS one, and the management API, still bound to loopback, speaks HTTPS
// only. Client certificates are not asked for: clients log in with a
// password, over a channel whose server they have verified.
func nodeConf(ports []int, user, pass string, tf *serverFiles) string {
	var b strings.Builder
	if tf == nil {
		fmt.Fprintf(&b, "listeners.tcp.default = 127.0.0.1:%d\nmanagement.tcp.port = %d\nmanagement.tcp.ip = 127.0.0.1\n", ports[0], ports[1])
	} else {
		fmt.Fprintf(&b, "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:%d\n", ports[0])
		for _, prefix := range []string{"ssl_options", "management.ssl"} {
			fmt.Fprintf(&b, "%s.cacertfile = %s\n%s.certfile = %s\n%s.keyfile = %s\n", prefix, tf.ca, prefix, tf.cert, prefix, tf.key)
		}
		b.WriteString("ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n")
		b.WriteString("ssl_options.versions.1 = tlsv1.3\nssl_options.versions.2 = tlsv1.2\n")
		fmt.Fprintf(&b, "management.ssl.port = %d\nmanagement.ssl.ip = 127.0.0.1\n", ports[1])
	}
	fmt.Fprintf(&b, "loopback_users = none\ncollect_statistics_interval = 1000\ndefault_user = %s\ndefault_pass = %s\n", user, pass)
	return b.String()
}

// serverFiles are the node's TLS files, inside its data dir (readable by
// the node's user), and the run CA's certificate that clients are given.
type serverFiles struct {
	ca, cert, key string
	runCA         string
}

// serverCert makes sure the node has a certificate from the run's CA for
// every name it is reached by. A re-boot keeps a certificate that still
// verifies, names them all and is not about to expire, as it keeps the
// password: clients hold the CA, and a kept certificate changes nothing for
// them. The CA's key stays in the run's pki directory, outside dir, which
// is handed to the rabbitmq user.
func (t *Type) serverCert(run, dir string, lg *stepLog) (*serverFiles, error) {
	home := t.Home
	if home == "" {
		home = os.Getenv(nsenv.Home)
	}
	if home == "" {
		return nil, errors.New("tls: no Nightshift home to keep the run's CA in ($NIGHTSHIFT_HOME is not set)")
	}
	now := time.Now()
	caDir := runlayout.Of(home, run).PKI()
	ca, err := pki.LoadOrCreateCA(caDir, run, now)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o750); err != nil {
		return nil, err
	}
	tf := &serverFiles{
		ca: filepath.Join(tlsDir, "ca.pem"), cert: filepath.Join(tlsDir, "server.pem"), key: filepath.Join(tlsDir, "server.key"),
		runCA: filepath.Join(caDir, pki.CACertFile),
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	if err := pki.WriteFile(tf.ca, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	_, _, why, err := ca.LoadOrIssue(tlsDir, "server", hosts, now)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	lg.printf("tls: node certificate for %s from the run's CA %s: %s", strings.Join(hosts, ", "), tf.runCA, why)
	return tf, nil
}

func (t *Type) ready(ctx context.Context, req bootlevel.StepRequest, cfg Config, lg *stepLog) error {
	raw, caFile := cfg.URL, cfg.CAFile
	mgmtURL := ""
	if cfg.Mode == "private" {
		raw = req.Service.Attributes["url"]
		mgmtURL = req.Service.Attributes["management_url"]
		caFile = req.Service.Attributes["ca_file"]
	}
	if raw == "" {
		return errors.New("no broker url recorded: the boot step did not export one")
	}
	var roots *x509.CertPool
	if caFile != "" {
		var err error
		if roots, err = pki.LoadPool(caFile); err != nil {
			return err
		}
	}
	tc, err := amqpbus.TLSConfig(raw, roots)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := amqp.DialConfig(raw, amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(dctx, network, addr)
	}, Properties: amqp.Table{"connection_name": "nightshift-ready-check"}, TLSClientConfig: tc})
	if err != nil {
		return fmt.Errorf("connect %s: %s", redact.URL(raw), redact.String(err.Error()))
	}
	conn.Close()
	if mgmtURL != "" {
		if err := mgmtReady(dctx, mgmtURL, caFile); err != nil {
			return err
		}
		uctx, ucancel := context.WithTimeout(ctx, 10*time.Second)
		defer ucancel()
		if err := ensureMgmtUser(uctx, req, caFile); err != nil {
			return err
		}
	}
	lg.printf("broker %s is ready", redact.URL(raw))
	return nil
}

// ensureMgmtUser creates (or re-grants: it is idempotent) the broker user
// mgmt connects as, from the mgmt_url the boot step exported. Components
// and workers never see the node's admin user; mgmt does not either.
func ensureMgmtUser(ctx context.Context, req bootlevel.StepRequest, caFile string) error {
	raw := req.Service.Attributes["mgmt_url"]
	if raw == "" {
		return nil // booted by a version without per-component users
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("mgmt_url: %s", redact.String(err.Error()))
	}
	client, err := pki.HTTPClient(caFile, "", 30*time.Second)
	if err != nil {
		return err
	}
	pass, _ := u.User.Password()
	admin := busid.Admin{URL: req.Service.Attributes["management_url"], VHost: busid.VHost(raw), Client: client}
	return admin.EnsureUser(ctx, u.User.Username(), pass, busid.MgmtPermissions(req.Run))
}

func mgmtReady(ctx context.Context, mgmtURL, caFile string) error {
	client, err := pki.HTTPClient(caFile, "", 0)
	if err != nil {
		return err
	}
	u, err := url.Parse(mgmtURL)
	if err != nil {
		return fmt.Errorf("management url: %w", err)
	}
	pass, _ := u.User.Password()
	userName := u.User.Username()
	u.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/api/overview", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(userName, pass)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("management api %s: %s", u.String(), redact.String(err.Error()))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management api %s: HTTP %d", u.String(), resp.StatusCode)
	}
	return nil
}

func (t *Type) terminate(ctx context.Context, req bootlevel.StepRequest, cfg Config, lg *stepLog) error {
	if cfg.Mode == "external" {
		lg.printf("external broker left running")
		return nil
	}
	return stopNode(ctx, t.dir(req), 30*time.Second, lg)
}

// stopNode stops the node whose pid file is in dir: SIGTERM (the Erlang VM
// shuts down cleanly on it), then SIGKILL after grace. No pid file, or a
// pid that is gone or no longer the node's VM, means there is nothing to stop.
func stopNode(ctx context.Context, dir string, grace time.Duration, lg *stepLog) error {
	err := process.StopPIDFile(ctx, filepath.Join(dir, "pid"), grace, func(pid int) bool { return isNode(pid, dir) },
		func(pid int) { lg.printf("stopping RabbitMQ node (pid %d)", pid) },
		func(int) { lg.printf("node did not stop within %s: SIGKILL", grace) })
	if err != nil {
		return fmt.Errorf("rabbitmq node: %w", err)
	}
	return nil
}

// nodeRunning reports whether the node started in dir is alive. A node
// booted moments ago whose pid file is not written yet counts as running.
func nodeRunning(dir string) bool {
	pid, err := process.ReadPIDFile(filepath.Join(dir, "pid"))
	if errors.Is(err, os.ErrNotExist) {
		st, serr := loadState(dir)
		return serr == nil && time.Since(st.Booted) < 30*time.Second
	}
	return err == nil && isNode(pid, dir)
}

// isNode reports whether pid is alive and is the VM of the node in dir
// (pids are reused; the VM's command line names its home).
func isNode(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := process.ReadStat("", pid); err == nil && st.Zombie() {
		return false
	}
	return strings.Contains(string(b), dir)
}

// runAs returns the credential to start the node with. As root we prefer
// the rabbitmq user, whose files Debian's tools expect, but only when it can
// reach dir: the run's own directories (under $NIGHTSHIFT_HOME) are opened
// for traversal, nothing above them is touched, and when something above
// them is closed (a home under /root, say) the node runs as root instead.
func runAs(dir string, lg *stepLog) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		lg.printf("no rabbitmq user; running the node as root")
		return nil, nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	home := filepath.Clean(os.Getenv(nsenv.Home))
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.Mode().Perm()&0o001 != 0 {
			continue
		}
		if home != "." && (p == home || strings.HasPrefix(p, home+string(filepath.Separator))) {
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				return nil, err
			}
			continue
		}
		lg.printf("user rabbitmq cannot reach %s (%s is closed); running the node as root", dir, p)
		return nil, nil
	}
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return nil, fmt.Errorf("give %s to rabbitmq: %w", dir, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// nodeState is what a re-boot of the same node must keep.
type nodeState struct {
	User           string `json:"user"`
	Password       string `json:"password"`
	MgmtPassword   string `json:"mgmt_password,omitempty"`
	Port           int    `json:"port"`
	ManagementPort int    `json:"management_port"`
	DistPort       int    `json:"dist_port"`
	// Booted is when the node was last started: a node without a pid file
	// is still starting shortly after, and stopped later.
	Booted time.Time `json:"booted"`
}

func loadState(dir string) (nodeState, error) {
	var st nodeState
	b, err := os.ReadFile(filepath.Join(dir, "nightshift-node.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func saveState(dir string, st nodeState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "nightshift-node.json"), b, 0o600)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func password() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "amqps" {
		return "5671"
	}
	return "5672"
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// Process reports the private node a broker service runs from workDir: its
// VM's pid and whether it is alive. An external broker is not this host's
// to watch (watched is false).
func (t *Type) Process(workDir string, svc *launchplan.Service) (pid int, alive, watched bool) {
	cfg, err := ParseConfig(svc.TypeConfig)
	if err != nil || cfg.Mode != "private" {
		return 0, false, false
	}
	if away, err := t.away(svc, cfg); err != nil || away != nil {
		return 0, false, false // its host's systemd keeps it
	}
	dir := filepath.Join(workDir, "rabbit")
	if data, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	return pid, nodeRunning(dir), true
}
