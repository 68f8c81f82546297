package localworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"nightshift/internal/cgroup"
	"nightshift/internal/nsenv"
	"nightshift/internal/runlayout"
	"nightshift/internal/workeruser"
	"nightshift/provisioner"
)

// isolated is what Launch needs to start an instance as its worker user.
type isolated struct {
	id  workeruser.Identity
	own bool     // id is the instance's own uid, not a named user
	dir string   // the worker's own directory
	env []string // variables naming what is in it, and who it is
}

// jobUser reads worker.user and worker.group from a launch spec: the job's
// say in who its workers run as.
func jobUser(spec json.RawMessage) (name, group string, err error) {
	if len(spec) == 0 {
		return "", "", nil
	}
	var top struct {
		Worker struct {
			User  string `json:"user"`
			Group string `json:"group"`
		} `json:"worker"`
	}
	if err := json.Unmarshal(spec, &top); err != nil {
		return "", "", fmt.Errorf("launch spec: worker.user: %w", err)
	}
	return top.Worker.User, top.Worker.Group, nil
}

// prepareWorker resolves the instance's user and builds its own directory
// from scratch. Everything is written while the directory is still root's
// 0700, with files created exclusively and never through a link, and the
// directory is handed over last: a worker of the same user cannot slip a
// symlink in for root to write through.
func (d *Driver) prepareWorker(ctx context.Context, spec provisioner.InstanceSpec) (*isolated, error) {
	iso := d.cfg.Isolation
	name, group, err := jobUser(spec.Spec)
	if err != nil {
		return nil, err
	}
	var id workeruser.Identity
	own := name == "" && group == "" && iso.UIDs != nil
	switch {
	case own && spec.UID == 0:
		// Its uid was never allocated (or its record predates uids). The
		// shared user would let it read and signal every other worker of
		// that user: refused, so the instance fails and is replaced.
		return nil, fmt.Errorf("worker uid: none allocated for this instance (range %d-%d); refusing to run it as the shared user %s", iso.UIDs.First, iso.UIDs.Last, iso.User)
	case own:
		// Its own uid, recorded with it in the ledger; gid the same
		// number, and no passwd entry (credentials take numbers).
		if spec.UID < iso.UIDs.First || spec.UID > iso.UIDs.Last {
			return nil, fmt.Errorf("worker uid %d: outside the range %d-%d", spec.UID, iso.UIDs.First, iso.UIDs.Last)
		}
		id = workeruser.Identity{Name: ownUIDName(spec.UID), UID: spec.UID, GID: spec.UID}
		// Terminate sweeps what an ended holder of the uid left in the
		// shared directories, but an instance whose end was recorded before
		// its terminate ran (its exit, a provisioner crash) frees the uid
		// first. No process of the uid runs now (PickUIDs made sure, and
		// only root starts one): sweep again before this one can look.
		if err := sweepUIDFiles(d.cfg.Log, spec.UID, sharedDirs, iso.Root); err != nil {
			return nil, fmt.Errorf("worker uid: %w", err)
		}
	default:
		if name == "" {
			name = iso.User
		}
		if id, err = iso.Users.Resolve(ctx, name, group); err != nil {
			return nil, err
		}
	}
	if id.UID == 0 {
		d.cfg.Log.Warn("local worker runs as root: its job's worker.user says so; it can read every file of the run", "instance", spec.ID, "user", id.Name)
	}
	lay := runlayout.Of(d.cfg.Home, d.cfg.Run)
	if err := os.MkdirAll(iso.Root, 0o755); err != nil {
		return nil, fmt.Errorf("worker root: %w", err)
	}
	runDir := lay.WorkerRunDir(iso.Root)
	if err := rootOwnedDir(runDir, 0o711); err != nil {
		return nil, err
	}
	dir := lay.WorkerDir(iso.Root, spec.ID)
	if own {
		if err := disownRunDir(runDir, spec.UID, dir); err != nil {
			return nil, err
		}
	}
	// A directory left by an earlier start of this id (its process is
	// dead: Launch checked) belongs to a worker that may have planted
	// links in it. Start over.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("worker dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker dir: %w", err)
	}
	out := &isolated{id: id, own: own, dir: dir}
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(dir, name)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return "", fmt.Errorf("worker dir: %w", err)
		}
		_, werr := f.Write(data)
		if werr == nil {
			werr = f.Chown(int(id.UID), int(id.GID))
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", fmt.Errorf("worker dir: %s: %w", name, werr)
		}
		return p, nil
	}
	if len(spec.Spec) > 0 {
		if _, err := write(runlayout.SpecFile, spec.Spec); err != nil {
			return nil, err
		}
	}
	if spec.BrokerURL != "" {
		// Its own broker credentials, in a file only it (and root) may
		// read rather than the environment its tasks inherit.
		p, err := write(runlayout.URLFile, []byte(spec.BrokerURL+"\n"))
		if err != nil {
			return nil, err
		}
		out.env = append(out.env, envURLFile+"="+p)
	}
	if d.cfg.CAFile != "" {
		// A copy: the run's pki directory is 0700 and stays so.
		pem, err := os.ReadFile(d.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker CA: %w", err)
		}
		p, err := write(workerCAFile, pem)
		if err != nil {
			return nil, err
		}
		out.env = append(out.env, nsenv.AMQPCAFile+"="+p)
	}
	if err := os.Lchown(dir, int(id.UID), int(id.GID)); err != nil {
		return nil, fmt.Errorf("worker dir: %w", err)
	}
	out.env = append(out.env, envWorkerDir+"="+dir, "HOME="+dir, "USER="+id.Name, "LOGNAME="+id.Name)
	if id.UID != 0 {
		// A cgroup of its own, handed to its user: as that user the sitter
		// could make none, and enforced its limits by polling alone. Not
		// having one is not worth refusing the launch for.
		prefix := CgroupPrefix(d.cfg.Home, d.cfg.Run, spec.ID)
		switch mode, err := cgroup.Delegate(iso.cgroupRoot(), prefix, int(id.UID), int(id.GID)); {
		case err != nil:
			d.cfg.Log.Warn("no cgroup for the isolated worker; its sitter polls its limits", "instance", spec.ID, "err", err)
		case mode != "":
			out.env = append(out.env, nsenv.Cgroup+"="+prefix)
		}
	}
	return out, nil
}

