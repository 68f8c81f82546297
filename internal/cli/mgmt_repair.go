package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/progress"
	"nightshift/internal/termtext"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newRepairCmd) }

func newRepairCmd(m *mgmtCmd) *cobra.Command {
	var max int
	c := &cobra.Command{
		Use:   "repair RUN",
		Short: "re-verify every service, restart failed ones, unblock blocked pools",
		Example: `  mgmt repair hello
  mgmt repair hello --max-restarts 5`,
		Args: clikit.Args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.repair(cmd.Context(), run, max)
		},
	}
	c.Flags().IntVar(&max, "max-restarts", 2, "restart a failed service at most this many times")
	return c
}

func (m *mgmtCmd) repair(ctx context.Context, run string, max int) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	m.learn(ctx, a, run)
	release, err := app.LockRun(m.home, run, "mgmt repair")
	if err != nil {
		return err
	}
	defer release()
	os.Setenv(app.HomeEnv, m.home)
	// Live progress per service, as launch shows it; --json gets only the
	// result.
	var pr *progress.Printer
	if !m.asJSON {
		pr = progress.New(m.stdout, isTerminal(m.stdout) && !m.plain, m.red)
		a.Engine.OnEvent = pr.Event
	}
	rep, err := a.Engine.Repair(ctx, run, max)
	if err == nil && hasPools(ctx, a, run) {
		// A person repairing the run has looked at it: blocked pools
		// launch again now rather than at their next probe.
		if uerr := unblockPools(ctx, a, m.home, run); uerr != nil {
			fmt.Fprintf(m.stderr, "note: pools not unblocked: %s\n", m.line(uerr.Error()))
		}
	}
	if m.asJSON {
		if rep == nil {
			return err
		}
		if jerr := m.json(repairResultOf(rep)); jerr != nil {
			return jerr
		}
		return err
	}
	if rep != nil {
		for _, f := range rep.Failures {
			fmt.Fprintln(m.stderr, "  "+indent(termtext.Text(m.red.String(f.Error()))))
		}
		fmt.Fprintf(m.stdout, "run %s is %s (%s)\n", m.line(rep.Run), rep.State, progress.Round(pr.Elapsed()))
	}
	return err
}

func unblockPools(ctx context.Context, a *app.App, home, run string) error {
	conn, err := mgmtbus.Dial(ctx, a.Store, home, run, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Unblock(ctx)
}

// repairResult is what `mgmt repair --json` prints.
type repairResult struct {
	Run      string          `json:"run"`
	State    string          `json:"state"`
	Services []repairService `json:"services"`
	Failures []string        `json:"failures"`
}

type repairService struct {
	Name     string `json:"name"`
	Level    int    `json:"level"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	Error    string `json:"error,omitempty"`
}

func repairResultOf(rep *bootlevel.Report) repairResult {
	out := repairResult{Run: rep.Run, State: string(rep.State), Services: []repairService{}, Failures: []string{}}
	for _, s := range rep.Services {
		out.Services = append(out.Services, repairService{Name: s.Name, Level: s.Level, State: string(s.State), Restarts: s.Restarts, Error: s.Error})
	}
	for _, f := range rep.Failures {
		out.Failures = append(out.Failures, f.Error())
	}
	return out
}
