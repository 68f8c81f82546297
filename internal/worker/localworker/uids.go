package localworker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

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
// failed instance whose kill is pending, waits until they are gone).
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
	used, err := hostUIDs(iso.passwdFile(), iso.groupFile(), "/proc")
	if err != nil {
		return nil, err
	}
	out := make([]uint32, 0, n)
	for uid := uint64(iso.UIDs.First); uid <= uint64(iso.UIDs.Last) && len(out) < n; uid++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u := uint32(uid)
		if !held[u] && !used[u] {
			out = append(out, u)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("uids %d-%d: %d free, %d wanted", iso.UIDs.First, iso.UIDs.Last, len(out), n)
	}
	return out, nil
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

// hostUIDs is every id this host uses: the uids of passwd entries, the
// gids of group entries (an instance's gid is its uid), and every uid a
// running process holds.
func hostUIDs(passwd, group, procRoot string) (map[uint32]bool, error) {
	used := map[uint32]bool{}
	for _, f := range []string{passwd, group} {
		if err := idsOf(f, used); err != nil {
			return nil, err
		}
	}
	procs, err := scan(procRoot)
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		for _, u := range p.uids {
			used[u] = true
		}
	}
	return used, nil
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
