package localworker

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// sharedDirs are the directories every user may write to, where a worker
// with a uid of its own leaves files that outlive it: the next holder of
// the uid would own them.
var sharedDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// maxSweepDepth bounds the walk (one open descriptor per level). A
// directory at this depth, which only a hostile worker builds, is sealed
// rather than walked: root's, 0700, so nothing below it is reachable to
// the uid's next holder. Failing the sweep instead would let a worker make
// its own terminate, and every later launch under its uid, fail forever.
const maxSweepDepth = 128

// sweepUIDFiles removes everything uid owns under each of roots, once no
// process holds uid. Other users (other workers among them) write to
// these directories meanwhile, so every step is taken relative to an open
// directory and never through a link: entries are examined without
// following them, directories opened with O_NOFOLLOW and judged by what
// was opened, and unlinkat never follows the name it removes. The walk
// stays on each root's filesystem, and enters only directories uid may
// search: below any other it could have created nothing it can reach.
// It never enters skip (the workers' root, which may lie in /tmp: reclaim
// keeps an ended worker's directory for mgmt logs).
//
// Each root is resolved through its links first (/dev/shm may be a link
// to /run/shm, /var/tmp to /tmp): they are root's system paths, not the
// workers'. A root that is missing, or no directory, is skipped.
func sweepUIDFiles(log *slog.Logger, uid uint32, roots []string, skip ...string) error {
	if uid == 0 {
		return errors.New("sweep files of uid 0: refused")
	}
	skipped := map[[2]uint64]bool{}
	for _, p := range skip {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil {
			skipped[[2]uint64{uint64(st.Dev), st.Ino}] = true
		}
	}
	var errs []error
	for _, root := range resolveRoots(log, roots) {
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// Changed since it was resolved: nothing to sweep there, and
			// no reason to fail every launch and terminate over it.
			log.Warn("shared directory not swept", "dir", root, "err", err)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", root, err))
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			errs = append(errs, fmt.Errorf("sweep %s: %w", root, err))
			continue
		}
		w := sweeper{uid: uid, dev: uint64(st.Dev), skip: skipped}
		w.dir(fd, root, 0)
		errs = append(errs, w.errs...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("files of uid %d: %w", uid, err)
	}
	return nil
}

// resolveRoots resolves each root's links and drops duplicates (/var/tmp
// may be /tmp), skipping, with a warning, one that cannot be resolved.
func resolveRoots(log *slog.Logger, roots []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range roots {
		p, err := filepath.EvalSymlinks(r)
		if err != nil {
			if _, lerr := os.Lstat(r); !errors.Is(lerr, fs.ErrNotExist) {
				// There but unresolvable (a dangling or looping link).
				log.Warn("shared directory not swept", "dir", r, "err", err)
			}
			continue
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

type sweeper struct {
	uid  uint32
	dev  uint64
	skip map[[2]uint64]bool // device and inode
	errs []error
}

// dir sweeps the open directory fd (path is for messages) and closes it.
func (w *sweeper) dir(fd int, path string, depth int) {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", path, err))
		return
	}
	for _, name := range names {
		p := filepath.Join(path, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
			}
			continue
		}
		if uint64(st.Dev) != w.dev {
			continue // a mount point: another filesystem
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if st.Uid == w.uid {
				if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
					w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
				}
			}
			continue
		}
		if st.Uid != w.uid && !w.searchable(&st) {
			continue
		}
		if depth+1 >= maxSweepDepth {
			if err := w.seal(fd, name, &st); err != nil {
				w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
			}
			continue
		}
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			// Gone, or replaced by a link or a file since it was looked at.
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
				w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
			}
			continue
		}
		// Judged by what was opened, which a swap cannot change.
		var cst unix.Stat_t
		if err := unix.Fstat(cfd, &cst); err != nil || uint64(cst.Dev) != w.dev || w.skip[[2]uint64{uint64(cst.Dev), cst.Ino}] {
			unix.Close(cfd)
			continue
		}
		mine := cst.Uid == w.uid
		w.dir(cfd, p, depth+1)
		if !mine {
			continue
		}
		switch err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); {
		case err == nil, errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
			// Other users' files remain in it (it let them write there).
			// Kept for them, but root's now: the uid's next holder must not
			// own a directory it never made. If some of the uid's own
			// remain too, it is sealed (disown).
			if err := w.disown(fd, name, &cst); err != nil {
				w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
			}
		default:
			w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
		}
	}
}

// disown gives the directory name of fd, still the one examined (st), to
// root, keeping its mode unless entries of the uid remain in it (the sweep
// failed on them): then it is sealed, 0700, so the uid's next holder
// cannot reach them.
func (w *sweeper) disown(fd int, name string, st *unix.Stat_t) error {
	cfd, err := w.reopen(fd, name, st, false)
	if err != nil || cfd < 0 {
		return err
	}
	defer unix.Close(cfd)
	if err := unix.Fchown(cfd, 0, 0); err != nil {
		return err
	}
	if !w.holdsUID(cfd, name) {
		return nil
	}
	return unix.Fchmod(cfd, 0o700)
}

// seal gives the directory name of fd, still the one examined (st), to
// root with mode 0700, whoever owned it: what is below it, unwalked, is
// then out of every worker's reach.
func (w *sweeper) seal(fd int, name string, st *unix.Stat_t) error {
	cfd, err := w.reopen(fd, name, st, true)
	if err != nil || cfd < 0 {
		return err
	}
	defer unix.Close(cfd)
	if err := unix.Fchown(cfd, 0, 0); err != nil {
		return err
	}
	return unix.Fchmod(cfd, 0o700)
}

// reopen opens the directory name of fd if it is still the one examined
// (st) and still the uid's, or, if searched, one the uid may search; -1
// if not (replaced meanwhile, or gone), which is no error.
func (w *sweeper) reopen(fd int, name string, st *unix.Stat_t, searched bool) (int, error) {
	cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	var now unix.Stat_t
	if err := unix.Fstat(cfd, &now); err != nil {
		unix.Close(cfd)
		return -1, err
	}
	if now.Dev != st.Dev || now.Ino != st.Ino || (now.Uid != w.uid && !(searched && w.searchable(&now))) {
		unix.Close(cfd)
		return -1, nil
	}
	return cfd, nil
}

// holdsUID reports whether the open directory cfd still holds an entry
// of the uid (or cannot be read, which is taken as yes).
func (w *sweeper) holdsUID(cfd int, name string) bool {
	dfd, err := unix.Dup(cfd)
	if err != nil {
		return true
	}
	f := os.NewFile(uintptr(dfd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return true
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(cfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Uid == w.uid {
			return true
		}
	}
	return false
}

// searchable reports whether uid (with its own number as its only gid)
// may search a directory of another owner.
func (w *sweeper) searchable(st *unix.Stat_t) bool {
	if st.Gid == w.uid {
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}