// rootOwnedDir makes dir a directory of this process's user with mode
// perm, refusing a link or a directory someone else owns.
func rootOwnedDir(dir string, perm fs.FileMode) error {
	err := os.Mkdir(dir, perm)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("worker dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("worker dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("worker dir %s: not a directory of this user; remove it", dir)
	}
	if fi.Mode().Perm() != perm {
		if err := os.Chmod(dir, perm); err != nil {
			return fmt.Errorf("worker dir: %w", err)
		}
	}
	return nil
}

// disownRunDir gives to root, mode 0700, every entry of the run's worker
// directory that uid owns, but keep (the new holder's own, rebuilt next).
// An earlier holder of the uid whose end was recorded but whose terminate
// never ran (a provisioner crash in between) kept its directory, which
// the new holder could otherwise open. Only root creates entries in the
// run's directory (root's, 0711), so none is swapped meanwhile.
func disownRunDir(runDir string, uid uint32, keep string) error {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return fmt.Errorf("worker dir: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(runDir, e.Name())
		if p == keep {
			continue
		}
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("worker dir: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != uid {
			continue
		}
		if err := os.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("worker dir %s from uid %d: %w", p, uid, err)
		}
		if fi.IsDir() {
			if err := os.Chmod(p, 0o700); err != nil {
				return fmt.Errorf("worker dir %s from uid %d: %w", p, uid, err)
			}
		}
	}
	return nil
}
