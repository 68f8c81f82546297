package launchplan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTree writes files (relative path -> content) under a temp dir.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func errorList(t *testing.T, err error) ErrorList {
	t.Helper()
	var list *ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want *ErrorList, got %T: %v", err, err)
	}
	return *list
}

func TestLoadMissingFileIsError(t *testing.T) {
	_, err := Load("testdata/does-not-exist.toml", testOptions())
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %T: %v", err, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error should wrap fs.ErrNotExist: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "testdata/does-not-exist.toml: read plan: ") {
		t.Errorf("error = %q", err)
	}
}

func TestTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("# padding padding padding\n"), MaxFileSize/26+10)
	_, err := Parse("big.toml", big, testOptions())
	if list := errorList(t, err); !strings.Contains(list.Error(), "larger than 1 MiB") {
		t.Fatalf("err = %v", err)
	}
	dir := writeTree(t, map[string]string{"big.toml": string(big)})
	_, err = Load(filepath.Join(dir, "big.toml"), testOptions())
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Fatalf("Load err = %v", err)
	}
}

func TestHashCoversEveryFileInOrder(t *testing.T) {
	files := map[string]string{
		"p.toml":        "[[level]]\n[level.service.a]\nboot = [\"sleep\", \"${global.g}\"]\n[[level]]\nfile = \"lv/two.toml\"\n",
		"lv/two.toml":   "[service.b]\nboot = [\"sleep\", \"1\"]\n",
		"g.toml":        "[globals]\ng = \"1\"\n",
		"lv/unused.txt": "not read",
	}
	dir := writeTree(t, files)
	opts := testOptions()
	opts.GlobalFiles = []string{filepath.Join(dir, "g.toml")}
	plan, err := Load(filepath.Join(dir, "p.toml"), opts)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(files["p.toml"] + files["lv/two.toml"] + files["g.toml"]))
	if want := hex.EncodeToString(sum[:]); plan.Hash != want {
		t.Fatalf("Hash = %s, want sha256(top+include+globals) = %s", plan.Hash, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "lv/two.toml"), []byte("[service.b]\nboot = [\"sleep\", \"2\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := Load(filepath.Join(dir, "p.toml"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash == plan.Hash {
		t.Fatal("changing an include must change the hash")
	}
}

