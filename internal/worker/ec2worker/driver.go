// Package ec2worker is the provisioner Driver that runs each worker instance
// as an EC2 instance through internal/ec2, the one EC2 adapter. It owns the
// translation from the controller's launch spec (the job's `instance` table)
// to a tagged, idempotent EC2 launch whose user data starts a sitter, and
// the ownership marker that lets a restarted provisioner find its instances
// without a database: the tags nightshift:run, :owner=provisioner, :job,
// :launch and :instance.
package ec2worker

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift"
	"nightshift/internal/backoff"
	"nightshift/internal/ec2"
	"nightshift/internal/redact"
	"nightshift/internal/ssmparams"
	"nightshift/internal/worker/instlock"
	"nightshift/provisioner"
)

// Owner is the nightshift:owner tag of every instance this driver launches;
// List only reports instances carrying it, so plan services (owner
// "launch") are never adopted or killed as worker orphans.
const Owner = "provisioner"

// Paths on the instance. User data holds no secret: the broker URL (the
// worker's own password) is an SSM SecureString parameter the sitter reads
// with the instance's role, named in user data. The run's HMAC secret never
// goes to a worker at all: with it a worker could sign terminate_all.
const (
	specPath = "/etc/nightshift/spec.json"
	stateDir = "/var/lib/nightshift/sitter"
)

// maxUserData is EC2's limit on user data before base64.
const maxUserData = 16 * 1024

// Config wires a Driver.
type Config struct {
	// Run scopes every tag; required.
	Run string
	// Client is the default EC2 client, built by the caller with
	// ec2.New (credentials from the standard chain); required.
	Client *ec2.Client
	// Region and EndpointURL are what Client was built with, so a spec
	// naming the same ones reuses it.
	Region, EndpointURL string
	// NewClient builds clients for specs naming another region or endpoint;
	// nil means ec2.New.
	NewClient func(ctx context.Context, cfg ec2.Config) (*ec2.Client, error)
	// BrokerURL is what sitters connect to when a launch carries no URL of
	// its own (InstanceSpec.BrokerURL, the worker's own user, wins); it
	// carries a password, so it is stored as the worker's SSM parameter
	// (Params) and only the parameter's name is in user data. Required.
	BrokerURL string
	// Params returns the SSM parameter store of a region and endpoint
	// (the instance's, so its role reads the parameter there); nil means
	// SSMParams, the real one.
	Params func(ctx context.Context, region, endpoint string) (ParamStore, error)
	// BrokerCA is the PEM CA an amqps:// BrokerURL is verified against
	// (the run's CA); the sitter gets it in a file through user data.
	BrokerCA []byte
	// CommandKey is the public half of the run's command key; every
	// sitter gets it in user data to verify drain and control. Nil leaves
	// sitters refusing those commands.
	CommandKey ed25519.PublicKey
	// SitterArgs are appended to the sitter agent's arguments.
	SitterArgs []string
	// WaitTimeout bounds the wait for running with an address; default 5m.
	WaitTimeout time.Duration
	// LaunchAttempts bounds retries of ambiguous launch errors; default 3.
	LaunchAttempts int
	// RetryDelay is the first pause between attempts, doubled each time;
	// default 1s.
	RetryDelay time.Duration
	Clock      clockwork.Clock
	Log        *slog.Logger
}

// Driver implements provisioner.Driver on EC2.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	clients map[string]*ec2.Client // by region|endpoint
	params  map[string]ParamStore  // by region|endpoint
	locks   instlock.Set
}

// ParamStore keeps a run's secrets as SSM SecureString parameters;
// *ssmparams.Store satisfies it.
type ParamStore interface {
	// Put stores value as run's parameter rel and returns its full name.
	Put(ctx context.Context, run, rel, value string) (string, error)
	// Delete deletes parameters by full name; missing ones are no error.
	Delete(ctx context.Context, names []string) error
	// Region is the region the parameters live in.
	Region() string
}

