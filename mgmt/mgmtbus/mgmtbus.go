// Package mgmtbus connects mgmt to a running system: it finds the run's
// broker from the URL its broker service exported, signs commands with the
// run's secret, and gives mgmt the pools' status (from the controller), the
// teardown of pools (controller freeze, then provisioner terminate_all until
// nothing is live), live reconfiguration, and the local worker sweep. Every
// call is bounded, so a dead broker or daemon turns into an error that
// teardown answers with its sweeps instead of a hang.
package mgmtbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"nightshift/bootlevel"
	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/envelope"
	"nightshift/internal/pki"
	"nightshift/internal/runlayout"
	workerlocal "nightshift/internal/worker/localworker"
	"nightshift/mgmt"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/sitter/sitterbus"
)

// BrokerURL returns the URL mgmt connects with: the mgmt_url a broker
// service exported (mgmt's own broker user), else the url exported by the
// run's broker service (or any service exporting an amqp url).
func BrokerURL(ctx context.Context, st bootlevel.Store, run string) (string, error) {
	url, _, err := Broker(ctx, st, run)
	return url, err
}

// Broker returns the URL mgmt connects with (mgmt_url, mgmt's own user,
// when the broker service exported one, else its url) and the CA
// file it exported with it (ca_file; empty for a plain amqp:// broker), the
// CA an amqps:// broker is verified against.
func Broker(ctx context.Context, st bootlevel.Store, run string) (url, caFile string, err error) {
	recs, err := st.Services(ctx, run)
	if err != nil {
		return "", "", err
	}
	for _, s := range recs {
		if u := s.Attributes["mgmt_url"]; strings.HasPrefix(u, "amqp") {
			return u, s.Attributes["ca_file"], nil
		}
	}
	for _, s := range recs {
		if u := s.Attributes["url"]; strings.HasPrefix(u, "amqp") {
			return u, s.Attributes["ca_file"], nil
		}
	}
	return "", "", fmt.Errorf("run %s has no service exporting an amqp url", run)
}

// Conn is a connection to one run's bus.
type Conn struct {
	run    string
	bus    *amqpbus.Bus
	signer *envelope.Signer
	// sitterSigner signs drain and control to sitters (AlgEd25519).
	sitterSigner *envelope.Signer
	ctl          *ctlbus.Client
	prov         *client.Client
}

// Dial connects to the run's broker within timeout.
func Dial(ctx context.Context, st bootlevel.Store, home, run string, timeout time.Duration) (*Conn, error) {
	url, caFile, err := Broker(ctx, st, run)
	if err != nil {
		return nil, err
	}
	if caFile == "" && strings.HasPrefix(url, "amqps://") {
		// A broker on another host (the prod plan's) exports no path on
		// this machine; its certificate comes from the run's CA, kept here.
		if p := filepath.Join(runlayout.Of(home, run).PKI(), pki.CACertFile); fileExists(p) {
			caFile = p
		}
	}
	secret, err := envelope.LoadOrCreateSecret(runlayout.Of(home, run).Secret())
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _ := os.Hostname()
	bus, err := amqpbus.Dial(dctx, amqpbus.Config{URL: url, CAFile: caFile, Run: run, Name: "mgmt@" + host, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("connect to run %s's broker: %w", run, err)
	}
	// Commands to sitters are signed with the run's command key, which they
	// verify with its public half; never with the secret they do not hold.
	key, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(runlayout.Of(home, run).Secret()))
	if err != nil {
		return nil, err
	}
	signer := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(1024)}
	return &Conn{
		run: run, bus: bus, signer: signer, sitterSigner: &envelope.Signer{Key: key},
		ctl:  &ctlbus.Client{Bus: bus, Signer: signer, Sender: "mgmt", Timeout: 10 * time.Second},
		prov: client.New(bus, signer, "mgmt", slog.New(slog.DiscardHandler)),
	}, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Sitter returns a client for the sitter of instanceID, signing its drain
