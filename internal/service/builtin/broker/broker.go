// Package broker is the built-in `broker` service type: it gives a run
// its RabbitMQ. In private mode (the default for local plans) it starts a
// node of the run's own on this host — its own node name, ports, data and
// logs under the service's working directory, its own generated password —
// so several runs and the system broker never collide. In external mode it
// adopts an existing broker given by URL and never stops it. Readiness is an
// AMQP connection, plus the management API in private mode, because the
// queue-length engine needs it to count unacknowledged messages.
//
// With `nodes = N` (N > 1) private mode starts a cluster of N nodes on this
// host instead (cluster.go): distinct node names, ports and data dirs, one
// Erlang cookie, joined by classic-config peer discovery. The service
// exports every node's URL (`urls`, `mgmt_url`) besides the first node's
// (`url`), and clients given the list fail over between the nodes and
// declare quorum queues (package amqpbus).
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/bootlevel"
	"nightshift/internal/amqpbus"
	"nightshift/internal/brokerurl"
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
	// Nodes is how many RabbitMQ nodes a private broker runs as one
	// cluster on this host: 1 (the default) or 3 and up for a quorum that
	// outlives one node. With fixed ports, node i uses port+i-1 (and so
	// for the management and distribution ports).
	Nodes int
}

// MaxNodes bounds `nodes`: each node is an Erlang VM of ~150 MB on one host.
const MaxNodes = 7

// Keys lists the accepted config keys.
func Keys() []string {
	return []string{"mode", "url", "port", "management_port", "dist_port", "user", "tls", "ca_file", "nodes"}
}

