package sitter

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTightenLogs: a task's log and its rotated backups left 0644 become
// 0600; other tasks' logs are not touched.
func TestTightenLogs(t *testing.T) {
	dir := t.TempDir()
	files := map[string]os.FileMode{
		"web.stdout.log":                         0o600,
		"web.stdout-2026-01-01T00-00-00.000.log": 0o600,
		"webby.stdout.log":                       0o644, // another task
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tightenLogs(filepath.Join(dir, "web.stdout.log"))
	for name, want := range files {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	tightenLogs(filepath.Join(dir, "missing.stdout.log")) // no file: nothing to do, no panic
}
