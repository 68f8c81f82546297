package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/clikit"
	"nightshift/internal/redact"
	"nightshift/internal/termtext"
)

func init() { registerMgmt(newHistoryCmd) }

func newHistoryCmd(m *mgmtCmd) *cobra.Command {
	return &cobra.Command{
		Use:   "history RUN",
		Short: "the run's event history",
		Example: `  mgmt history hello
  mgmt history hello --json`,
		Args: clikit.Args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.history(cmd.Context(), run)
		},
	}
}

func (m *mgmtCmd) history(ctx context.Context, run string) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	m.learn(ctx, a, run)
	evs, err := a.Store.Events(ctx, run, 0)
	if err != nil {
		return err
	}
	if m.asJSON {
		return m.json(evs)
	}
	for _, e := range evs {
		e.Message = m.red.String(e.Message)
		fmt.Fprintln(m.stdout, historyLine(e))
	}
	return nil
}

// historyLine shows one event on one line, escaped; the caller has redacted
// its message with the run's secrets.
func historyLine(e bootlevel.Event) string {
	s := fmt.Sprintf("%5d %s", e.Seq, e.Time.Local().Format("2006-01-02 15:04:05.000"))
	if e.Level > 0 {
		s += fmt.Sprintf(" L%d", e.Level)
	}
	if e.Service != "" {
		s += " " + e.Service
	}
	s += " " + e.Kind
	if e.Step != "" {
		s += " step=" + string(e.Step)
	}
	if e.State != "" {
		s += " state=" + e.State
	}
	if e.Message != "" {
		s += ": " + redact.String(e.Message)
	}
	return termtext.Line(s)
}
