package controller

import "time"

// LaunchBackoffForTest exposes the back-off curve to the external tests.
func LaunchBackoffForTest(n int) time.Duration { return launchBackoff(n) }
