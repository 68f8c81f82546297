package nightshift

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/launchplan"
)

// TestPackageDocs: every package says what it owns.
func TestPackageDocs(t *testing.T) {
	dirs := map[string]bool{}
	filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			dirs[filepath.Dir(p)] = true
		}
		return nil
	})
	for dir := range dirs {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		for name, pkg := range pkgs {
			documented := false
			for _, f := range pkg.Files {
				if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
					documented = true
				}
			}
			if !documented {
				t.Errorf("package %s in %s has no package comment", name, dir)
			}
		}
	}
}

// TestPureCoreImports keeps I/O libraries out of the pure cores.
func TestPureCoreImports(t *testing.T) {
	banned := map[string][]string{
		"./decision":   {"amqp091", "aws-sdk-go", "go-sqlite3", "gopsutil", "nightshift/internal/"},
		"./launchplan": {"amqp091", "aws-sdk-go", "go-sqlite3", "gopsutil"},
		"./bootlevel":  {"amqp091", "aws-sdk-go", "go-sqlite3", "gopsutil"},
		".":            {"amqp091", "aws-sdk-go", "go-sqlite3", "gopsutil", "BurntSushi"},
	}
	for pkg, bad := range banned {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if strings.Contains(dep, b) && dep != "nightshift/internal/redact" {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

// TestShippedPlansValidate: the plans the README and docs point at cannot rot.
func TestShippedPlansValidate(t *testing.T) {
	var plans []string
	for _, glob := range []string{"plans/*.toml", "examples/*/plan.toml"} {
		m, _ := filepath.Glob(glob)
		plans = append(plans, m...)
	}
	if len(plans) == 0 {
		t.Fatal("no shipped plans found")
	}
	for _, p := range plans {
		if _, err := launchplan.Load(p, launchplan.Options{}); err != nil {
			t.Errorf("%s does not validate:\n%v", p, err)
		}
	}
}

// TestNoReplaceDirectives keeps go.mod buildable from the module proxy.
func TestNoReplaceDirectives(t *testing.T) {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\nreplace ") {
		t.Fatal("go.mod has a replace directive")
	}
}
