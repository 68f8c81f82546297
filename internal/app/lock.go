package app

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// ErrRunBusy means another command is changing the run: two launches (or a
// launch and a teardown) of one run at once would each boot or destroy the
// other's half-made services.
var ErrRunBusy = errors.New("run is busy")

// LockRun takes the run's lock (runs/<run>/run.lock under home) for a
// command that changes the run, and returns its release. The lock is an
// flock, so it goes with the process however it ends, kill -9 included;
// the file keeps only who holds it, for the error another command prints.
// It is not inherited: Go opens files close-on-exec, so the daemons a
// launch starts do not keep the run locked after the launch returns.
func LockRun(home, run, command string) (release func(), err error) {
	if err := launchplan.CheckRunName(run); err != nil {
		return nil, &UsageError{Err: err}
	}
	lay := runlayout.Of(home, run)
	if err := os.MkdirAll(lay.Dir(), 0o700); err != nil {
		return nil, fmt.Errorf("lock run %s: %w", run, err)
	}
	path := lay.Lock()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock run %s: %w", run, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		holder := "another command"
		if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = strings.TrimSpace(string(b))
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s holds %s; wait for it to finish, or stop it", ErrRunBusy, holder, path)
		}
		return nil, fmt.Errorf("lock run %s: %w", run, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "%s (pid %d)\n", command, os.Getpid())
	}
	return func() {
		_ = f.Truncate(0)
		_ = f.Close() // closing the last fd drops the flock
	}, nil
}
