package nightshift_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"nightshift/internal/service/builtin"
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

// Adapters no core may depend on: the broker client, cloud SDKs, databases,
// HTTP and the host's process table. Cores reach them through interfaces
// the daemons' main packages fill in.
var (
	adapterDeps = []string{"github.com/rabbitmq/amqp091-go", "github.com/aws/", "github.com/mattn/go-sqlite3",
		"github.com/shirou/gopsutil", "database/sql", "net/http"}
	// noInternal bans every nightshift/internal package but those listed
	// in internalAllowed.
	noInternal = "nightshift/internal/"
)

// internalAllowed are the internal packages a core may use: pure helpers
// with no I/O of their own that the rest of the tree shares.
var internalAllowed = map[string]bool{
	"nightshift/internal/redact":    true, // secrets out of messages
	"nightshift/internal/brokerurl": true, // a broker address list's one spelling, no I/O (redact splits by it)
	"nightshift/internal/backoff":   true, // the one retry curve
	"nightshift/internal/envelope":  true, // the message format cores define their commands in
	"nightshift/internal/jobspec":   true, // a job's worker spec and its digest, values only
	"nightshift/internal/process":   true, // the /proc/<pid>/stat parser and the process stop
	"nightshift/internal/nsenv":     true, // the NIGHTSHIFT_* names, constants only
	"nightshift/internal/runlayout": true, // paths under a run's directory, no I/O
}

// TestPureCoreImports keeps adapters out of the cores: the engines, the
// plan loader and boot engine, the provisioner, the sitter, the controller
// and mgmt.
func TestPureCoreImports(t *testing.T) {
	rules := []struct {
		pkg    string
		banned []string
	}{
		{"./decision", append(slices.Clone(adapterDeps), "os/exec", noInternal)},
		// The loader validates against the type registry it is given
		// (Options.Types); it does not reach for it.
		{"./launchplan", append(slices.Clone(adapterDeps), "nightshift/internal/service")},
		{"./bootlevel", adapterDeps},
		// The provisioner decides; drivers (internal/worker) launch,
		// provbus serves it over AMQP, provstore keeps its records.
		{"./provisioner", append(slices.Clone(adapterDeps), "os/exec", noInternal)},
		// The sitter runs programs, so os/exec belongs; measuring them is
		// internal/psutil's (gopsutil), its bus side sitterbus's.
		{"./sitter", append(slices.Clone(adapterDeps), noInternal)},
		// The controller decides (its Pool is the pure core); ctlbus serves
		// it over AMQP and reads the management API, ctlstore keeps its
		// records. It runs no program itself, but the sitter's types it
		// reads bring os/exec along.
		{"./controller", append(slices.Clone(adapterDeps), noInternal, "nightshift/controller/ctlbus")},
		// mgmt decides what an operator's command does; mgmtbus reaches
		// the live run for it.
		{"./mgmt", append(slices.Clone(adapterDeps), "nightshift/mgmt/mgmtbus")},
		{".", append(slices.Clone(adapterDeps), "github.com/BurntSushi/toml")},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", r.pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", r.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range r.banned {
				if bannedDep(dep, b) {
					t.Errorf("%s depends on %s", r.pkg, dep)
				}
			}
		}
	}
}

// TestNoTestSupportInBinaries: the test-support family (a RabbitMQ
// topology per test, a throwaway sshd, fake EC2) stays out of what ships.
func TestNoTestSupportInBinaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/...", "./examples/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if bannedDep(dep, "nightshift/internal/testsupport") || strings.HasSuffix(dep, "test") && strings.HasPrefix(dep, "nightshift/") {
			t.Errorf("a binary depends on %s", dep)
		}
	}
}

// bannedDep reports whether dep falls under rule b: a path ending in "/"
// bans everything below it (but internalAllowed), any other bans the
// package and its subpackages.
func bannedDep(dep, b string) bool {
	if dep == "database/sql/driver" {
		return false // interfaces only: google/uuid's UUID implements them
	}
	if strings.HasSuffix(b, "/") {
		return strings.HasPrefix(dep, b) && !internalAllowed[dep]
	}
	return dep == b || strings.HasPrefix(dep, b+"/")
}

