// Package clikit owns what the three operator binaries (launch, mgmt,
// sitter) share about being command lines: running a cobra command tree
// and turning its outcome into the documented exit code, the version
// string, and the help layout (arguments named, examples, the exit-code
// table). The commands themselves live in internal/cli and cmd/sitter.
package clikit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"nightshift/internal/redact"
	"nightshift/internal/termtext"
)

// Exit codes every binary uses; ExitCodes is their one table.
const (
	ExitOK       = 0
	ExitFailed   = 1 // the operation failed
	ExitUsage    = 2 // bad usage or an invalid plan
	ExitNotReady = 3 // mgmt status / sitter status: read fine, but not everything is up
)

// ExitCodes is the exit-code table every binary's help ends with; the docs
// carry the same table (a test keeps them equal).
const ExitCodes = `Exit codes:
  0  success (status: the run is ready and every pool at policy)
  1  the operation failed
  2  bad usage or an invalid plan
  3  status only: read fine, but the run or a task is not ready`

// ExitError ends a command with a given code after it has said what it had
// to say (status's 3, or a code a delegated parser chose). Its message,
// when not empty, is printed like any other error.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Exit returns an ExitError with no message of its own.
func Exit(code int) error { return &ExitError{Code: code} }

// ranError marks an error returned by a command's own code, as opposed to
// one cobra raised while parsing (always a usage error).
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// Version is the module version and commit this binary was built from.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v + " (commit unknown: built without VCS stamping)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return v + " (commit " + rev + ", " + bi.GoVersion + ")"
}

// Prepare sets up a root command the way every binary wants it: version,
// help and errors on the right streams, the exit-code table under every
// help, usage errors from flag parsing, and the marker that tells a
// command's own failure from a parse failure. Call it after every
// subcommand is added.
func Prepare(root *cobra.Command, stdout, stderr io.Writer) {
	root.Version = Version()
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetUsageTemplate(usageTemplate)
	walk(root, func(c *cobra.Command) {
		// Flags anywhere: cobra interleaves by default; keep it explicit.
		c.Flags().SetInterspersed(true)
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if err := run(cmd, args); err != nil {
					return &ranError{err}
				}
				return nil
			}
		}
	})
}

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// Execute runs root with args and returns the exit code: 2 for anything
// cobra refuses while parsing, codeOf of what a command itself returns
// (nil codeOf: 1). Errors are printed once, on stderr, redacted (red; nil:
// URL passwords only) and escaped, prefixed with the command's path; a
// usage error adds where to find the help.
func Execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer, codeOf func(error) int, red func(string) string) int {
	if red == nil {
		red = redact.String
	}
	if codeOf == nil {
		codeOf = func(error) int { return ExitFailed }
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	name := root.Name()
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			fmt.Fprintf(stderr, "%s: %s\n", termtext.Line(name), termtext.Text(red(ee.Msg)))
		}
		return ee.Code
	}
	var ran *ranError
	code := ExitUsage
	if errors.As(err, &ran) {
		code = codeOf(ran.err)
	}
	fmt.Fprintf(stderr, "%s: %s\n", termtext.Line(name), termtext.Text(red(err.Error())))
	if code == ExitUsage {
		fmt.Fprintf(stderr, "see '%s --help'\n", termtext.Line(name))
	}
	return code
}

// NeedCommand is the RunE of a root that only groups commands: a bare
// `mgmt` or `sitter` is a usage error (exit 2) with the usage on stderr;
// `--help` is how to ask for help on stdout.
func NeedCommand(cmd *cobra.Command, _ []string) error {
	fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
	return &ExitError{Code: ExitUsage, Msg: "want a command"}
}

// Args wants between min and max positional arguments (max < 0: no
// bound), named in the message as the command's Use line names them.
func Args(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			want := strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
			return fmt.Errorf("want %s, got %d argument(s)", want, len(args))
		}
		return nil
	}
}

// usageTemplate is cobra's, with the arguments in the usage line, the
// examples, and the exit-code table.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} COMMAND [flags]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}

` + ExitCodes + `{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} COMMAND --help" for more about a command.{{end}}
`
