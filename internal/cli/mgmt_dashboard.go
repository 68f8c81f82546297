package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"nightshift/controller"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/mgmt"
	"nightshift/mgmt/dashboard"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newDashboardCmd) }

type dashboardOptions struct {
	addr     string
	interval time.Duration
}

func newDashboardCmd(m *mgmtCmd) *cobra.Command {
	var o dashboardOptions
	c := &cobra.Command{
		Use:   "dashboard RUN",
		Short: "serve a read-only web page of the run (levels, pools, decisions, plots) and print its URL",
		Example: `  mgmt dashboard hello
  mgmt dashboard hello --addr 0.0.0.0:8080`,
		Args:        clikit.Args(1, 1),
		Annotations: map[string]string{noJSON: "mgmt dashboard serves a web page"},
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.dashboard(cmd.Context(), run, o)
		},
	}
	c.Flags().StringVar(&o.addr, "addr", "127.0.0.1:0", "address to serve on; off loopback a bearer token is required ($"+nsenv.DashboardToken+", or one is generated)")
	c.Flags().DurationVar(&o.interval, "interval", time.Second, "how often the run's status is read")
	return c
}

// dashboard serves the run's web dashboard (package mgmt/dashboard) until
// interrupted. It prints the URL to open first, on its own line.
func (m *mgmtCmd) dashboard(ctx context.Context, run string, o dashboardOptions) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	m.learn(ctx, a, run)
	src := &dashSource{m: m, a: a, run: run}
	defer src.close()
	srv, err := dashboard.Listen(dashboard.Options{
		Addr: o.addr, Token: os.Getenv(nsenv.DashboardToken), Source: src, Interval: o.interval, Log: a.Log,
	})
	if err != nil {
		return &app.UsageError{Err: err}
	}
	fmt.Fprintf(m.stdout, "dashboard of run %s: %s\n", m.line(run), srv.URL())
	if !srv.Loopback() {
		fmt.Fprintf(m.stdout, "bound off loopback: requests need the header Authorization: Bearer %s\n", srv.Token())
	}
	return srv.Serve(ctx)
}

// dashSource reads the run for the dashboard the way `mgmt status --json`
// does, keeping one connection to the run's bus across polls (dialled
// again after a failure), and redacts everything with the run's secrets.
type dashSource struct {
	m   *mgmtCmd
	a   *app.App
	run string

	mu   sync.Mutex
	conn *mgmtbus.Conn
}

func (d *dashSource) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
}

// bus returns the connection, dialling it when there is none.
func (d *dashSource) bus(ctx context.Context) (*mgmtbus.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		c, err := mgmtbus.Dial(ctx, d.a.Store, d.m.home, d.run, 3*time.Second)
		if err != nil {
			return nil, err
		}
		d.conn = c
	}
	return d.conn, nil
}

// Status implements dashboard.Source.
func (d *dashSource) Status(ctx context.Context) (*mgmt.RunStatus, error) {
	// Services export new secrets as they boot: learn them on every poll.
	d.m.learn(ctx, d.a, d.run)
	var jobs mgmt.JobSource
	var note string
	if livePools(ctx, d.a, d.run) {
		if c, err := d.bus(ctx); err != nil {
			note = "pools unavailable: " + err.Error()
		} else {
			jobs = c
		}
	}
	st, err := runStatus(ctx, d.a, d.m.home, d.run, jobs, note)
	if err != nil {
		return nil, err
	}
	if jobs != nil && len(st.Notes) > 0 {
		// The pools could not be read: dial afresh next time.
		d.close()
	}
	return mgmt.Redact(st, d.m.red)
}

// Decisions implements dashboard.Source.
func (d *dashSource) Decisions(ctx context.Context, job string, limit int) ([]controller.DecisionRecord, error) {
	c, err := d.bus(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := c.Decisions(ctx, job, limit)
	if err != nil {
		return nil, err
	}
	return redactJSON(ds, d.m.red)
}

// History implements dashboard.HistorySource: the samples the run's
// controller stored (mgmt.History reads its store read-only), so the plot
// reaches back before the dashboard started.
func (d *dashSource) History(ctx context.Context, job string, since time.Time) ([]dashboard.Point, error) {
	h, err := mgmt.History(ctx, app.OpenHistory, d.m.home, d.run, job, since)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Point, 0, len(h.Samples))
	for _, s := range h.Samples {
		out = append(out, dashboard.Point{Time: s.Time, Desired: s.Desired, Running: s.Running, Healthy: s.Healthy, Queue: s.QueueDepth})
	}
	return out, nil
}

// redactJSON returns a copy of v in which every string has passed through
// red, as mgmt.Redact does for a status.
func redactJSON[T any](v T, red *redact.Redactor) (T, error) {
	var buf bytes.Buffer
	var out T
	if err := red.EncodeJSON(&buf, v); err != nil {
		return out, fmt.Errorf("redact: %w", err)
	}
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return out, fmt.Errorf("redact: %w", err)
	}
	return out, nil
}
