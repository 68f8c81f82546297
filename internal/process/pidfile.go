package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ReadPIDFile reads a pid file: one decimal pid, surrounding white space
// allowed. A missing file is an error satisfying errors.Is(err,
// os.ErrNotExist); a pid of 1 or less, which no daemon of ours has, is
// refused like any other bad content.
func ReadPIDFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds %q", path, data)
	}
	return pid, nil
}

// StopPIDFile stops the process whose pid is in pidFile, as Stop does, and
// removes the file once the process is gone. No file means nothing to stop;
// a file whose pid is no longer the process meant (same says no) is stale
// and removed. onStop, when set, hears that a live process is being
// stopped, and onKill that it needed SIGKILL.
func StopPIDFile(ctx context.Context, pidFile string, grace time.Duration, same func(pid int) bool, onStop, onKill func(pid int)) error {
	pid, err := ReadPIDFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if same(pid) {
		if onStop != nil {
			onStop(pid)
		}
		kill := func() {
			if onKill != nil {
				onKill(pid)
			}
		}
		if err := Stop(ctx, pid, grace, func() bool { return same(pid) }, kill); err != nil {
			return err
		}
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
