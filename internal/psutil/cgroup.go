package psutil

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// Reading a run's cgroup counters costs two reads however many processes
// the run has, where walking costs two per process; and the counters also
// hold what members that already exited used. This file finds the counter
// files from /proc/self/mountinfo and /proc/<pid>/cgroup, and parses them.
// It is pure: the Sampler does the reading.

// cgMount is one mounted cgroup hierarchy.
type cgMount struct {
	v2          bool
	controllers []string // v1: the super options naming controllers
	root        string   // the hierarchy path mounted (not "/" in some containers)
	dir         string   // where it is mounted
}

// parseMountinfo returns the cgroup mounts in /proc/self/mountinfo.
func parseMountinfo(b []byte) []cgMount {
	var out []cgMount
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			out = append(out, cgMount{v2: true, root: f[3], dir: unescapeMount(f[4])})
		case "cgroup":
			var ctl []string
			for _, o := range strings.Split(g[2], ",") {
				if o != "rw" && o != "ro" && !strings.Contains(o, "=") {
					ctl = append(ctl, o)
				}
			}
			out = append(out, cgMount{controllers: ctl, root: f[3], dir: unescapeMount(f[4])})
		}
	}
	return out
}

// unescapeMount undoes the octal escapes mountinfo uses for space, tab,
// newline and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// cgPaths maps "v2" or a v1 controller to the process's path in that
// hierarchy, from /proc/<pid>/cgroup ("4:memory:/a/b", "0::/a").
func cgPaths(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		parts := bytes.SplitN(line, []byte(":"), 3)
		if len(parts) != 3 || len(parts[2]) == 0 || parts[2][0] != '/' {
			return nil, fmt.Errorf("cgroup: line %q is not id:controllers:/path", line)
		}
		p := string(parts[2])
		if len(parts[1]) == 0 {
			out["v2"] = p
			continue
		}
		for _, c := range strings.Split(string(parts[1]), ",") {
			out[c] = p
		}
	}
	return out, nil
}

// counterKind says how to turn a counter file into a value.
type counterKind uint8

const (
	cpuV1Nanos counterKind = iota + 1 // cpuacct.usage: ns
	cpuV2Stat                         // cpu.stat: usage_usec
	memV1Stat                         // memory.stat: total_rss + total_mapped_file
	memV2Stat                         // memory.stat: anon + file_mapped
)

const cpuAcctFile = "cpuacct.usage"

// cgFiles are a run's two counter files.
type cgFiles struct {
	cpu, mem         string
	cpuKind, memKind counterKind
}

// resolveCgroup finds task's counter files. It succeeds only where the
// task is in a group of its own, i.e. not in the sitter's (self) group:
// on a v1 host whose limiter does not create cpuacct groups, the task's
// cpuacct group is the sitter's, and its counter would count everything.
func resolveCgroup(mounts []cgMount, self, task map[string]string) (cgFiles, bool) {
	var f cgFiles
	file := func(m cgMount, p, name string) (string, bool) {
		rel, ok := strings.CutPrefix(p, m.root)
		if !ok || (m.root != "/" && rel != "" && rel[0] != '/') {
			return "", false
		}
		return path.Join(m.dir, rel, name), true
	}
	own := func(key string) (string, bool) {
		p, ok := task[key]
		return p, ok && p != self[key] && p != "/"
	}
	for _, m := range mounts {
		if m.v2 {
			p, ok := own("v2")
			if !ok {
				continue
			}
			if f.cpu == "" {
				if fn, ok := file(m, p, "cpu.stat"); ok {
					f.cpu, f.cpuKind = fn, cpuV2Stat
				}
			}
			if f.mem == "" {
				if fn, ok := file(m, p, "memory.stat"); ok {
					f.mem, f.memKind = fn, memV2Stat
				}
			}
			continue
		}
		for _, c := range m.controllers {
			p, ok := own(c)
			if !ok {
				continue
			}
			switch c {
			case "cpuacct":
				if fn, ok := file(m, p, cpuAcctFile); ok {
					f.cpu, f.cpuKind = fn, cpuV1Nanos
				}
			case "memory":
				if fn, ok := file(m, p, "memory.stat"); ok {
					f.mem, f.memKind = fn, memV1Stat
				}
			}
		}
	}
	return f, f.cpu != "" && f.mem != ""
}

// parseCounter turns a counter file into CPU seconds or resident bytes.
// Memory is what /proc's rss counts (anonymous and mapped file pages), not
// memory.usage_in_bytes, which also holds the page cache: a worker that
// writes logs would otherwise grow towards its cap without using memory.
func parseCounter(kind counterKind, b []byte) (cpuSeconds float64, memBytes uint64, err error) {
	switch kind {
	case cpuV1Nanos:
		v, ok := parseUint(bytes.TrimSpace(b))
		if !ok {
			return 0, 0, fmt.Errorf("%s: %q is not a count of nanoseconds", cpuAcctFile, bytes.TrimSpace(b))
		}
		return float64(v) / 1e9, 0, nil
	case cpuV2Stat:
		v, err := keyedSum(b, "cpu.stat", "usage_usec")
		return float64(v) / 1e6, 0, err
	case memV1Stat:
		v, err := keyedSum(b, "memory.stat", "total_rss", "total_mapped_file")
		return 0, v, err
	case memV2Stat:
		v, err := keyedSum(b, "memory.stat", "anon", "file_mapped")
		return 0, v, err
	}
	return 0, 0, fmt.Errorf("counter kind %d unknown", kind)
}

// keyedSum adds the values of keys in a "key value" file; every key must
// be there.
func keyedSum(b []byte, file string, keys ...string) (uint64, error) {
	var sum uint64
	found := 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			continue
		}
		for _, want := range keys {
			if string(k) == want {
				n, ok := parseUint(v)
				if !ok {
					return 0, fmt.Errorf("%s: field %s: %q is not a count", file, want, v)
				}
				sum += n
				found++
			}
		}
	}
	if found != len(keys) {
		return 0, fmt.Errorf("%s: want fields %s, found %d of them", file, strings.Join(keys, " and "), found)
	}
	return sum, nil
}