// SSMParams is Config.Params on AWS: an ssmparams.Store for the region
// and endpoint, credentials from the standard chain.
func SSMParams(log *slog.Logger) func(ctx context.Context, region, endpoint string) (ParamStore, error) {
	return func(ctx context.Context, region, endpoint string) (ParamStore, error) {
		return ssmparams.New(ctx, ssmparams.Config{Region: region, EndpointURL: endpoint, Log: log})
	}
}

// brokerURLParam is the name, under the run's path, of a worker's broker
// URL parameter.
func brokerURLParam(instance string) string { return "workers/" + instance + "/broker-url" }

var (
	_ provisioner.Driver         = (*Driver)(nil)
	_ provisioner.Locator        = (*Driver)(nil)
	_ provisioner.EventualLister = (*Driver)(nil)
)

// New checks cfg.
func New(cfg Config) (*Driver, error) {
	switch {
	case cfg.Run == "":
		return nil, errors.New("ec2 worker driver: Run is required")
	case cfg.Client == nil:
		return nil, errors.New("ec2 worker driver: Client is required")
	case cfg.BrokerURL == "":
		return nil, errors.New("ec2 worker driver: BrokerURL is required (sitters report over it)")
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 5 * time.Minute
	}
	if cfg.LaunchAttempts <= 0 {
		cfg.LaunchAttempts = 3
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NewClient == nil {
		cfg.NewClient = ec2.New
	}
	if cfg.Params == nil {
		cfg.Params = SSMParams(cfg.Log)
	}
	d := &Driver{cfg: cfg, log: cfg.Log.With("driver", "ec2"), clients: map[string]*ec2.Client{}, params: map[string]ParamStore{}}
	d.clients[clientKey(cfg.Region, cfg.EndpointURL)] = cfg.Client
	return d, nil
}

// Name implements provisioner.Driver.
func (d *Driver) Name() string { return "ec2" }

func clientKey(region, endpoint string) string { return region + "|" + endpoint }

// client returns the client for a spec's region and endpoint; empty values
// mean the default client's.
func (d *Driver) client(ctx context.Context, ic InstanceConfig) (*ec2.Client, error) {
	region, endpoint := ic.Region, ic.EndpointURL
	if region == "" {
		region = d.cfg.Region
	}
	if endpoint == "" {
		endpoint = d.cfg.EndpointURL
	}
	if region == d.cfg.Region && endpoint == d.cfg.EndpointURL {
		return d.cfg.Client, nil
	}
	key := clientKey(region, endpoint)
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clients[key]; ok {
		return c, nil
	}
	c, err := d.cfg.NewClient(ctx, ec2.Config{Region: region, EndpointURL: endpoint, Log: d.cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("ec2 client for region %q endpoint %q: %w", region, endpoint, err)
	}
	d.clients[key] = c
	return c, nil
}

// paramStore returns the parameter store for a spec's region and endpoint,
// made once per place.
func (d *Driver) paramStore(ctx context.Context, ic InstanceConfig) (ParamStore, string, error) {
	region, endpoint := ic.Region, ic.EndpointURL
	if region == "" {
		region = d.cfg.Region
	}
	if endpoint == "" {
		endpoint = d.cfg.EndpointURL
	}
	key := clientKey(region, endpoint)
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.params[key]; ok {
		return s, endpoint, nil
	}
	s, err := d.cfg.Params(ctx, region, endpoint)
	if err != nil {
		return nil, "", fmt.Errorf("ssm parameters for region %q endpoint %q: %w", region, endpoint, err)
	}
	d.params[key] = s
	return s, endpoint, nil
}

// allParamStores lists every parameter store in use.
func (d *Driver) allParamStores() []ParamStore {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.params))
	for k := range d.params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]ParamStore, 0, len(keys))
	for _, k := range keys {
		out = append(out, d.params[k])
	}
	return out
}

