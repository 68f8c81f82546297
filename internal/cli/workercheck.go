package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"nightshift/internal/worker/localworker"
	"nightshift/launchplan"
)

// checkLocalWorkers checks, before anything boots, that the command of
// every local-driver job a controller service declares exists and is
// executable on this machine: otherwise the pool would boot "ready" and
// its workers fail to start over and over. Commands that use a later
// service's attributes cannot be resolved yet and are skipped. Each
// problem is reported with the service's file:line and the key.
func checkLocalWorkers(p *launchplan.Plan, run string) error {
	var errs []error
	for _, c := range localJobCommands(p, run) {
		if err := executable(c.path); err != nil {
			errs = append(errs, &launchplan.Error{Pos: c.pos, Key: c.key,
				Msg: fmt.Sprintf("%s (the pool's workers could not start; build or install it first)", err)})
		}
	}
	return errors.Join(errs...)
}

// jobCommand is a local job's program, resolved, and where the plan says it.
type jobCommand struct {
	pos       launchplan.Pos
	key, path string
}

// localJobCommands lists the program of every local-driver job a
// controller service declares. Commands that use a later service's
// attributes cannot be resolved yet and are skipped.
func localJobCommands(p *launchplan.Plan, run string) []jobCommand {
	var out []jobCommand
	for _, l := range p.Levels {
		for i := range l.Services {
			svc := &l.Services[i]
			if svc.Type != "controller" {
				continue
			}
			jobs, _ := svc.TypeConfig["jobs"].(map[string]any)
			names := make([]string, 0, len(jobs))
			for n := range jobs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, name := range names {
				job, _ := jobs[name].(map[string]any)
				if d, _ := job["driver"].(string); d != "" && d != launchplan.DriverLocal {
					continue
				}
				worker, _ := job["worker"].(map[string]any)
				argv, _ := worker["command"].([]any)
				if len(argv) == 0 {
					continue
				}
				prog, _ := argv[0].(string)
				scope := launchplan.Scope{Globals: p.Globals, Self: map[string]string{launchplan.AttrRun: run}}
				exp, err := scope.Expand(prog)
				if err != nil || prog == "" {
					continue
				}
				out = append(out, jobCommand{pos: svc.Pos, key: fmt.Sprintf("config.jobs.%s.worker.command", name), path: exp})
			}
		}
	}
	return out
}

// workersCannotReach warns, when launch runs as root (so its local workers
// will run as a user of their own), of job programs that other users
// cannot run: a binary under a 0700 directory such as /root starts for
// root and fails for every worker. A warning, not an error: the worker's
// user or group may be granted access another way.
// The sitter (defaultSitter, unless a local provisioner's worker_command
// names another program) is checked too: every local worker starts as it.
func workersCannotReach(p *launchplan.Plan, run string, isRoot bool, defaultSitter string) []string {
	if !isRoot {
		return nil
	}
	cmds := localJobCommands(p, run)
	if len(cmds) > 0 {
		for _, l := range p.Levels {
			for i := range l.Services {
				svc := &l.Services[i]
				if svc.Type != "provisioner" || (svc.Driver != "" && svc.Driver != launchplan.DriverLocal) {
					continue
				}
				c := jobCommand{pos: svc.Pos, key: "config.worker_command (the sitter)", path: defaultSitter}
				if wc, _ := svc.TypeConfig["worker_command"].([]any); len(wc) > 0 {
					c.path, _ = wc[0].(string)
				}
				if c.path != "" {
					cmds = append(cmds, c)
				}
			}
		}
	}
	var out []string
	for _, c := range cmds {
		if !filepath.IsAbs(c.path) {
			continue
		}
		if why := othersCannotRun(c.path); why != "" {
			out = append(out, fmt.Sprintf("%s: %s: %s, and local workers run as their own user (docs/jobs.md), not root", c.pos, c.key, why))
		}
	}
	return out
}

// othersCannotRun says why a user other than the file's owner and group
// could not execute path, or "".
func othersCannotRun(path string) string {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 == 0 {
			return fmt.Sprintf("other users cannot reach %s (%s is mode %04o)", path, dir, st.Mode().Perm())
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o001 == 0 {
		return fmt.Sprintf("other users cannot run %s (mode %04o)", path, st.Mode().Perm())
	}
	return ""
}

// localWorkersShareUser says, when this process cannot isolate workers
// (isRoot false), what the operator must know: a plan whose provisioner
// runs here with local jobs gives its workers the launcher's own user,
// which can read the run's secrets. Empty when that is not so.
func localWorkersShareUser(p *launchplan.Plan, isRoot bool, me string) string {
	if isRoot {
		return ""
	}
	local := false
	for _, l := range p.Levels {
		for i := range l.Services {
			svc := &l.Services[i]
			if svc.Type == "provisioner" && (svc.Driver == "" || svc.Driver == launchplan.DriverLocal) {
				local = true
			}
		}
	}
	if !local {
		return ""
	}
	for _, l := range p.Levels {
		for i := range l.Services {
			svc := &l.Services[i]
			if svc.Type != "controller" {
				continue
			}
			jobs, _ := svc.TypeConfig["jobs"].(map[string]any)
			for _, j := range jobs {
				job, _ := j.(map[string]any)
				if d, _ := job["driver"].(string); d == "" || d == launchplan.DriverLocal {
					return localworker.NotIsolatedNote(me)
				}
			}
		}
	}
	return ""
}

// executable says why path cannot be run, or nil; a bare name is looked
// up on $PATH, as the sitter will.
func executable(path string) error {
	if !strings.Contains(path, "/") {
		if _, err := exec.LookPath(path); err != nil {
			return fmt.Errorf("%s is not on $PATH", path)
		}
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s does not exist", path)
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case st.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}
