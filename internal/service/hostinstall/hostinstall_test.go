package hostinstall

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what is generated (run with -update if the change is meant):\n%s", p, got)
	}
}

// provisioner is an install as the provisioner type makes one for a host of
// its own; the arguments hold every character ExecStart must escape.
func provisioner(mode Mode) Install {
	dir := "/var/lib/nightshift/runs/prod/work/provisioner/provisioner"
	bin := BinaryPath("prod", "provisioner", "provisioner")
	return Install{
		Mode: mode,
		Unit: Unit{
			Name:        UnitName("prod", "provisioner"),
			Description: "Nightshift provisioner (run prod, service provisioner)",
			Argv: []string{bin, "--run", "prod", "--home", Home, "--amqp-url-file", dir + "/amqp-url",
				"--jobs", dir + "/jobs.json", "--driver", "ec2", "--odd", `a "quoted" $HOME 100% \ it's`},
			WorkingDirectory: dir,
		},
		BinaryURL: "https://example.com/nightshift/v1/provisioner",
		Binary:    bin,
		Dirs:      []string{Home, Home + "/runs", Home + "/runs/prod", Home + "/runs/prod/work", Home + "/runs/prod/work/provisioner", dir},
		Files: []File{
			{Path: dir + "/amqp-url", Data: []byte("amqps://u:secret@10.0.0.5:5671/\n")},
			{Path: Home + "/runs/prod/secret", Data: []byte("00ff\n")},
		},
		MetricsFile: dir + "/metrics-url",
		Log:         dir + "/daemon.log",
		PIDFile:     dir + "/pid",
		RunDir:      Home + "/runs/prod",
	}
}

func TestGolden(t *testing.T) {
	unit, err := UnitText(provisioner(Systemd).Unit)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "provisioner.service", unit)
	for _, c := range []struct {
		name string
		mode Mode
	}{{"install-systemd.sh", Systemd}, {"install-process.sh", Process}} {
		s, err := Script(provisioner(c.mode))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, c.name, s)
		syntax(t, c.name, s)
	}
	stop, err := StopScript(provisioner(Systemd))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "stop-systemd.sh", stop)
	syntax(t, "stop-systemd.sh", stop)
	if _, err := StopScript(provisioner(Process)); err == nil {
		t.Error("a process install has no uninstall script, yet one was made")
	}
}

// syntax has sh parse a script without running it.
func syntax(t *testing.T, name, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: sh -n: %v\n%s", name, err, out)
	}
}

// TestUnitVerifies hands the generated unit to systemd's own checker. The
// program must exist for verify to pass, so it is swapped for one that does.
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		msg := "systemd-analyze not found (install the systemd package; scripts/test-deps does): the generated units are not verified"
		if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	u := provisioner(Systemd).Unit
	u.Argv[0] = "/bin/sh"
	text, err := UnitText(u)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, u.Name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", p)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Unknown or misspelt directives are only warnings: any output fails.
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s\n--- unit:\n%s", p, err, out.String(), text)
	}
}

func TestUnitRefusesInjection(t *testing.T) {
	ok := provisioner(Systemd).Unit
	cases := []struct {
		name string
		edit func(*Unit)
	}{
		{"newline in an argument", func(u *Unit) { u.Argv = append(u.Argv, "x\nExecStartPre=/bin/rm -rf /") }},
		{"newline in the description", func(u *Unit) { u.Description = "d\nUser=root" }},
		{"relative program", func(u *Unit) { u.Argv[0] = "provisioner" }},
		{"no program", func(u *Unit) { u.Argv = nil }},
		{"bad unit name", func(u *Unit) { u.Name = "../x.service" }},
		{"relative working directory", func(u *Unit) { u.WorkingDirectory = "work" }},
		{"space in working directory", func(u *Unit) { u.WorkingDirectory = "/var/lib/a b" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := ok
			u.Argv = append([]string(nil), ok.Argv...)
			c.edit(&u)
			if text, err := UnitText(u); err == nil {
				t.Errorf("rendered:\n%s", text)
			}
		})
	}
}

func TestExecQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":     `"plain"`,
		`a"b`:       `"a\"b"`,
		`a\b`:       `"a\\b"`,
		"$HOME":     `"$$HOME"`,
		"100%":      `"100%%"`,
		"two words": `"two words"`,
	} {
		if got := execQuote(in); got != want {
			t.Errorf("execQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestScriptRefusesBadInstalls(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Install)
	}{
		{"ftp url", func(in *Install) { in.BinaryURL = "ftp://x/provisioner" }},
		{"binary not what the unit runs", func(in *Install) { in.Binary = "/usr/bin/other" }},
		{"relative file", func(in *Install) { in.Files = append(in.Files, File{Path: "secret"}) }},
		{"newline in a path", func(in *Install) { in.Dirs = append(in.Dirs, "/a\n/b") }},
		{"process without pid file", func(in *Install) { in.Mode = Process; in.PIDFile = "" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := provisioner(Systemd)
			c.edit(&in)
			if s, err := Script(in); err == nil {
				t.Errorf("rendered:\n%s", s)
			}
		})
	}
}

// processInstall is an install under dir whose "daemon" is a shell script
// served by file://: it writes its metrics URL (unless told to fail) and
// sleeps until killed.
func processInstall(t *testing.T, daemon string) (Install, string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "fake-daemon")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"+daemon+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work", "provisioner")
	bin := filepath.Join(dir, "bin", "provisioner")
	in := Install{
		Mode: Process,
		Unit: Unit{Name: UnitName("t", "provisioner"), Description: "test daemon",
			Argv: []string{bin, "--metrics-url-file", filepath.Join(work, "metrics-url")}, WorkingDirectory: work},
		BinaryURL:   "file://" + src,
		Binary:      bin,
		Dirs:        []string{filepath.Join(dir, "work"), work},
		Files:       []File{{Path: filepath.Join(work, "amqp-url"), Data: []byte("amqp://u:p@h/\n")}},
		MetricsFile: filepath.Join(work, "metrics-url"),
		Log:         filepath.Join(work, "daemon.log"),
		PIDFile:     filepath.Join(work, "pid"),
	}
	return in, dir
}

// runScript writes the script as a program and runs it as a driver would,
// with NIGHTSHIFT_OUTPUT set, and returns its exit error, output and exports.
func runScript(t *testing.T, script string) (error, string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "install.sh")
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "out.json")
	cmd := exec.Command(p)
	cmd.Env = append(os.Environ(), "NIGHTSHIFT_OUTPUT="+outFile)
	out, err := cmd.CombinedOutput()
	if _, serr := os.Stat(p); serr == nil {
		t.Errorf("the script, which holds secrets, is still at %s", p)
	}
	var exports map[string]string
	if data, rerr := os.ReadFile(outFile); rerr == nil {
		if jerr := json.Unmarshal(data, &exports); jerr != nil {
			t.Errorf("exports %q: %v", data, jerr)
		}
	}
	return err, string(out), exports
}