// Locate implements provisioner.Locator: it makes a client for every region
// and endpoint the given job and launch specs name, so that List, Terminate
// and Health look there too. The provisioner calls it with its ledger's
// specs before each reconcile; without it a restarted provisioner would know
// only the default region and fail every worker elsewhere as disappeared. A
// spec this driver cannot read never launched anything, so it is skipped.
func (d *Driver) Locate(ctx context.Context, specs []json.RawMessage) error {
	for _, raw := range specs {
		ls, err := ParseSpec(raw)
		if err != nil {
			d.log.Debug("locate: spec skipped", "err", err)
			continue
		}
		if _, err := d.client(ctx, ls.Instance); err != nil {
			return fmt.Errorf("locate: %w", err)
		}
		// So Terminate after a restart deletes workers' parameters there.
		if _, _, err := d.paramStore(ctx, ls.Instance); err != nil {
			d.log.Warn("locate: ssm parameters", "err", err)
		}
	}
	return nil
}

// ListIsEventual implements provisioner.EventualLister: DescribeInstances
// may miss a live instance for a while, so one missing list is no proof.
func (d *Driver) ListIsEventual() bool { return true }

// allClients lists every distinct client this driver knows: the default one,
// and one per region and endpoint that a spec named (Locate, Launch).
func (d *Driver) allClients() []*ec2.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[*ec2.Client]bool{}
	keys := make([]string, 0, len(d.clients))
	for k := range d.clients {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []*ec2.Client
	for _, k := range keys {
		if c := d.clients[k]; !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// LaunchError is a launch that ended without a running instance. Reason is
// short and operator-facing (ec2.Reason's words); the cause is kept for
// errors.As and logs.
type LaunchError struct {
	Instance string
	Reason   string
	Err      error
}

func (e *LaunchError) Error() string { return fmt.Sprintf("ec2 instance %s: %s", e.Instance, e.Reason) }
func (e *LaunchError) Unwrap() error { return e.Err }

// Launch starts the worker's EC2 instance, or adopts the live one an earlier
// call (before a crash, or before an ambiguous error) started, and waits
// until it runs with an address. Host in the result is the EC2 instance id.
func (d *Driver) Launch(ctx context.Context, spec provisioner.InstanceSpec) (provisioner.LaunchResult, error) {
	if spec.Run != "" && spec.Run != d.cfg.Run {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: run %q is not this driver's run %q", spec.ID, spec.Run, d.cfg.Run)
	}
	ls, err := ParseSpec(spec.Spec)
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	cl, err := d.client(ctx, ls.Instance)
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	ud, err := d.userData(ctx, spec, ls)
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	ic := ls.Instance
	es := ec2.Spec{
		Image: ic.Image, InstanceType: ic.InstanceType, KeyName: ic.KeyName,
		SecurityGroupIDs: ic.SecurityGroups, SubnetID: ic.Subnet, IAMInstanceProfile: ic.IAMInstanceProfile,
		UserData: ud,
		Tags:     ec2.Tags{Run: d.cfg.Run, Owner: Owner, Job: spec.Job, Launch: spec.LaunchID, Instance: spec.ID},
	}
	defer d.locks.Lock(spec.ID)()
	inst, err := d.launchWithRetry(ctx, cl, es)
	if err != nil {
		d.log.Warn("ec2 launch failed", "instance", spec.ID, "err", redact.String(err.Error()))
		return provisioner.LaunchResult{}, &LaunchError{Instance: spec.ID, Reason: ec2.Reason(err), Err: err}
	}
	running, err := cl.WaitRunning(ctx, inst.ID, d.cfg.WaitTimeout)
	if err != nil {
		reason := fmt.Sprintf("%s did not come up: %v", inst.ID, err)
		if running.State != "" {
			reason = fmt.Sprintf("%s is %s instead of running", inst.ID, running.State)
		}
		return provisioner.LaunchResult{Host: inst.ID}, &LaunchError{Instance: spec.ID, Reason: reason, Err: err}
	}
	d.log.Info("ec2 worker running", "instance", spec.ID, "ec2_id", running.ID, "address", running.Address())
	return provisioner.LaunchResult{Host: running.ID, Address: running.Address(), State: nightshift.StateRunning,
		PrivateIP: running.PrivateIP, PublicIP: running.PublicIP}, nil
}

// launchWithRetry retries only errors that leave it unknown whether EC2
// launched anything; ec2.Launch looks by tag first, so a retry adopts rather
// than doubles. An answered refusal is final.
func (d *Driver) launchWithRetry(ctx context.Context, cl *ec2.Client, es ec2.Spec) (ec2.Instance, error) {
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: d.cfg.RetryDelay, Max: 30 * time.Second}}
	for attempt := 0; ; attempt++ {
		inst, err := cl.Launch(ctx, es)
		if err == nil || !ec2.Ambiguous(err) || attempt+1 >= d.cfg.LaunchAttempts || ctx.Err() != nil {
			return inst, err
		}
		d.log.Warn("ambiguous ec2 launch; looking up by tag before retrying",
			"instance", es.Tags.Instance, "attempt", attempt+1, "err", redact.String(err.Error()))
		select {
		case <-ctx.Done():
			return ec2.Instance{}, fmt.Errorf("retry ec2 launch %s: %w (after %v)", es.Tags.Instance, ctx.Err(), err)
		case <-d.cfg.Clock.After(wait.Next()):
		}
	}
}

