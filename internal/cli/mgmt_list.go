package cli

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nightshift/internal/clikit"
)

func init() { registerMgmt(newListCmd) }

func newListCmd(m *mgmtCmd) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list runs",
		Long:  "list shows every run of the home, oldest first; --json gives the records as a JSON array.",
		Example: `  mgmt list
  mgmt list --json | jq -r '.[] | select(.state == "ready") | .name'`,
		Args: clikit.Args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error { return m.list(cmd.Context()) },
	}
}

func (m *mgmtCmd) list(ctx context.Context) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	runs, err := a.Store.ListRuns(ctx)
	if err != nil {
		return err
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Created.Before(runs[j].Created) })
	if m.asJSON {
		return m.json(runs)
	}
	tw := tabwriter.NewWriter(m.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tCREATED\tPLAN")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.line(r.Name), m.line(string(r.State)), r.Created.Local().Format(time.DateTime), m.line(r.PlanPath))
	}
	return tw.Flush()
}
