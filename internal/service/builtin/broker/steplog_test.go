package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/redact"
)

// TestStepLogRedactsByValueAndIsPrivate: the broker's step lines go through
// the run's redactor, and its log is 0600 even if it existed 0644.
func TestStepLogRedactsByValueAndIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "broker.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	req := bootlevel.StepRequest{Redactor: redact.NewRedactor("admin-pass-123")}
	lg := newStepLog(path, req.Scrub)
	lg.printf("node up; admin password admin-pass-123, url amqp://u:other-pass@h/")
	lg.close()
	data, _ := os.ReadFile(path)
	for _, s := range append(lg.tail(), string(data)) {
		if strings.Contains(s, "admin-pass-123") || strings.Contains(s, "other-pass") {
			t.Errorf("secret in %q", s)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (err %v), want 0600", st.Mode().Perm(), err)
	}
}
