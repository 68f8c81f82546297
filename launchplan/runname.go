package launchplan

import (
	"fmt"
	"regexp"
	"strconv"
)

// RunNameSyntax is the shape of a run name. A run name becomes a directory
// under the home, broker node, user and queue names, and hostnames, so it
// is the strictest name there is: no dots, slashes, underscores, capitals
// or control characters, and short.
const RunNameSyntax = `[a-z0-9][a-z0-9-]{0,62}`

var runNamePattern = regexp.MustCompile(`^` + RunNameSyntax + `$`)

// CheckRunName returns an error unless name is a valid run name. Every
// command checks a run name with it before the name makes any path.
func CheckRunName(name string) error {
	if runNamePattern.MatchString(name) {
		return nil
	}
	// Quoted: the name may hold a newline or an escape sequence.
	return fmt.Errorf("run name %s must match %s (lowercase letters, digits and '-', at most 63)", strconv.Quote(name), RunNameSyntax)
}
