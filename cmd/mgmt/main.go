// Command mgmt inspects, repairs and tears down runs; see internal/cli.
package main

import (
	"context"
	"os"

	"nightshift/internal/cli"
)

func main() { os.Exit(cli.Mgmt(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }
