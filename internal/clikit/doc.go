package clikit

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// HelpDoc is the help of root and of each of its commands, as the docs
// carry it (docs/cli.md, between BEGIN and END markers named after root):
// a test compares the two, so help and docs cannot drift apart. The
// completion command's per-shell subcommands are left out.
func HelpDoc(root *cobra.Command) string {
	// What ExecuteC adds before it runs anything, so the help here is the
	// help a user sees.
	root.InitDefaultHelpCmd()
	walk(root, func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		c.InitDefaultVersionFlag()
	})
	var b strings.Builder
	walk(root, func(c *cobra.Command) {
		if c.Parent() != nil && c.Parent().Name() == "completion" {
			return
		}
		var help bytes.Buffer
		c.SetOut(&help)
		c.SetErr(&help)
		_ = c.Help()
		fmt.Fprintf(&b, "### %s\n\n```text\n%s```\n\n", c.CommandPath(), strings.TrimRight(help.String(), "\n")+"\n")
	})
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// markers are the lines around a binary's help in docs/cli.md.
func markers(name string) (string, string) {
	return "<!-- BEGIN help " + name + " (generated: go test ./internal/cli ./cmd/sitter -run TestHelpMatchesDocs -update) -->\n",
		"<!-- END help " + name + " -->\n"
}

// DocRegion returns the part of doc that holds name's help.
func DocRegion(doc, name string) (string, error) {
	begin, end := markers(name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q ... %q region", strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	return doc[i+len(begin) : j], nil
}

// SetDocRegion returns doc with name's region replaced by region (added
// at the end when missing).
func SetDocRegion(doc, name, region string) string {
	begin, end := markers(name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + begin + region + end
	}
	return doc[:i+len(begin)] + region + doc[j:]
}

// FlagNames lists every flag root and its commands accept, as --name.
func FlagNames(root *cobra.Command) []string {
	seen := map[string]bool{}
	var out []string
	walk(root, func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if n := "--" + f.Name; !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		})
	})
	return out
}

// CheckDocs compares name's help (root) with its region of the docs file
// docPath, and wants every flag named in the README at readmePath; it
// returns what differs. With update, it rewrites the region instead. The
// binaries' tests call it, so that help and docs cannot drift apart.
func CheckDocs(docPath, readmePath, name string, root *cobra.Command, update bool) []error {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		return []error{err}
	}
	doc, want := string(raw), HelpDoc(root)
	if update {
		if err := os.WriteFile(docPath, []byte(SetDocRegion(doc, name, want)), 0o644); err != nil {
			return []error{err}
		}
		return nil
	}
	var errs []error
	got, err := DocRegion(doc, name)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", docPath, err))
	} else if got != want {
		errs = append(errs, fmt.Errorf("%s's help differs from %s (-update rewrites it): %s", name, docPath, firstDiff(got, want)))
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		return append(errs, err)
	}
	for _, f := range FlagNames(root) {
		if !strings.Contains(string(readme), f) {
			errs = append(errs, fmt.Errorf("%s does not mention %s's flag %s", readmePath, name, f))
		}
	}
	return errs
}

// firstDiff shows the first line where the docs and the help differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  docs: %s\n  help: %s", i+1, gl, wl)
		}
	}
	return "(equal)"
}
