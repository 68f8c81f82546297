package bench

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseStatCPU returns utime+stime in clock ticks from the text of
// /proc/<pid>/stat. The command name may hold spaces and parentheses, so
// fields are counted from the last ')'.
func ParseStatCPU(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no ')' closing the command name")
	}
	// After ")": state(3) ppid(4) ... utime(14) stime(15), 1-based in proc(5).
	f := strings.Fields(string(stat[i+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least %d", len(f), stime+1)
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: field utime: %w", err)
	}
	s, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat: field stime: %w", err)
	}
	if u+s < u {
		return 0, fmt.Errorf("proc stat: utime %d + stime %d overflows", u, s)
	}
	return u + s, nil
}

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
