package builtin

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"nightshift/launchplan"
)

// TestNamesValidatePlans: the loader accepts exactly the types the registry
// serves, so a type added to Types is usable in a plan and one removed is
// refused at load rather than at boot.
func TestNamesValidatePlans(t *testing.T) {
	names := Names()
	if !slices.Equal(names, []string{"broker", "controller", "provisioner"}) {
		t.Fatalf("Names() = %v", names)
	}
	dir := t.TempDir()
	load := func(typ string) error {
		p := filepath.Join(dir, typ+".toml")
		src := "[[level]]\n[level.service.s]\ntype = \"" + typ + "\"\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := launchplan.Load(p, launchplan.Options{Types: names})
		return err
	}
	for _, n := range names {
		if err := load(n); err != nil && strings.Contains(err.Error(), "unknown type") {
			t.Errorf("type %s refused: %v", n, err)
		}
	}
	err := load("brokr")
	if err == nil || !strings.Contains(err.Error(), `unknown type "brokr"; want broker, controller or provisioner (did you mean broker?)`) {
		t.Errorf("misspelt type: %v", err)
	}
}
