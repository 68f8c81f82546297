package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newReconfigureCmd) }

func newReconfigureCmd(m *mgmtCmd) *cobra.Command {
	return &cobra.Command{
		Use:   "reconfigure RUN JOB KEY=VALUE...",
		Short: "change a pool's policy live (validated by its engine); unblocks it",
		Example: `  mgmt reconfigure hello sleepers n=5
  mgmt reconfigure hello work max=8 scale_down_after=2m`,
		Args:              clikit.Args(3, -1),
		Annotations:       map[string]string{noJSON: "mgmt reconfigure prints one confirmation line"},
		ValidArgsFunction: m.completeArgs(runNames, jobNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.reconfigure(cmd.Context(), run, args[1], args[2:])
		},
	}
}

func (m *mgmtCmd) reconfigure(ctx context.Context, run, job string, kvs []string) error {
	values := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return app.Usagef("want key=value, got %q", kv)
		}
		values[k] = parseValue(v)
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, run)
	conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Reconfigure(ctx, job, values); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "job %s reconfigured: %s\n", m.line(job), m.line(strings.Join(kvs, " ")))
	return nil
}

// parseValue gives numbers and booleans their type, so an engine checks
// n=5 as a number; anything else (durations included) stays a string.
func parseValue(v string) any {
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return i
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return v
}