func TestProcessInstallStartsDaemon(t *testing.T) {
	in, _ := processInstall(t, `while [ "$1" != --metrics-url-file ]; do shift; done
echo http://127.0.0.1:9464/metrics >"$2"
exec sleep 600`)
	script, err := Script(in)
	if err != nil {
		t.Fatal(err)
	}
	err, out, exports := runScript(t, script)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	pid, perr := strconv.Atoi(exports["pid"])
	if perr != nil {
		t.Fatalf("exports %v: no pid", exports)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if exports["metrics_url"] != "http://127.0.0.1:9464/metrics" {
		t.Errorf("metrics_url %q", exports["metrics_url"])
	}
	if data, _ := os.ReadFile(in.PIDFile); strings.TrimSpace(string(data)) != exports["pid"] {
		t.Errorf("pid file %q, exported pid %s", data, exports["pid"])
	}
	// The daemon runs in its own directory, which is how the types know it.
	cwd, err := os.Readlink("/proc/" + exports["pid"] + "/cwd")
	if err != nil || cwd != in.Unit.WorkingDirectory {
		t.Errorf("daemon cwd %q (err %v), want %s", cwd, err, in.Unit.WorkingDirectory)
	}
	for _, f := range in.Files {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", f.Path, st.Mode().Perm())
		}
		if data, _ := os.ReadFile(f.Path); !bytes.Equal(data, f.Data) {
			t.Errorf("%s holds %q, want %q", f.Path, data, f.Data)
		}
	}
	if st, err := os.Stat(in.Binary); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("binary %s: %v %v", in.Binary, st, err)
	}
	if st, err := os.Stat(in.Unit.WorkingDirectory); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("working directory: %v %v", st, err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("the daemon did not outlive the script: %v", err)
	}
}

func TestProcessInstallFailures(t *testing.T) {
	cases := []struct {
		name, daemon, want string
		url                string
	}{
		{"daemon exits at once", "echo cannot reach the broker >&2; exit 3", "exited before serving its metrics", ""},
		{"binary not found", "exit 0", "curl", "file:///nonexistent/provisioner"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, _ := processInstall(t, c.daemon)
			if c.url != "" {
				in.BinaryURL = c.url
			}
			script, err := Script(in)
			if err != nil {
				t.Fatal(err)
			}
			err, out, _ := runScript(t, script)
			if err == nil {
				t.Fatalf("install passed:\n%s", out)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("output %q does not say %q", out, c.want)
			}
		})
	}
}

func TestBrokerGolden(t *testing.T) {
	b := Broker{User: "nightshift", Password: "pw-it's", Port: 5671, ManagementPort: 15671,
		CA:   []byte("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"),
		Cert: []byte("-----BEGIN CERTIFICATE-----\nSERVER\n-----END CERTIFICATE-----\n"),
		Key:  []byte("-----BEGIN EC PRIVATE KEY-----\nKEY\n-----END EC PRIVATE KEY-----\n")}
	s, err := BrokerScript(b)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "broker-install.sh", s)
	syntax(t, "broker-install.sh", s)
	golden(t, "broker-tls.conf", BrokerConf(b))
	plain := b
	plain.CA, plain.Cert, plain.Key, plain.Port, plain.ManagementPort = nil, nil, nil, 5672, 15672
	golden(t, "broker-plain.conf", BrokerConf(plain))
	golden(t, "broker-dropin.conf", BrokerDropIn())
	golden(t, "broker-stop.sh", BrokerStopScript())
	syntax(t, "broker-stop.sh", BrokerStopScript())
	if !strings.Contains(s, `printf '%s' 'pw-it'\''s' | $sudo rabbitmqctl add_user`) {
		t.Error("the password does not reach rabbitmqctl's stdin as one shell word")
	}
	for _, bad := range []Broker{{User: "u", Port: 1, ManagementPort: 2}, {User: "u", Password: "p", Port: 1, ManagementPort: 2, Cert: []byte("c")}} {
		if _, err := BrokerScript(bad); err == nil {
			t.Errorf("%+v rendered", bad)
		}
	}
}

