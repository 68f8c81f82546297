package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/runlayout"
	"nightshift/internal/termtext"
	"nightshift/internal/worker/localworker"
	"nightshift/mgmt"
)

func init() { registerMgmt(newLogsCmd) }

type logsOptions struct {
	follow, raw bool
	lines       int
}

func newLogsCmd(m *mgmtCmd) *cobra.Command {
	var o logsOptions
	c := &cobra.Command{
		Use:   "logs RUN SERVICE|WORKER",
		Short: "print a service's or a worker's log",
		Long: `logs prints the log of a service (its step log, and a built-in daemon's own
log) or of a worker instance (the sitter's output and its tasks' logs).
Lines are escaped unless --raw; secrets are redacted either way.`,
		Example: `  mgmt logs hello echo
  mgmt logs hello echo -f -n 50`,
		Args:              clikit.Args(2, 2),
		Annotations:       map[string]string{noJSON: "mgmt logs prints log lines as written"},
		ValidArgsFunction: m.completeArgs(runNames, serviceOrWorkerNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.logs(cmd.Context(), run, args[1], o)
		},
	}
	c.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing what is appended")
	c.Flags().IntVarP(&o.lines, "lines", "n", 200, "start with the last N lines of each file (0: whole file)")
	c.Flags().BoolVar(&o.raw, "raw", false, "print lines as written, without escaping control characters (secrets are still redacted)")
	return c
}

func (m *mgmtCmd) logs(ctx context.Context, run, name string, o logsOptions) error {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsFunc(name, unicode.IsControl) {
		return app.Usagef("service or worker name %s cannot be a file name", strconv.Quote(name))
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, run)
	files, err := logFiles(ctx, a, m.home, run, name)
	if err != nil {
		return err
	}
	if unit, host := hostUnit(ctx, a, run, name); unit != "" {
		// A daemon installed on a host of its own logs to that host's
		// journal, which is not here: say where, rather than show less
		// than a local daemon's log without a word.
		fmt.Fprintf(m.stderr, "note: %s runs as unit %s on %s; its own output is there: journalctl -u %s\n",
			termtext.Line(name), termtext.Line(unit), termtext.Line(host), termtext.Line(unit))
	}
	return mgmt.ShowLogs(ctx, m.stdout, files, mgmt.LogOptions{Lines: o.lines, Follow: o.follow, Redactor: m.red, Raw: o.raw})
}

// hostUnit is the systemd unit and host of a service whose built-in type
// installed its daemon on another host (it exported unit, and no log here).
func hostUnit(ctx context.Context, a *app.App, run, name string) (unit, host string) {
	recs, err := a.Store.Services(ctx, run)
	if err != nil {
		return "", ""
	}
	for _, s := range recs {
		if s.Name == name && s.Attributes["unit"] != "" && s.Attributes["log"] == "" {
			return s.Attributes["unit"], s.Host.Hostname
		}
	}
	return "", ""
}

// logFiles finds the logs of a service (its step log, and a daemon's own
// log) or of a worker instance (the sitter's output and its tasks' logs).
func logFiles(ctx context.Context, a *app.App, home, run, name string) ([]string, error) {
	recs, err := a.Store.Services(ctx, run)
	if err != nil {
		return nil, err
	}
	for _, s := range recs {
		if s.Name != name {
			continue
		}
		var files []string
		if s.LogPath != "" {
			files = append(files, s.LogPath)
		}
		if l := s.Attributes["log"]; l != "" {
			files = append(files, l) // a built-in daemon's own log
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("service %s has no log yet", name)
		}
		return files, nil
	}
	dir := runlayout.Of(home, run).Instance(name)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		files := []string{filepath.Join(dir, "stderr"), filepath.Join(dir, "stdout")}
		// An isolated worker's sitter logs are in its own directory.
		more, _ := filepath.Glob(filepath.Join(localworker.SitterDir(home, run, name), "logs", "*.log"))
		return append(files, more...), nil
	}
	return nil, app.Usagef("run %s has no service or worker %q (see mgmt status %s)", run, name, run)
}