// and control with the run's command key as the sitter requires.
func (c *Conn) Sitter(instanceID string) *sitterbus.Client {
	return &sitterbus.Client{Bus: c.bus, InstanceID: instanceID, Sender: "mgmt", Signer: c.sitterSigner, Timeout: 10 * time.Second}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.bus.Close() }

// Jobs implements mgmt.JobSource through the controller's status RPC.
func (c *Conn) Jobs(ctx context.Context, run string) ([]mgmt.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.ctl.Status(ctx, "")
}

// Summaries is c as a mgmt.JobSource for the table of `mgmt status`: each
// pool of more than controller.MaxWorkerRows workers comes summarized, a
// few KiB where every worker of 10,000 is megabytes (issue 18).
func (c *Conn) Summaries() mgmt.JobSource { return summaries{c} }

type summaries struct{ c *Conn }

// Jobs implements mgmt.JobSource. A controller from before summaries
// refuses the request's unknown field; it is asked for every worker then,
// which the table summarizes itself.
func (s summaries) Jobs(ctx context.Context, run string) ([]mgmt.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	js, err := s.c.ctl.Summary(ctx, "")
	if errors.Is(err, ctlbus.ErrRemote) {
		return s.c.ctl.Status(ctx, "")
	}
	return js, err
}

// Reconfigure changes a job's policy live.
func (c *Conn) Reconfigure(ctx context.Context, job string, values map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.ctl.Reconfigure(ctx, job, values)
}

// Rollout starts a job's rollout (action start) or turns it back (undo).
func (c *Conn) Rollout(ctx context.Context, job, action string, req controller.RolloutRequest) (controller.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.ctl.Rollout(ctx, job, action, req)
}

// JobStatus returns one job's status from its controller.
func (c *Conn) JobStatus(ctx context.Context, job string) ([]controller.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.ctl.Status(ctx, job)
}

// Unblock ends every blocked job's block at once.
func (c *Conn) Unblock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.ctl.Unblock(ctx, "")
}

// Decisions returns a job's decision history, newest first.
func (c *Conn) Decisions(ctx context.Context, job string, limit int) ([]controller.DecisionRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.ctl.Decisions(ctx, job, limit)
}

// Freeze implements mgmt.PoolStopper.
func (c *Conn) Freeze(ctx context.Context, run string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.ctl.Freeze(ctx)
}

// TerminateAll implements mgmt.PoolStopper: terminate_all, then poll it
// until no instance is live (or the deadline passes), each wait sized to
// the work left (pollWait).
func (c *Conn) TerminateAll(ctx context.Context, run string, progress func(live int)) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The live ones only: they are what this destroys, and at 10,000
	// workers a run's ended records would make this the biggest reply of
	// the teardown.
	before, err := c.describe(ctx, provisioner.DescribeBody{LiveOnly: true})
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, i := range before.Instances {
		if i.State.Live() {
			live[i.ID] = true
		}
	}
	last, lastAt := -1, time.Time{}
	for {
		cctx, ccancel := context.WithTimeout(ctx, terminateAllTimeout(len(live)))
		n, err := c.prov.TerminateAll(cctx)
		ccancel()
		if err != nil {
			return nil, fmt.Errorf("terminate_all: %w", err)
		}
		now := time.Now()
		if n != last && progress != nil {
			progress(n)
		}
		if n == 0 {
			break
		}
		wait := pollWait(n, last, now.Sub(lastAt))
		last, lastAt = n, now
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("terminate_all: %d workers still live: %w", n, ctx.Err())
		case <-time.After(wait):
		}
	}
	gone := make([]string, 0, len(live))
	for id := range live {
		gone = append(gone, id)
	}
	return gone, nil
}

// terminateAllTimeout bounds one terminate_all call with live workers
// known to be live: the call answers once it has recorded each of them
// terminating, 3 to 7 s for 10,000 on a loaded 2-core machine
// (BenchmarkTerminateAllOverBus), and a call that runs out is a teardown
// that gives up on the pools and relies on the sweep. A provisioner that
// is gone has already failed the describe before it.
func terminateAllTimeout(live int) time.Duration {
	return 10*time.Second + time.Duration(live)*time.Millisecond
}

