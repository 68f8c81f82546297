package cli

import (
	"context"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/runlayout"
)

// What a RUN, SERVICE, WORKER or JOB argument completes to, read from the
// home named by --home (or its default). Completion only reads: a home
// without a run database completes to nothing, and nothing is created.

// names is the kind of name an argument position completes to.
type names int

const (
	runNames names = iota
	serviceOrWorkerNames
	jobNames
)

// completeArgs completes each positional argument by its kind, in order;
// later positions complete to nothing.
func (m *mgmtCmd) completeArgs(kinds ...names) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= len(kinds) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		home, err := app.ResolveHome(m.homeFlag)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		var out []string
		switch kinds[len(args)] {
		case runNames:
			out = runsOf(ctx, home)
		case serviceOrWorkerNames:
			out = append(servicesOf(ctx, home, args[0]), workersOf(home, args[0])...)
		case jobNames:
			out = jobsOf(ctx, home, args[0])
		}
		return withPrefix(out, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func withPrefix(all []string, prefix string) []string {
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// openStore opens the home's run store, or nil when it has none.
func openStore(ctx context.Context, home string) app.RunStore {
	st, err := app.OpenRunStore(ctx, home, false)
	if err != nil || st == nil {
		return nil
	}
	return st
}

func runsOf(ctx context.Context, home string) []string {
	st := openStore(ctx, home)
	if st == nil {
		return nil
	}
	defer st.Close()
	runs, err := st.ListRuns(ctx)
	if err != nil {
		return nil
	}
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.Name
	}
	return out
}

func servicesOf(ctx context.Context, home, run string) []string {
	st := openStore(ctx, home)
	if st == nil {
		return nil
	}
	defer st.Close()
	recs, err := st.Services(ctx, run)
	if err != nil {
		return nil
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Name
	}
	return out
}

func workersOf(home, run string) []string {
	ents, err := os.ReadDir(runlayout.Of(home, run).Instances())
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func jobsOf(ctx context.Context, home, run string) []string {
	st := openStore(ctx, home)
	if st == nil {
		return nil
	}
	defer st.Close()
	r, err := st.GetRun(ctx, run)
	if err != nil {
		return nil
	}
	p, err := bootlevel.LoadRunPlan(r)
	if err != nil {
		return nil
	}
	out := make([]string, len(p.Jobs))
	for i, j := range p.Jobs {
		out[i] = j.Name
	}
	return out
}
