package sitter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrStateDirBusy means another sitter holds the state dir. Two sitters on
// one dir would each take the other's tasks for orphans and kill them, and
// the second would delete the first's control socket.
var ErrStateDirBusy = errors.New("state dir is in use by another sitter")

// lockFile names the lock in a state dir; it holds the holder's pid.
const lockFile = "sitter.lock"

// lockStateDir takes an exclusive flock on dir's lock file. The lock goes
// with the process however it ends (kill -9 included), and is not inherited
// by tasks: Go opens files close-on-exec.
func lockStateDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf("the sitter with pid %d", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s holds %s; stop it or use another --state-dir", ErrStateDirBusy, holder, path)
		}
		return nil, fmt.Errorf("lock state dir %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