// Bounds of the wait between two polls of terminate_all.
const (
	minPollWait = 50 * time.Millisecond
	maxPollWait = 2 * time.Second
)

// pollWait is how long to wait before polling terminate_all again, with
// live workers left now, prev at the poll before, since long ago (prev
// is -1 at the first poll). A poll reads every live record in the
// provisioner, beside the terminations it waits for, so polling is sized
// to the work: half the time the last rate says is left, so that a big
// pool is polled a few times and the last worker's end is seen within a
// fraction of the whole, not within a fixed 500 ms whatever the size.
func pollWait(live, prev int, since time.Duration) time.Duration {
	if prev <= live || since <= 0 {
		// No rate yet (first poll, or nothing ended since): a short
		// look, longer for a bigger pool.
		return min(max(time.Duration(live)*100*time.Microsecond, minPollWait), maxPollWait)
	}
	left := time.Duration(float64(since) * float64(live) / float64(prev-live))
	return min(max(left/2, minPollWait), maxPollWait)
}

func (c *Conn) describe(ctx context.Context, body provisioner.DescribeBody) (provisioner.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.prov.Describe(cctx, body)
}

// BrokerUserSweeper deletes the broker users a run left behind (a worker
// whose end the provisioner never saw, the daemons', mgmt's) through the
// management API its broker service exported with the node's admin
// credentials. A broker that no longer answers took its users with it
// (a private node is stopped before the sweeps); one without a management
// API never had per-component users.
type BrokerUserSweeper struct {
	Store interface {
		Services(ctx context.Context, run string) ([]bootlevel.ServiceRecord, error)
	}
}

// Name implements mgmt.Sweeper.
func (BrokerUserSweeper) Name() string { return "broker-user" }

// Sweep implements mgmt.Sweeper.
func (s BrokerUserSweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	recs, err := s.Store.Services(ctx, run)
	if err != nil {
		return nil, nil, err
	}
	var admin busid.Admin
	for _, r := range recs {
		if u := r.Attributes["management_url"]; u != "" && r.Attributes["url"] != "" {
			hc, err := pki.HTTPClient(r.Attributes["ca_file"], "", 30*time.Second)
			if err != nil {
				return nil, nil, err
			}
			if us := r.Attributes["management_urls"]; us != "" {
				u = us // a cluster's: any node that answers
			}
			admin = busid.Admin{URL: u, VHost: busid.VHost(r.Attributes["url"]), Client: hc}
			break
		}
	}
	if admin.URL == "" {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	users, err := admin.Users(ctx, busid.RunPrefix(run))
	if errors.Is(err, busid.ErrUnreachable) {
		return nil, nil, nil
	}
	if err != nil || dryRun {
		return users, nil, err
	}
	destroyed, err = admin.DeleteUsers(ctx, busid.RunPrefix(run))
	for _, u := range users {
		if !slices.Contains(destroyed, u) {
			remaining = append(remaining, u)
		}
	}
	return destroyed, remaining, err
}

// WorkerSweeper kills local worker instances of a run found through their
// ownership markers, without the provisioner or its database.
type WorkerSweeper struct{ Home string }

// Name implements mgmt.Sweeper.
func (WorkerSweeper) Name() string { return "worker" }

// Sweep implements mgmt.Sweeper.
func (w WorkerSweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	owned, err := workerlocal.ListOwned(w.Home, run)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	if dryRun {
		for _, o := range owned {
			destroyed = append(destroyed, fmt.Sprintf("%s (job %s, pid %d)", o.InstanceID, o.Job, o.PID))
		}
		return destroyed, nil, nil
	}
	killed, err := workerlocal.Sweep(ctx, w.Home, run)
	return killed, nil, err
}
