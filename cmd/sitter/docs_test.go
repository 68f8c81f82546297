package main

import (
	"flag"
	"io"
	"testing"

	"nightshift/internal/clikit"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md's help region for sitter")

// TestHelpMatchesDocs: the sitter's help, every command of it, is what
// docs/cli.md shows, and the README names every flag.
func TestHelpMatchesDocs(t *testing.T) {
	for _, err := range clikit.CheckDocs("../../docs/cli.md", "../../README.md", "sitter", newRoot(io.Discard, io.Discard), *update) {
		t.Error(err)
	}
}
