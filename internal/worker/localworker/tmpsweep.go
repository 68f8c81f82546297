package localworker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// sharedDirs are the directories every user may write to, where a worker
// with a uid of its own leaves files that outlive it: the next holder of
// the uid would own them.
var sharedDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// maxSweepDepth bounds the walk (one open descriptor per level). A tree
// deeper than this, which only a hostile worker builds, fails the sweep
// rather than leaving its files to the uid's next holder unnoticed.
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
func sweepUIDFiles(uid uint32, roots []string, skip ...string) error {
	if uid == 0 {
		return errors.New("sweep files of uid 0: refused")
	}
	skipped := map[[2]uint64]bool{}
	for _, p := range skip {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil {
			skipped[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	var errs []error
	for _, root := range roots {
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
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
		w := sweeper{uid: uid, dev: st.Dev, skip: skipped}
		w.dir(fd, root, 0)
		errs = append(errs, w.errs...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("files of uid %d: %w", uid, err)
	}
	return nil
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
		if st.Dev != w.dev {
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
			w.errs = append(w.errs, fmt.Errorf("sweep %s: deeper than %d levels", p, maxSweepDepth))
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
		if err := unix.Fstat(cfd, &cst); err != nil || cst.Dev != w.dev || w.skip[[2]uint64{cst.Dev, cst.Ino}] {
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
			// own a directory it never made.
			if err := w.disown(fd, name, &cst); err != nil {
				w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
			}
		default:
			w.errs = append(w.errs, fmt.Errorf("sweep %s: %w", p, err))
		}
	}
}

// disown gives the directory name of fd, still the one examined (st), to
// root, keeping its mode.
func (w *sweeper) disown(fd int, name string, st *unix.Stat_t) error {
	cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(cfd)
	var now unix.Stat_t
	if err := unix.Fstat(cfd, &now); err != nil {
		return err
	}
	if now.Dev != st.Dev || now.Ino != st.Ino || now.Uid != w.uid {
		return nil // replaced meanwhile: not the uid's directory
	}
	return unix.Fchown(cfd, 0, 0)
}

// searchable reports whether uid (with its own number as its only gid)
// may search a directory of another owner.
func (w *sweeper) searchable(st *unix.Stat_t) bool {
	if st.Gid == w.uid {
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}
