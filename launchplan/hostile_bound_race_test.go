//go:build race

package launchplan

import "time"

// hostileBound is wider under the race detector, whose instrumentation
// alone makes this code several times slower; the 1 s bound is checked
// without it.
const hostileBound = 4 * time.Second
