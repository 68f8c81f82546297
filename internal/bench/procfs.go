package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseVmRSS returns VmRSS in bytes from the text of /proc/<pid>/status.
func ParseVmRSS(status []byte) (uint64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status: field VmRSS: %q is not \"N kB\"", strings.TrimSpace(v))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status: field VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("proc status: no VmRSS line (a kernel thread or a zombie)")
}

// ParsePIDs reads the space-separated pids of /proc/<pid>/task/<tid>/children.
func ParsePIDs(b []byte) ([]int, error) {
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("proc children: %q is not a pid", f)
		}
		out = append(out, n)
	}
	return out, nil
}