func TestParseReadsIncludesRelativeToPath(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"lv/one.toml": "[service.a]\nboot = [\"../run.sh\"]\n",
		"run.sh":      "#!/bin/sh\n",
	})
	plan, err := Parse(filepath.Join(dir, "virtual.toml"), []byte("[[level]]\nfile = \"lv/one.toml\"\n"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	a, ok := plan.Service("a")
	if !ok {
		t.Fatal("service a missing")
	}
	if a.Boot.Path != filepath.Join(dir, "run.sh") {
		t.Errorf("boot path = %q, want absolute path next to the include's parent", a.Boot.Path)
	}
	if plan.Name != "virtual" || plan.Dir != dir {
		t.Errorf("name %q dir %q", plan.Name, plan.Dir)
	}
}

func TestDefaultNameMustBeValid(t *testing.T) {
	_, err := Parse("My Plan.toml", []byte("[[level]]\n[level.service.a]\nboot = [\"sleep\"]\n"), testOptions())
	if err == nil || !strings.Contains(err.Error(), `My Plan.toml: name: default plan name "My Plan"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestTimeoutPrecedence(t *testing.T) {
	src := `
[defaults]
timeout = "1m"
boot_timeout = "7m"
ready_interval = "2s"
[[level]]
[level.service.own_timeout]
boot = ["sleep"]
timeout = "30s"
[level.service.own_specific]
boot = ["sleep"]
timeout = "30s"
ready_timeout = "45s"
[level.service.inherits]
boot = ["sleep"]
[level.service.builtin]
boot = ["sleep"]
ready_interval = "250ms"
`
	plan, err := Parse("t.toml", []byte(src), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		svc                         string
		boot, ready, term, interval time.Duration
	}{
		{"own_timeout", 30 * time.Second, 30 * time.Second, 30 * time.Second, 2 * time.Second},
		{"own_specific", 30 * time.Second, 45 * time.Second, 30 * time.Second, 2 * time.Second},
		{"inherits", 7 * time.Minute, time.Minute, time.Minute, 2 * time.Second},
		{"builtin", 7 * time.Minute, time.Minute, time.Minute, 250 * time.Millisecond},
	}
	for _, c := range cases {
		s, ok := plan.Service(c.svc)
		if !ok {
			t.Fatalf("no service %s", c.svc)
		}
		if s.BootTimeout != c.boot || s.ReadyTimeout != c.ready || s.TerminateTimeout != c.term || s.ReadyInterval != c.interval {
			t.Errorf("%s: boot %v ready %v terminate %v interval %v; want %v %v %v %v", c.svc,
				s.BootTimeout, s.ReadyTimeout, s.TerminateTimeout, s.ReadyInterval, c.boot, c.ready, c.term, c.interval)
		}
	}
	plain, err := Parse("p.toml", []byte("[[level]]\n[level.service.a]\nboot = [\"sleep\"]\n"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := plain.Service("a")
	if a.BootTimeout != 10*time.Minute || a.ReadyTimeout != 5*time.Minute || a.TerminateTimeout != 2*time.Minute ||
		a.ReadyInterval != time.Second || a.ReadyStartPeriod != 0 || a.Replica != -1 || a.Driver != DriverLocal {
		t.Errorf("built-in defaults wrong: %+v", a)
	}
}

func TestGlobalRanks(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"g1.toml": "[globals]\na = \"g1\"\nb = \"g1\"\n",
		"g2.toml": "[globals]\nb = \"g2\"\n",
	})
	src := "[globals]\na = \"plan\"\nb = \"plan\"\nc = \"plan\"\nd = 1.5\n[[level]]\n[level.service.s]\nboot = [\"sleep\"]\n"
	opts := testOptions()
	opts.GlobalFiles = []string{filepath.Join(dir, "g1.toml"), filepath.Join(dir, "g2.toml")}
	opts.Globals = map[string]string{"c": "flag"}
	plan, err := Parse("r.toml", []byte(src), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "g1", "b": "g2", "c": "flag", "d": "1.5"}
	for k, v := range want {
		if plan.Globals[k] != v {
			t.Errorf("global %s = %q, want %q", k, plan.Globals[k], v)
		}
	}

	opts.Globals = map[string]string{"bad name": "x"}
	opts.GlobalFiles = []string{filepath.Join(dir, "missing.toml")}
	_, err = Parse("r.toml", []byte(src), opts)
	msg := fmt.Sprint(err)
	if !strings.Contains(msg, "-g: bad name: global name") || !strings.Contains(msg, "missing.toml: read globals file") {
		t.Fatalf("err = %v", err)
	}
}

func TestNilOptionsUseTheProcess(t *testing.T) {
	t.Setenv("NIGHTSHIFT_LAUNCHPLAN_TEST", "1")
	src := "[[level]]\n[level.service.a]\nboot = [\"sh\", \"-c\", \"${env.NIGHTSHIFT_LAUNCHPLAN_TEST}\"]\n"
	plan, err := Parse("n.toml", []byte(src), Options{})
	if err != nil {
		t.Fatalf("needs sh in PATH: %v", err)
	}
	a, _ := plan.Service("a")
	if !filepath.IsAbs(a.Boot.Path) {
		t.Errorf("bare program resolved to %q, want absolute", a.Boot.Path)
	}
}

func TestSSHProgramNeedNotBeExecutable(t *testing.T) {
	// The ssh driver uploads with mode 0755, so only existence matters.
	src := "[[level]]\n[level.service.a]\ndriver = \"ssh\"\nssh = { host = \"h\" }\nboot = [\"bin/not-executable.sh\"]\n"
	plan, err := Parse("testdata/x.toml", []byte(src), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := plan.Service("a")
	if a.SSH == nil || a.SSH.Port != 22 || a.SSH.StageDir != DefaultStageDir {
		t.Errorf("ssh defaults: %+v", a.SSH)
	}
}

func TestServiceLookupAndReplicas(t *testing.T) {
	plan, err := Load("testdata/valid/hello.toml", testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s, ok := plan.Service(fmt.Sprintf("web-%d", i))
		if !ok || s.Replica != i || s.ReplicaOf != "web" || s.Level != 2 {
			t.Fatalf("web-%d: %+v %v", i, s, ok)
		}
	}
	if _, ok := plan.Service("web"); ok {
		t.Error("a replicated service is only known by its replica names")
	}
	// Replicas must not share maps or slices: the engine expands them apart.
	w0, _ := plan.Service("web-0")
	w1, _ := plan.Service("web-1")
	w0.Env["UPSTREAM"] = "changed"
	w0.Boot.Args[0] = "changed"
	if w1.Env["UPSTREAM"] == "changed" || w1.Boot.Args[0] == "changed" {
		t.Error("replicas alias each other's fields")
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		e    Error
		want string
	}{
		{Error{Pos: Pos{File: "a.toml", Line: 3}, Key: "level[1].x", Msg: "bad"}, "a.toml:3: level[1].x: bad"},
		{Error{Pos: Pos{File: "a.toml", Line: 3}, Msg: "bad"}, "a.toml:3: bad"},
		{Error{Pos: Pos{File: "a.toml"}, Key: "k", Msg: "bad"}, "a.toml: k: bad"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	list := ErrorList{
		{Pos: Pos{File: "b.toml", Line: 1}, Msg: "x"},
		{Pos: Pos{File: "a.toml", Line: 9}, Msg: "y"},
		{Pos: Pos{File: "a.toml", Line: 2}, Msg: "z"},
		{Pos: Pos{File: "a.toml", Line: 2}, Msg: "z"},
	}.sortDedup()
	if got := list.Error(); got != "a.toml:2: z\na.toml:9: y\nb.toml:1: x" {
		t.Errorf("sorted list = %q", got)
	}
}

func TestStructuralErrors(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"single level table", "[level]\nx = 1\n", "s.toml:1: level: levels are an array of tables: write [[level]], not [level]"},
		{"level not array", "level = 3\n", "s.toml:1: level: want an array, got integer"},
		{"level element not table", "level = [1]\n", "s.toml:1: level[1]: want a table, got integer"},
		{"empty level array", "level = []\n", "s.toml:1: level: plan has no levels"},
		{"service not table", "[[level]]\nservice = 3\n", "s.toml:2: level[1].service: want a table, got integer"},
		{"service body not table", "[[level]]\nservice.a = 3\n", "s.toml:2: level[1].service.a: want a table, got integer"},
		{"program wrong type", "[[level]]\n[level.service.a]\nboot = 3\n", "s.toml:3: level[1].service.a.boot: want [program, args...] or {program = ..., args = [...]}, got integer"},
		{"program table without program", "[[level]]\n[level.service.a]\nboot = { args = [\"x\"] }\n", "s.toml:3: level[1].service.a.boot: missing program"},
		{"arg not scalar", "[[level]]\n[level.service.a]\nboot = [\"sleep\", [1]]\n", "s.toml:3: level[1].service.a.boot[1]: want a string, number or boolean, got array"},
		{"exports not strings", "[[level]]\n[level.service.a]\nboot = [\"sleep\"]\nexports = [1, \"a.b\", \"hostname\", \"p\", \"p\"]\n", "s.toml:4: level[1].service.a.exports[0]: want a string, got integer\ns.toml:4: level[1].service.a.exports[1]: export name \"a.b\" may only hold letters, digits, '_' and '-'\ns.toml:4: level[1].service.a.exports[2]: export \"hostname\" is a built-in attribute\ns.toml:4: level[1].service.a.exports[4]: export \"p\" is listed twice"},
		{"attribute also export", "[[level]]\n[level.service.a]\nboot = [\"sleep\"]\nexports = [\"p\"]\nattributes = { p = \"1\" }\n", "s.toml:5: level[1].service.a.attributes.p: attribute \"p\" is also listed in exports"},
		{"job not table", "[[level]]\n[level.service.a]\nboot = [\"sleep\"]\n[jobs]\nj = 1\n", "s.toml:5: jobs.j: want a table, got integer"},
		{"inline levels locate by ancestor", "level = [{ service = { a = { boot = [\"nope/x\"] } } }]\n", "s.toml:1: level[1].service.a.boot: program nope/x does not exist"},
		{"toml duplicate key", "name = \"a\"\nname = \"b\"\n", "s.toml:2: TOML syntax: Key 'name' has already been defined."},
		{"globals file keys", "[[level]]\n[level.service.a]\nboot = [\"sleep\", \"${global.x}\"]\n", "testdata/globals/bad.toml:1: other: unknown key; a globals file holds only a [globals] table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := testOptions()
			if c.name == "globals file keys" {
				dir := writeTree(t, map[string]string{"bad.toml": "other = 1\n"})
				opts.GlobalFiles = []string{filepath.Join(dir, "bad.toml")}
				c.want = strings.ReplaceAll(c.want, "testdata/globals/bad.toml", filepath.Join(dir, "bad.toml"))
			}
			_, err := Parse("s.toml", []byte(c.src), opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err =\n%v\nwant containing\n%s", err, c.want)
			}
		})
	}
}

func TestControlBytesInGlobalArgumentsAreRefused(t *testing.T) {
	dir := writeTree(t, map[string]string{"p.toml": "[[level]]\n[level.service.a]\nboot = [\"true\", \"${global.g}\"]\n"})
	for _, v := range []string{"a\x00b", "\x1b[2J", "a\u0085b"} {
		_, err := Load(filepath.Join(dir, "p.toml"), Options{Globals: map[string]string{"g": v}, Getenv: testOptions().Getenv, LookPath: testOptions().LookPath})
		if err == nil || !strings.Contains(err.Error(), "-g: g: value holds control character") {
			t.Errorf("-g g=%q: err = %v", v, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "p.toml"), Options{Globals: map[string]string{"g": "multi\nline\twith tab"}, Getenv: testOptions().Getenv, LookPath: testOptions().LookPath}); err != nil {
		t.Errorf("tabs and line breaks are allowed: %v", err)
	}
}

func TestExpandIsBounded(t *testing.T) {
	attrs := map[string]string{"a40": "xxxxxxxx"}
	for i := 0; i < 40; i++ {
		attrs[fmt.Sprintf("a%d", i)] = fmt.Sprintf("${.a%d}${.a%d}", i+1, i+1)
	}
	start := time.Now()
	_, err := ExpandService(&Service{Name: "s", Attributes: attrs}, Scope{})
	if !errors.Is(err, ErrExpandedTooLong) {
		t.Fatalf("err = %v, want ErrExpandedTooLong", err)
	}
	big := strings.Repeat("x", MaxExpandedLen/2)
	env := map[string]string{}
	for i := 0; i < 20; i++ {
		env[fmt.Sprintf("E%d", i)] = "${global.big}"
	}
	_, err = ExpandService(&Service{Name: "s", Env: env}, Scope{Globals: map[string]string{"big": big}})
	if err == nil || !strings.Contains(err.Error(), "together") {
		t.Fatalf("err = %v, want the service's total refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRunNames(t *testing.T) {
	for _, ok := range []string{"a", "hello", "prod-2", "0", strings.Repeat("a", 63)} {
		if err := CheckRunName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "A", "a_b", "a.b", "../x", "../../elsewhere/x", "a/b", "a\nb", "a\n", "a\x00", "a b", strings.Repeat("a", 64), "é"} {
		err := CheckRunName(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.ContainsAny(err.Error(), "\n\x00") {
			t.Errorf("%q: error holds the raw name: %q", bad, err)
		}
	}
	// The file name is the default run name, so it is checked as one.
	dir := writeTree(t, map[string]string{"my_plan.toml": "[[level]]\n[level.service.a]\nboot = [\"true\"]\n"})
	if _, err := Load(filepath.Join(dir, "my_plan.toml"), testOptions()); err == nil || !strings.Contains(err.Error(), `default plan name "my_plan"`) {
		t.Errorf("err = %v", err)
	}
}

// TestTypesComeFromTheCaller: the loader has no list of its own; without a
// registry every type is unknown, with one only its names are accepted.
func TestTypesComeFromTheCaller(t *testing.T) {
	src := []byte("[[level]]\n[level.service.s]\ntype = \"queue\"\n")
	opts := testOptions()
	opts.Types = nil
	if _, err := Parse("t.toml", src, opts); err == nil || !strings.Contains(err.Error(), `unknown type "queue": no built-in types are registered`) {
		t.Errorf("no registry: %v", err)
	}
	opts.Types = []string{"queue"}
	if _, err := Parse("t.toml", src, opts); err != nil && strings.Contains(err.Error(), "unknown type") {
		t.Errorf("registered type refused: %v", err)
	}
	opts.Types = []string{"broker"}
	if _, err := Parse("t.toml", src, opts); err == nil || !strings.Contains(err.Error(), `unknown type "queue"; want broker`) {
		t.Errorf("unregistered type: %v", err)
	}
}
