package leader

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lease.json")
	if err := WriteState(path, State{Role: RoleStandby}); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(path, State{Role: RoleActive, Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != RoleActive || st.Epoch != 7 || st.PID != os.Getpid() {
		t.Fatalf("got %+v", st)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestReadStateRefusesGarbage(t *testing.T) {
	for _, body := range []string{"", "{", `{"role":"leader"}`} {
		path := filepath.Join(t.TempDir(), "lease.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadState(path); err == nil {
			t.Errorf("%q: accepted", body)
		}
	}
}

func TestWriteStateNoPath(t *testing.T) {
	if err := WriteState("", State{Role: RoleActive}); err != nil {
		t.Fatal(err)
	}
}
