package localworker

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestSweepResolvesLinkedRoots: a shared directory that is a link (as
// /dev/shm -> /run/shm is on some hosts) is swept where it points, and a
// dangling one, or a missing one, is skipped without failing the sweep,
// which would otherwise fail every launch and terminate under a uid.
func TestSweepResolvesLinkedRoots(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowns files to a worker uid (CI runs as root)")
	}
	const uid = 65470 // a uid no worker of these tests holds
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o1777); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(real, "left")
	if err := os.WriteFile(left, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(left, uid, uid); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "shm")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(base, "dangling")
	if err := os.Symlink(filepath.Join(base, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	roots := []string{link, dangling, filepath.Join(base, "missing"), real}
	if err := sweepUIDFiles(log, uid, roots); err != nil {
		t.Fatalf("sweep with a linked, a dangling and a missing root: %v", err)
	}
	if _, err := os.Lstat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s, uid %d's in a root reached through a link, is still there: %v", left, uid, err)
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the link itself must stay: %v", err)
	}
}
