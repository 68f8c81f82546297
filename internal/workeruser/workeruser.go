// Package workeruser owns the Unix identity local workers run as on this
// host: resolving a user (and optional group) to the uid and gid a worker's
// process tree is started with, creating the default system user once when
// it is missing, and the one "can this process switch users" probe. A
// provisioner running as root starts every local worker as such a user, so
// untrusted worker code cannot read the run's secret, command key, ledger or
// other workers' files; one that is not root cannot, and says so.
package workeruser

import (
	"context"
	"errors"
	"fmt"
	"nightshift/internal/jobspec"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DefaultName is the system user local workers run as when their job names
// none.
const DefaultName = "nightshift-worker"

// CheckName reports why name cannot name a worker user, or nil. The rule
// is jobspec's, which validates a job's worker.user with the plan; it
// lives there because jobspec is a pure leaf the cores use, and this
// package runs useradd.
func CheckName(name string) error { return jobspec.CheckUserName(name) }

// Identity is a resolved worker user.
type Identity struct {
	Name     string
	UID, GID uint32
}

// Credential is the credential a worker's process is started with: the
// user's uid and gid and no supplementary groups, so nothing of the
// starting process's groups leaks into the worker.
func (id Identity) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: []uint32{}}
}

// IsRoot is the real probe: only an effective uid 0 may start processes as
// another user.
func IsRoot() bool { return os.Geteuid() == 0 }

// Current names the user this process runs as, for messages.
func Current() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

// Users resolves worker users, creating DefaultName at most once per
// Users when it is missing. A provisioner holds one for its whole life, so
// a thousand launches cost one lookup per user, not a thousand useradds.
type Users struct {
	// Lookup and LookupGroup default to os/user's; tests replace them.
	Lookup      func(name string) (*user.User, error)
	LookupGroup func(name string) (*user.Group, error)
	// Create makes a missing DefaultName; default: useradd --system.
	Create func(ctx context.Context, name string) error

	mu    sync.Mutex
	known map[string]Identity
}

// Resolve returns the identity of name (DefaultName when empty), with
// group's gid instead of the user's primary one when group is set. Only
// DefaultName is created when missing: a user a job names must exist, so a
// typo is an error rather than a new account.
func (u *Users) Resolve(ctx context.Context, name, group string) (Identity, error) {
	if name == "" {
		name = DefaultName
	}
	if err := CheckName(name); err != nil {
		return Identity{}, fmt.Errorf("worker user: %w", err)
	}
	if group != "" {
		if err := CheckName(group); err != nil {
			return Identity{}, fmt.Errorf("worker group: %w", err)
		}
	}
	key := name + ":" + group
	u.mu.Lock()
	defer u.mu.Unlock()
	if id, ok := u.known[key]; ok {
		return id, nil
	}
	usr, err := u.lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) && name == DefaultName {
		create := u.Create
		if create == nil {
			create = useradd
		}
		cerr := create(ctx, name)
		// Another provisioner may have created it meanwhile (useradd
		// then fails on its lock): what counts is that it exists now.
		if usr, err = u.lookup(name); err != nil && cerr != nil {
			return Identity{}, fmt.Errorf("worker user %s: create: %w", name, cerr)
		}
	}
	if err != nil {
		return Identity{}, fmt.Errorf("worker user %s: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(usr.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(usr.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return Identity{}, fmt.Errorf("worker user %s: %w", name, err)
	}
	if group != "" {
		lg := u.LookupGroup
		if lg == nil {
			lg = user.LookupGroup
		}
		g, err := lg(group)
		if err != nil {
			return Identity{}, fmt.Errorf("worker group %s: %w", group, err)
		}
		if gid, err = strconv.ParseUint(g.Gid, 10, 32); err != nil {
			return Identity{}, fmt.Errorf("worker group %s: %w", group, err)
		}
	}
	id := Identity{Name: usr.Username, UID: uint32(uid), GID: uint32(gid)}
	if u.known == nil {
		u.known = map[string]Identity{}
	}
	u.known[key] = id
	return id, nil
}

// lookup finds a user by name, or by number when name is all digits.
func (u *Users) lookup(name string) (*user.User, error) {
	look := u.Lookup
	if look == nil {
		look = user.Lookup
	}
	if _, err := strconv.ParseUint(name, 10, 32); err == nil && u.Lookup == nil {
		return user.LookupId(name)
	}
	return look(name)
}

// useradd creates a system user with no home and no login shell. Another
// provisioner on this host may create it at the same moment; useradd then
// fails with "already exists" (exit 9), which is success here.
func useradd(ctx context.Context, name string) error {
	out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home",
		"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 9 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("useradd: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
