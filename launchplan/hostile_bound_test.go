//go:build !race

package launchplan

import "time"

// hostileBound is the bound: a hostile plan of up to 1 MB is
// refused in under a second.
const hostileBound = time.Second