// ParseConfig reads and checks a broker's config table.
func ParseConfig(m map[string]any) (Config, error) {
	c := Config{Mode: "private", User: "nightshift", Nodes: 1}
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
		case "nodes":
			c.Nodes, err = nodeCount(v)
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
		for i, p := range []int{c.Port, c.ManagementPort, c.DistPort} {
			if p != 0 && p+c.Nodes-1 > 65535 {
				return Config{}, fmt.Errorf("config.%s: %d nodes from port %d run past 65535", []string{"port", "management_port", "dist_port"}[i], c.Nodes, p)
			}
		}
	case "external":
		if c.URL == "" {
			return Config{}, errors.New("config.url: required for mode = \"external\"")
		}
		if c.Nodes != 1 {
			return Config{}, errors.New("config.nodes: only for mode = \"private\"; give an external cluster's nodes as a comma-separated url list")
		}
		// An external cluster is adopted as the list of its nodes' URLs.
		if err := amqpbus.CheckURL(c.URL); err != nil {
			return Config{}, fmt.Errorf("config.url: want amqp://user:pass@host:port/vhost (or a cluster's, comma-separated): %w", err)
		}
		u, err := url.Parse(brokerurl.First(c.URL))
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

func nodeCount(v any) (int, error) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64: // the stored plan is JSON
		if x != float64(int64(x)) {
			return 0, fmt.Errorf("config.nodes: want a whole number, got %v", x)
		}
		n = int64(x)
	default:
		return 0, fmt.Errorf("config.nodes: want a whole number, got %T", v)
	}
	if n < 1 || n > MaxNodes {
		return 0, fmt.Errorf("config.nodes: want 1 to %d, got %d (3 keeps a quorum when one node is lost)", MaxNodes, n)
	}
	return int(n), nil
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
		u, _ := url.Parse(brokerurl.First(cfg.URL))
		return bootlevel.Host{Hostname: u.Hostname(), InstanceID: "external"}, nil
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return bootlevel.Host{Hostname: host, InstanceID: nodesOf(run, svc.Name, "", cfg.Nodes)[0].name}, nil
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
		if cfg.Mode == "private" && away == nil {
			for _, n := range nodesOf(req.Run, req.Service.Name, req.WorkDir, cfg.Nodes) {
				if !nodeRunning(n.dir) {
					lg.printf("ready failed: the RabbitMQ node %s is not running", n.name)
					return bootlevel.StepResult{ExitCode: 1, Tail: lg.tail(), Gone: true}, nil
				}
			}
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

func (t *Type) boot(ctx context.Context, req bootlevel.StepRequest, cfg Config, lg *stepLog) (map[string]string, error) {
	if cfg.Mode == "external" {
		u, _ := url.Parse(brokerurl.First(cfg.URL))
		lg.printf("using external broker %s", redact.URL(cfg.URL))
		// No management API, so no per-component users: mgmt shares the URL
		// (all of a cluster's nodes, to fail over between them).
		return map[string]string{"url": brokerurl.First(cfg.URL), "urls": cfg.URL, "mgmt_url": cfg.URL, "host": u.Hostname(), "port": portOf(u), "mode": "external", "management_url": "", "ca_file": cfg.CAFile, "nodes": strconv.Itoa(len(brokerurl.Split(cfg.URL)))}, nil
	}
	if _, err := os.Stat(t.ServerPath); err != nil {
		return nil, fmt.Errorf("rabbitmq-server is not installed (%s missing): apt-get install rabbitmq-server", t.ServerPath)
	}
	nodes := nodesOf(req.Run, req.Service.Name, req.WorkDir, cfg.Nodes)
	clustered := len(nodes) > 1
	// A re-boot (repair after a node died) keeps the nodes' password and
	// ports: RabbitMQ applies default_pass only to an empty database, and
	// every daemon and sitter of the run holds a URL with both. The first
	// node's state holds the passwords of all.
	prev, _ := loadState(nodes[0].dir)
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
	cl := cluster{}
	if clustered {
		var err error
		if cl, err = t.newCluster(req, nodes); err != nil {
			return nil, err
		}
	}
	started := make([]nodeAddr, len(nodes))
	var tlsFiles *serverFiles
	for i, n := range nodes {
		if clustered && nodeRunning(n.dir) {
			// A live node of the cluster is left alone: re-booting the
			// service restarts the nodes that are down, not the quorum.
			st, err := loadState(n.dir)
			if err != nil {
				return nil, fmt.Errorf("node %s runs but its state is unreadable: %w", n.name, err)
			}
			started[i] = nodeAddr{ports: []int{st.Port, st.ManagementPort, st.DistPort}}
			if cfg.TLS && tlsFiles == nil {
				// Kept as they are (a certificate that still verifies is
				// not reissued); only their paths are wanted here.
				if tlsFiles, err = t.serverCert(req.Run, n.dir, lg); err != nil {
					return nil, err
				}
			}
			cl.live++
			lg.printf("RabbitMQ node %s is running; left as it is", n.name)
			continue
		}
		// A node left from an earlier boot of this service is stopped
		// first, so a re-boot never leaves two nodes of one service; a dead
		// node's pid file goes too (a stale one would make the new node
		// look dead until it writes its own, and the restart start it
		// again).
		if err := stopNode(ctx, n.dir, 30*time.Second, lg); err != nil {
			return nil, err
		}
		blank := isBlank(n.dir)
		addr, err := t.startNode(ctx, req, cfg, n, i, pass, mgmtPass, cl, lg)
		if err != nil {
			return nil, err
		}
		started[i] = addr
		if addr.tls != nil {
			tlsFiles = addr.tls
		}
		if clustered && blank && cl.live == 0 && i < len(nodes)-1 {
			// The first node of a new cluster must run before the others
			// look for it: a blank node joins the first listed peer that
			// answers, and with none it would form a cluster of its own.
			// (A node with data is not waited for: it waits for its peers.)
			if err := awaitNode(ctx, n, addr.ports[0], lg); err != nil {
				return nil, err
			}
		}
		cl.live++
	}
	scheme, mgmtScheme := "amqp", "http"
	if cfg.TLS {
		scheme, mgmtScheme = "amqps", "https"
	}
	var urls, mgmtURLs, mgmtAMQPs, ports, names []string
	for i, a := range started {
		host := fmt.Sprintf("127.0.0.1:%d", a.ports[0])
		urls = append(urls, (&url.URL{Scheme: scheme, User: url.UserPassword(cfg.User, pass), Host: host, Path: "/"}).String())
		mgmtURLs = append(mgmtURLs, (&url.URL{Scheme: mgmtScheme, User: url.UserPassword(cfg.User, pass), Host: fmt.Sprintf("127.0.0.1:%d", a.ports[1])}).String())
		// mgmt's own user: created by the ready step, once the node answers.
		mgmtAMQPs = append(mgmtAMQPs, (&url.URL{Scheme: scheme, User: url.UserPassword(busid.MgmtUser(req.Run), mgmtPass), Host: host, Path: "/"}).String())
		ports = append(ports, strconv.Itoa(a.ports[0]))
		names = append(names, nodes[i].name)
	}
	// url, port, node and management_url are the first node's, as they
	// were before clusters; urls and mgmt_url name every node, for
	// clients that fail over between them.
	out := map[string]string{
		"url": urls[0], "urls": brokerurl.Join(urls), "mgmt_url": brokerurl.Join(mgmtAMQPs), "host": "127.0.0.1", "port": ports[0],
		"management_url": mgmtURLs[0], "node": names[0], "mode": "private", "nodes": strconv.Itoa(len(nodes)),
		"user": cfg.User, "password": pass, "data_dir": nodes[0].dir, "ca_file": "",
	}
	if clustered {
		out["ports"] = strings.Join(ports, ",")
		out["management_urls"] = brokerurl.Join(mgmtURLs)
		out["cluster_nodes"] = strings.Join(names, ",")
	}
	if tlsFiles != nil {
		out["ca_file"] = tlsFiles.runCA
	}
	return out, nil
}

// dir is the (first) node's directory; a node on another host keeps its
// state there too.
func (t *Type) dir(req bootlevel.StepRequest) string { return filepath.Join(req.WorkDir, "rabbit") }

// node is one RabbitMQ node of a broker service: its Erlang node name and
// its directory (data, logs, config, pid file).
type node struct {
	name, dir string
}

// nodesOf lists the nodes of a broker service whose working directory is
// workDir. A single node keeps the name and directory it always had; a
// cluster's first node keeps the directory too (tools find its pid file
// there), and every node's name says which it is.
func nodesOf(run, svc, workDir string, n int) []node {
	if n <= 1 {
		return []node{{name: "ns-" + run + "-" + svc + "@localhost", dir: filepath.Join(workDir, "rabbit")}}
	}
	out := make([]node, n)
	for i := range out {
		dir := filepath.Join(workDir, "rabbit")
		if i > 0 {
			dir += "-" + strconv.Itoa(i+1)
		}
		out[i] = node{name: fmt.Sprintf("ns-%s-%s-b%d@localhost", run, svc, i+1), dir: dir}
	}
	return out
}

// nodeAddr is what a started node listens on: AMQP(S), management, Erlang
// distribution; and its TLS files, with tls = true.
type nodeAddr struct {
	ports []int
	tls   *serverFiles
}

// startNode writes node n's configuration and state and starts it
// detached. i is its index among the service's nodes (fixed ports count
// up from the configured ones).
func (t *Type) startNode(ctx context.Context, req bootlevel.StepRequest, cfg Config, n node, i int, pass, mgmtPass string, cl cluster, lg *stepLog) (nodeAddr, error) {
	dir := n.dir
	prev, _ := loadState(dir)
	ports := []int{cfg.Port, cfg.ManagementPort, cfg.DistPort}
	for j := range ports {
		if ports[j] != 0 {
			ports[j] += i
		}
	}
	for j, p := range []int{prev.Port, prev.ManagementPort, prev.DistPort} {
		if ports[j] == 0 && p != 0 {
			ports[j] = p
		}
	}
	for j, p := range ports {
		if p == 0 {
			free, err := freePort()
			if err != nil {
				return nodeAddr{}, err
			}
			ports[j] = free
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "mnesia"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nodeAddr{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	var tlsFiles *serverFiles
	if cfg.TLS {
		var err error
		if tlsFiles, err = t.serverCert(req.Run, dir, lg); err != nil {
			return nodeAddr{}, err
		}
	}
	conf := nodeConf(ports, cfg.User, pass, tlsFiles) + cl.conf()
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o600); err != nil {
		return nodeAddr{}, err
	}
	if err := saveState(dir, nodeState{User: cfg.User, Password: pass, MgmtPassword: mgmtPass, Port: ports[0], ManagementPort: ports[1], DistPort: ports[2], Booted: time.Now()}); err != nil {
		return nodeAddr{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[rabbitmq_management].\n"), 0o600); err != nil {
		return nodeAddr{}, err
	}
	if err := cl.install(dir); err != nil {
		return nodeAddr{}, err
	}
	cred, err := runAs(dir, lg)
	if err != nil {
		return nodeAddr{}, err
	}
	cmd := exec.CommandContext(ctx, t.ServerPath, "-detached")
	cmd.Dir = dir // where a failed boot leaves erl_crash.dump
	cmd.Env = append(os.Environ(), envList(req.Env)...)
	cmd.Env = append(cmd.Env,
		"HOME="+dir,
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[2]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
	)
	cmd.Env = append(cmd.Env, cl.env()...)
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
	lg.printf("starting private RabbitMQ node %s on %s://127.0.0.1:%d (management %s port %d) in %s", n.name, scheme, ports[0], mgmtScheme, ports[1], dir)
	if err := cmd.Run(); err != nil {
		return nodeAddr{}, fmt.Errorf("start rabbitmq node %s: %w", n.name, err)
	}
	return nodeAddr{ports: ports, tls: tlsFiles}, nil
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

// home is Nightshift's home: Type.Home, else $NIGHTSHIFT_HOME.
func (t *Type) home() string {
	if t.Home != "" {
		return t.Home
	}
	return os.Getenv(nsenv.Home)
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
	home := t.home()
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
		if us := req.Service.Attributes["urls"]; us != "" {
			raw = us
		}
		mgmtURL = req.Service.Attributes["management_url"]
		caFile = req.Service.Attributes["ca_file"]
	}
	if raw == "" {
		return errors.New("no broker url recorded: the boot step did not export one")
	}
	// Every node must answer: a cluster is ready when all of it is.
	for _, one := range brokerurl.Split(raw) {
		if err := dialReady(ctx, one, caFile); err != nil {
			return err
		}
	}
	if mgmtURL != "" {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := mgmtReady(dctx, mgmtURL, caFile); err != nil {
			return err
		}
		if cfg.Nodes > 1 {
			if err := clusterReady(dctx, mgmtURL, caFile, cfg.Nodes); err != nil {
				return err
			}
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

// dialReady opens and closes one AMQP connection to raw, one node's URL.
func dialReady(ctx context.Context, raw, caFile string) error {
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
	// A cluster's mgmt_url lists every node; they share their users.
	u, err := url.Parse(brokerurl.First(raw))
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
	nodes := nodesOf(req.Run, req.Service.Name, req.WorkDir, cfg.Nodes)
	if req.Reboot && len(nodes) > 1 {
		// A restart of a cluster (the keeper's after a node died, a
		// repair's): its live nodes are its quorum and where its clients
		// failed over to. Stopping them would turn the loss of one node
		// into an outage of all; the boot that follows starts the nodes
		// that are down and leaves the others running.
		lg.printf("restart of a cluster: its running nodes are left running")
		return nil
	}
	// All nodes at once: a cluster's nodes stopped one by one each wait
	// for the others' quorum queues to hand over leadership.
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { errs <- stopNode(ctx, n.dir, 30*time.Second, lg) }()
	}
	var all []error
	for range nodes {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return err
	}
	// A restart (the keeper's, repair's) boots the same node again: its
	// users (every daemon's and worker's own), vhost and durable queues
	// must survive, or every client is locked out of the new node.
	if req.Reboot {
		lg.printf("stopped %d RabbitMQ node(s); their data stays for the reboot", len(nodes))
		return nil
	}
	// The run is over for this broker: its messages and its cluster
	// membership go with it (the state file stays, so a later boot of
	// the service hands out the same URLs to a blank node).
	for _, n := range nodes {
		if err := os.RemoveAll(filepath.Join(n.dir, "mnesia")); err != nil {
			return fmt.Errorf("remove the data of node %s: %w", n.name, err)
		}
	}
	lg.printf("stopped %d RabbitMQ node(s) and removed their data", len(nodes))
	return nil
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
	// An argument equal to dir (the VM's -home): a substring would take
	// a peer's ".../rabbit-2" for the first node's ".../rabbit".
	return slices.Contains(strings.Split(string(b), "\x00"), dir)
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
	// A cluster is alive when every node is: a lost node is restarted by
	// re-booting the service, which starts only the nodes that are down.
	// pid is the first node's.
	alive = true
	for i, n := range nodesOf("", svc.Name, workDir, cfg.Nodes) {
		if i == 0 {
			if data, err := os.ReadFile(filepath.Join(n.dir, "pid")); err == nil {
				pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
			}
		}
		alive = alive && nodeRunning(n.dir)
	}
	return pid, alive, true
}
