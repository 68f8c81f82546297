// Command launch boots a launch plan level by level; see internal/cli.
package main

import (
	"context"
	"os"

	"nightshift/internal/cli"
)

func main() { os.Exit(cli.Launch(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }
