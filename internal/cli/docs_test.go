package cli

import (
	"flag"
	"io"
	"testing"

	"nightshift/internal/clikit"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md's help regions from the commands' help")

// TestHelpMatchesDocs compares the help of launch and mgmt, every command
// of them, with docs/cli.md, and wants every flag in the README: the docs
// cannot drift from the binaries. -update rewrites docs/cli.md.
func TestHelpMatchesDocs(t *testing.T) {
	for _, err := range clikit.CheckDocs("../../docs/cli.md", "../../README.md", "launch", newLaunchRoot(io.Discard, io.Discard), *update) {
		t.Error(err)
	}
	for _, err := range clikit.CheckDocs("../../docs/cli.md", "../../README.md", "mgmt", newMgmtRoot(&mgmtCmd{stdout: io.Discard, stderr: io.Discard}), *update) {
		t.Error(err)
	}
}