// shim writes an executable shell script named name into dir.
func shim(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdScriptOnAShimmedHost runs the systemd install script as a
// non-root user with sudo on a pretend host: sudo, id, useradd, install,
// systemctl and journalctl are shims that put every absolute path of the
// host under a temporary root and record what they were asked to do. No
// real host is touched; what is checked is the script's own flow: the user
// is created, every file lands with its mode and owner, the unit is the one
// UnitText renders, systemd is reloaded, enabled and restarted in that
// order, and the daemon's metrics URL is exported.
func TestSystemdScriptOnAShimmedHost(t *testing.T) {
	root, bin := t.TempDir(), t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	// A host with systemd has its unit directory.
	if err := os.MkdirAll(root+UnitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	in := provisioner(Systemd)
	src := filepath.Join(t.TempDir(), "provisioner")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	in.BinaryURL = "file://" + src
	env := "ROOT=" + root + "\nCALLS=" + calls + "\n"
	shim(t, bin, "id", env+`if [ "$#" = 1 ]; then echo 1000; exit 0; fi; exit 1  # id -u: not root; id -u nightshift: no such user yet`)
	shim(t, bin, "sudo", env+`[ "$1" = -n ] || { echo "sudo without -n would prompt" >&2; exit 1; }
shift
cmd=$1; shift
for a; do
  case $a in /var/lib/nightshift*|/opt/nightshift*|/etc/systemd*) a=$ROOT$a ;; esac
  set -- "$@" "$a"; shift
done
echo "sudo $cmd $*" | sed "s|$ROOT||g" >>"$CALLS"
exec "$cmd" "$@"`)
	shim(t, bin, "useradd", "")
	shim(t, bin, "journalctl", "")
	// install: the real one, without -o/-g (no such user here); owners are
	// recorded instead.
	shim(t, bin, "install", env+`owner=root; n=$#; i=0
while [ "$i" -lt "$n" ]; do
  a=$1; shift; i=$((i + 1))
  case $a in -o) owner=$1; shift; i=$((i + 1)); continue ;; -g) shift; i=$((i + 1)); continue ;; esac
  set -- "$@" "$a"
done
eval "last=\${$#}"
echo "owner $owner $last" | sed "s|$ROOT||g" >>"$CALLS"
exec /usr/bin/install "$@"`)
	metrics := root + in.MetricsFile
	shim(t, bin, "systemctl", env+`echo "systemctl $*" >>"$CALLS"
case $1 in restart) echo http://127.0.0.1:9464/metrics >`+shQuote(metrics)+` ;; esac
exit 0`)
	script, err := Script(in)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "install.sh")
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "out.json")
	cmd := exec.Command(p)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "NIGHTSHIFT_OUTPUT="+outFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	data, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	for _, w := range []string{
		"sudo useradd --system --home-dir /var/lib/nightshift --no-create-home --shell /usr/sbin/nologin nightshift",
		"owner nightshift " + in.Files[0].Path, "owner nightshift " + in.Files[1].Path,
		"owner nightshift " + in.Unit.WorkingDirectory, "owner root " + in.Binary,
		"owner root /etc/systemd/system/" + in.Unit.Name,
	} {
		if !strings.Contains(log, w+"\n") {
			t.Errorf("no %q in what the host was asked:\n%s", w, log)
		}
	}
	reload := strings.Index(log, "systemctl daemon-reload")
	enable := strings.Index(log, "systemctl enable "+in.Unit.Name)
	restart := strings.Index(log, "systemctl restart "+in.Unit.Name)
	if reload < 0 || enable < reload || restart < enable {
		t.Errorf("systemd not reloaded, enabled and restarted in that order:\n%s", log)
	}
	unit, err := os.ReadFile(root + "/etc/systemd/system/" + in.Unit.Name)
	want, _ := UnitText(in.Unit)
	if err != nil || string(unit) != want {
		t.Errorf("unit on the host (err %v):\n%s\nwant:\n%s", err, unit, want)
	}
	for _, f := range in.Files {
		st, err := os.Stat(root + f.Path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f.Path, st, err)
		}
	}
	if st, err := os.Stat(root + in.Binary); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("binary: %v %v", st, err)
	}
	var exports map[string]string
	if data, err := os.ReadFile(outFile); err != nil || json.Unmarshal(data, &exports) != nil || exports["metrics_url"] != "http://127.0.0.1:9464/metrics" {
		t.Errorf("exports %q (err %v)", data, err)
	}
}