// userData stores the worker's broker URL as its SSM parameter, then
// writes the launch spec to a file and runs ec2.WorkerUserData's script,
// which starts the sitter agent with the parameter's name. The parameter
// is written before the instance exists, so the sitter finds it at boot;
// a retried launch writes the same name again.
func (d *Driver) userData(ctx context.Context, spec provisioner.InstanceSpec, ls LaunchSpec) (string, error) {
	args := []string{"--spec", specPath, "--state-dir", stateDir}
	var b strings.Builder
	b.WriteString("#!/bin/sh\nset -eu\numask 077\nmkdir -p /etc/nightshift " + stateDir + "\n")
	fmt.Fprintf(&b, "printf '%%s\\n' %s > %s\n", shellQuote(string(spec.Spec)), specPath)
	broker := d.cfg.BrokerURL
	if spec.BrokerURL != "" {
		broker = spec.BrokerURL
	}
	ps, endpoint, err := d.paramStore(ctx, ls.Instance)
	if err != nil {
		return "", err
	}
	param, err := ps.Put(ctx, d.cfg.Run, brokerURLParam(spec.ID), broker)
	if err != nil {
		return "", fmt.Errorf("store the worker's broker URL: %w", err)
	}
	w := ec2.WorkerUserData{
		SitterPath: ls.Instance.SitterPath, SitterURL: ls.Instance.SitterURL,
		Run: d.cfg.Run, Job: spec.Job, InstanceID: spec.ID, BrokerCA: string(d.cfg.BrokerCA),
		BrokerURLParam: param, SSMRegion: ps.Region(), SSMEndpointURL: endpoint,
		Args: append(args, d.cfg.SitterArgs...),
	}
	if len(d.cfg.CommandKey) > 0 {
		w.CommandKey = hex.EncodeToString(d.cfg.CommandKey)
	}
	script := w.Script()
	if rest, ok := strings.CutPrefix(script, "#!/bin/sh\nset -eu\n"); ok {
		script = rest
	}
	b.WriteString(script)
	if b.Len() > maxUserData {
		return "", fmt.Errorf("user data is %d bytes, over EC2's %d: shorten the job's worker table", b.Len(), maxUserData)
	}
	return b.String(), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// find lists the live instances of this run and owner matching extra tags,
// across every client in use.
func (d *Driver) find(ctx context.Context, extra map[string]string) ([]ec2.Instance, map[string]*ec2.Client, error) {
	tags := map[string]string{ec2.TagRun: d.cfg.Run, ec2.TagOwner: Owner}
	for k, v := range extra {
		tags[k] = v
	}
	var out []ec2.Instance
	where := map[string]*ec2.Client{}
	for _, c := range d.allClients() {
		found, err := c.Find(ctx, tags, nil)
		if err != nil {
			return nil, nil, err
		}
		for _, i := range found {
			if where[i.ID] == nil {
				where[i.ID] = c
				out = append(out, i)
			}
		}
	}
	return out, where, nil
}

// Terminate terminates the EC2 instance tagged with instance id; one that is
// already gone (or never started) is not an error.
func (d *Driver) Terminate(ctx context.Context, id string) error {
	defer d.locks.Lock(id)()
	found, where, err := d.find(ctx, map[string]string{ec2.TagInstance: id})
	if err != nil {
		return fmt.Errorf("terminate %s: find by tag: %w", id, err)
	}
	var errs []error
	for _, i := range found {
		if err := where[i.ID].Terminate(ctx, []string{i.ID}); err != nil {
			errs = append(errs, err)
			continue
		}
		d.log.Info("ec2 worker terminated", "instance", id, "ec2_id", i.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("terminate %s: %w", id, err)
	}
	// Its broker URL is of no more use; teardown sweeps any left behind.
	if len(d.allParamStores()) == 0 {
		if _, _, err := d.paramStore(ctx, InstanceConfig{}); err != nil {
			d.log.Warn("delete worker's ssm parameter", "instance", id, "err", err)
		}
	}
	if name, err := ssmparams.Name(d.cfg.Run, brokerURLParam(id)); err == nil {
		for _, s := range d.allParamStores() {
			if err := s.Delete(ctx, []string{name}); err != nil {
				d.log.Warn("delete worker's ssm parameter", "instance", id, "err", err)
			}
		}
	}
	return nil
}

// List reports the run's live worker instances (pending, running, stopping,
// stopped) by their tags, so a restarted provisioner adopts the ones its
// records want and kills the rest.
func (d *Driver) List(ctx context.Context) ([]provisioner.Owned, error) {
	found, _, err := d.find(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list ec2 workers of run %s: %w", d.cfg.Run, err)
	}
	out := make([]provisioner.Owned, 0, len(found))
	for _, i := range found {
		id := i.Tags[ec2.TagInstance]
		if id == "" {
			// Tags come with RunInstances itself, so this is someone
			// else's hand-made instance; leave it to the run sweep.
			d.log.Warn("ec2 instance with run and owner tags but no instance tag", "ec2_id", i.ID)
			continue
		}
		out = append(out, provisioner.Owned{Run: d.cfg.Run, Job: i.Tags[ec2.TagJob], InstanceID: id, LaunchID: i.Tags[ec2.TagLaunch], Host: i.ID,
			PrivateIP: i.PrivateIP, PublicIP: i.PublicIP})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].InstanceID < out[b].InstanceID })
	return out, nil
}

// Health returns EC2's status-check verdict ("ok", "impaired",
// "initializing", ...) per Nightshift instance id, for the run's running
// workers. It is not part of provisioner.Driver; callers that want it type
// assert for it.
func (d *Driver) Health(ctx context.Context) (map[string]string, error) {
	found, where, err := d.find(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("health of run %s: %w", d.cfg.Run, err)
	}
	byClient := map[*ec2.Client][]string{}
	names := map[string]string{}
	for _, i := range found {
		byClient[where[i.ID]] = append(byClient[where[i.ID]], i.ID)
		names[i.ID] = i.Tags[ec2.TagInstance]
	}
	out := map[string]string{}
	for c, ids := range byClient {
		h, err := c.Health(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("health of run %s: %w", d.cfg.Run, err)
		}
		for ec2ID, v := range h {
			if n := names[ec2ID]; n != "" {
				out[n] = v
			}
		}
	}
	return out, nil
}

// State maps an EC2 instance state to Nightshift's ladder (ec2.MapState),
// for callers that describe instances themselves.
func State(ec2State string) nightshift.InstanceState { return ec2.MapState(ec2State) }
