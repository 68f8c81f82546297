package localworker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"nightshift/internal/runlayout"
	"nightshift/provisioner"
)

// UIDRange is a range of uids (and gids of the same numbers), first to
// last inclusive, that isolated instances each take one of.
type UIDRange struct{ First, Last uint32 }

// DefaultUIDs is systemd's range for DynamicUser: above the login.defs
// UID_MAX of common distributions (60000) and below nobody (65534), and
// never given to a passwd entry by useradd.
var DefaultUIDs = UIDRange{First: 61184, Last: 65519}

// ownUIDName is what USER and LOGNAME say for an instance running under a
// uid of its own, which has no passwd entry.
func ownUIDName(uid uint32) string { return "nightshift-" + strconv.FormatUint(uint64(uid), 10) }

var _ provisioner.UIDPicker = (*Driver)(nil)

// PickUIDs implements provisioner.UIDPicker: the lowest n uids of the
// range that no live record holds, no passwd or group entry names, and no
// running process holds (a freed uid whose processes still run, say of a
// failed instance whose kill is pending, waits until they are gone). The
// running processes come from a scan of /proc that picks share for
// procScanTTL (procUIDs says why that is safe).
func (d *Driver) PickUIDs(ctx context.Context, spec json.RawMessage, n int, heldBy func() (map[uint32]bool, error)) ([]uint32, error) {
	iso := d.cfg.Isolation
	if iso == nil || iso.UIDs == nil || n <= 0 {
		return nil, nil
	}
	if name, group, err := jobUser(spec); err != nil || name != "" || group != "" {
		return nil, err // a job naming its user or group runs as that user
	}
	held, err := heldBy()
	if err != nil {
		return nil, fmt.Errorf("worker uids: %w", err)
	}
	used := map[uint32]bool{}
	for _, f := range []string{iso.passwdFile(), iso.groupFile()} {
		if err := idsOf(f, used); err != nil {
			return nil, err
		}
	}
	d.procs.Lock()
	defer d.procs.Unlock()
	running, err := d.procs.uids(d.cfg.Clock.Now(), "/proc", held)
	if err != nil {
		return nil, fmt.Errorf("worker uids: %w", err)
	}
	claims, err := d.openClaims(ctx)
	if err != nil {
		return nil, err
	}
	defer claims.close()
	out := make([]uint32, 0, n)
	for uid := uint64(iso.UIDs.First); uid <= uint64(iso.UIDs.Last) && len(out) < n; uid++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u := uint32(uid)
		if held[u] || used[u] || running[u] {
			continue
		}
		ok, err := claims.take(u)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, u)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("uids %d-%d: %d free, %d wanted: %w", iso.UIDs.First, iso.UIDs.Last, len(out), n, provisioner.ErrUIDsExhausted)
	}
	d.procs.handedOut(out)
	return out, nil
}

// procScanTTL is how long one /proc scan serves the picks after it: a
// burst of hundreds of launches, one pick each, scans a few times rather
// than hundreds (each scan reads the status of every process on the host).
const procScanTTL = 2 * time.Second

// procUIDs is the uids running processes hold, as of the last scan, made
// safe to reuse for a while. A process of a uid of the range that has none
// can only be started by root: by this driver for a uid it handed out, or
// a live record holds (a retried launch), or by another run for a uid it
// claims (claims are checked at every pick). So to a scan's uids are added
// every uid a live record held when it was taken and every uid handed out
// since: whatever such an instance leaves running when its record ends
// keeps its uid from the next pick until a fresh scan looks again, or
// this driver's terminate has seen the last of them go.
type procUIDs struct {
	sync.Mutex
	at   time.Time
	used map[uint32]bool
}

// uids returns the uids to treat as held by processes, scanning procRoot
// when the last scan is older than procScanTTL.
func (c *procUIDs) uids(now time.Time, procRoot string, held map[uint32]bool) (map[uint32]bool, error) {
	if c.used == nil || now.Sub(c.at) >= procScanTTL || now.Before(c.at) {
		used, err := runningUIDs(procRoot)
		if err != nil {
			return nil, err
		}
		c.at, c.used = now, used
	}
	for u := range held {
		c.used[u] = true
	}
	return c.used, nil
}

// release says no process holds uid any more.
func (c *procUIDs) release(uid uint32) {
	c.Lock()
	defer c.Unlock()
	delete(c.used, uid)
}

func (c *procUIDs) handedOut(uids []uint32) {
	for _, u := range uids {
		c.used[u] = true
	}
}

// uidClaims are the host's claims on uids of the range, one file per uid
// under <worker root>/.uids naming the run (its worker directory) that
// took it. The ledger keeps one run's workers apart; claims keep runs
// apart, also while a recorded worker of another run is not running (not
// yet launched, or its provisioner is down). A run keeps its claims until
// its worker directory goes (mgmt rm), and reuses them meanwhile.
type uidClaims struct {
	dir, run, root string
	unlock         func()
}

func (d *Driver) openClaims(ctx context.Context) (*uidClaims, error) {
	iso := d.cfg.Isolation
	if err := os.MkdirAll(iso.Root, 0o755); err != nil {
		return nil, fmt.Errorf("worker uids: %w", err)
	}
	// The run's worker directory first: a claim whose run has none is
	// stale, and is taken over.
	runDir := runlayout.Of(d.cfg.Home, d.cfg.Run).WorkerRunDir(iso.Root)
	if err := rootOwnedDir(runDir, 0o711); err != nil {
		return nil, fmt.Errorf("worker uids: %w", err)
	}
	dir := filepath.Join(iso.Root, ".uids")
	if err := rootOwnedDir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker uids: %w", err)
	}
	// One picker at a time on this host, so a stale claim is taken over
	// by one run only.
	unlock, err := flock(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("worker uids: %w", err)
	}
	return &uidClaims{dir: dir, run: filepath.Base(runDir), root: iso.Root, unlock: unlock}, nil
}

func (c *uidClaims) close() { c.unlock() }

// take claims uid for this run: ok when it was free, stale or this run's.
func (c *uidClaims) take(uid uint32) (ok bool, err error) {
	p := filepath.Join(c.dir, strconv.FormatUint(uint64(uid), 10))
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		owner := strings.TrimSpace(string(b))
		if owner == c.run {
			return true, nil
		}
		if owner != "" && !strings.ContainsAny(owner, "/") {
			if _, err := os.Lstat(filepath.Join(c.root, owner)); err == nil {
				return false, nil // another run's, and that run is still here
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("worker uids: claim %d: %w", uid, err)
	}
	if err := writeFileAtomic(p, []byte(c.run+"\n")); err != nil {
		return false, fmt.Errorf("worker uids: claim %d: %w", uid, err)
	}
	return true, nil
}

func (iso *Isolation) passwdFile() string {
	if iso.PasswdFile != "" {
		return iso.PasswdFile
	}
	return "/etc/passwd"
}

func (iso *Isolation) groupFile() string {
	if iso.GroupFile != "" {
		return iso.GroupFile
	}
	return "/etc/group"
}

// idsOf adds the third field of each line of a passwd or group file.
func idsOf(file string, used map[uint32]bool) error {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("host ids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 {
			continue
		}
		if n, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
			used[uint32(n)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("host ids: %s: %w", file, err)
	}
	return nil
}
