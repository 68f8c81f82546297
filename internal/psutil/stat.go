package psutil

import (
	"fmt"

	"nightshift/internal/process"
)

// parseUint is the allocation-free number parser /proc files want.
func parseUint(b []byte) (uint64, bool) { return process.ParseUint(b) }

// appendPIDs appends the pids of a children file ("12 345 ") to dst,
// stopping at the first malformed entry.
func appendPIDs(dst []int, b []byte) ([]int, error) {
	for len(b) > 0 {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\n') {
			b = b[1:]
		}
		end := 0
		for end < len(b) && b[end] != ' ' && b[end] != '\n' {
			end++
		}
		if end == 0 {
			break
		}
		v, ok := parseUint(b[:end])
		// pid_max is at most 2^22 (PID_MAX_LIMIT).
		if !ok || v == 0 || v > 1<<22 {
			return dst, fmt.Errorf("children: %q is not a pid", b[:end])
		}
		dst = append(dst, int(v))
		b = b[end:]
	}
	return dst, nil
}