func TestBannedDep(t *testing.T) {
	cases := []struct {
		dep, rule string
		want      bool
	}{
		{"database/sql", "database/sql", true},
		{"database/sql/driver", "database/sql", false},
		{"github.com/mattn/go-sqlite3", "github.com/mattn/go-sqlite3", true},
		{"database/sqlx", "database/sql", false},
		{"github.com/aws/smithy-go", "github.com/aws/", true},
		{"github.com/shirou/gopsutil/v3/cpu", "github.com/shirou/gopsutil", true},
		{"nightshift/internal/amqpbus", noInternal, true},
		{"nightshift/internal/redact", noInternal, false},
		{"nightshift/internalx", noInternal, false},
		{"os/exec", "os/exec", true},
		{"os", "os/exec", false},
	}
	for _, c := range cases {
		if got := bannedDep(c.dep, c.rule); got != c.want {
			t.Errorf("bannedDep(%q, %q) = %v, want %v", c.dep, c.rule, got, c.want)
		}
	}
}

// TestEnvNamesInOnePlace: a NIGHTSHIFT_* name is spelled in internal/nsenv
// and nowhere else in production code, so that renaming or documenting one
// is one edit. Tests may spell the wire name they assert; examples show
// worker authors the contract as they would write it.
func TestEnvNamesInOnePlace(t *testing.T) {
	literal := regexp.MustCompile(`"NIGHTSHIFT_[A-Z0-9_]*=?"`)
	filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "." || d.Name() == "testdata" || p == "examples" || p == filepath.Join("internal", "nsenv")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := literal.FindString(line); m != "" {
				t.Errorf("%s:%d: %s: use the constant in internal/nsenv", p, i+1, m)
			}
		}
		return nil
	})
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
		if _, err := launchplan.Load(p, launchplan.Options{Types: builtin.Names(), Replicas: builtin.Replicas}); err != nil {
			t.Errorf("%s does not validate:\n%v", p, err)
		}
	}
}

// TestDocsLinkInsideRepo: product docs link only to files in the
// repository, which a reader of a clone has; a link to a machine path or a
// sibling checkout is broken for everyone else.
func TestDocsLinkInsideRepo(t *testing.T) {
	docs, _ := filepath.Glob("docs/*.md")
	for _, g := range []string{"README.md", "*/README.md", "plans/*/README.md"} {
		m, _ := filepath.Glob(g)
		docs = append(docs, m...)
	}
	if len(docs) == 0 {
		t.Fatal("no docs found")
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, bad := range []string{"/work/", "../shared"} {
				if strings.Contains(line, bad) {
					t.Errorf("%s:%d: names %q, outside the repository", doc, i+1, bad)
				}
			}
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target, _, _ := strings.Cut(m[1], "#")
				if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				abs, err := filepath.Abs(filepath.Join(filepath.Dir(doc), target))
				if err != nil || !strings.HasPrefix(abs, root+string(filepath.Separator)) {
					t.Errorf("%s:%d: link %q leaves the repository", doc, i+1, m[1])
					continue
				}
				if _, err := os.Stat(abs); err != nil {
					t.Errorf("%s:%d: link %q: %v", doc, i+1, m[1], err)
				}
			}
		}
	}
}

// TestArchitectureNamesEveryPackage: docs/architecture.md's "Who owns
// what" table has one row per package of the module, each once, and no row
// for a package that is gone, so the one page cannot drift from the tree.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	want := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(p, "nightshift/"); ok {
			p = rel
		}
		want[p] = true
	}
	b, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Who owns what\n")
	if !ok {
		t.Fatal(`docs/architecture.md: no "## Who owns what" section`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	seen := map[string]int{}
	for _, line := range strings.Split(table, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		seen[m[1]]++
		if !want[m[1]] {
			t.Errorf("docs/architecture.md: a row names %q, which is not a package of the module", m[1])
		}
		if seen[m[1]] == 2 {
			t.Errorf("docs/architecture.md: %q has more than one row", m[1])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if seen[p] == 0 {
			t.Errorf("docs/architecture.md: package %q has no row in \"Who owns what\"", p)
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
