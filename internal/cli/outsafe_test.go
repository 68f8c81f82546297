package cli

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/redact"
	"nightshift/mgmt"
)

// TestHostileOutputNeverReachesAPerson boots a plan whose services print
// terminal escape sequences and the run's secret (handed to them as an
// argument) into their logs, their attributes and a failure, and checks
// every output meant for a person: none shows the secret, and none but
// `logs --raw` and --json carries a raw escape or control character; the
// escaped forms are there to read. --json keeps values exact, secrets
// aside, and every log file is 0600.
func TestHostileOutputNeverReachesAPerson(t *testing.T) {
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	code, lout, lerr := run(t, launch, "--home", home, "--plain", filepath.Join("testdata", "hostile-output.toml"))
	if code != 1 {
		t.Fatalf("launch exit %d, want 1 (level 2 fails)\nstdout:\n%s\nstderr:\n%s", code, lout, lerr)
	}
	raw, err := os.ReadFile(filepath.Join(home, "runs", "hostile", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(raw))
	if len(secret) != 64 {
		t.Fatalf("secret file holds %q", secret)
	}
	// The service really did print the secret and the sequences: the raw
	// log file has them (it is 0600, and mgmt redacts it when showing it).
	loudLog, err := os.ReadFile(filepath.Join(home, "runs", "hostile", "logs", "loud.log"))
	if err != nil || !strings.Contains(string(loudLog), secret) || !strings.Contains(string(loudLog), "\x1b]0;pwned") {
		t.Fatalf("the test service did not print what this test is about (err %v):\n%q", err, loudLog)
	}

	mg := func(args ...string) string {
		t.Helper()
		code, out, stderr := run(t, mgmtc, append([]string{"--home", home}, args...)...)
		if code != 0 && !(code == 3 && args[0] == "status") { // the run failed: status says so with 3
			t.Fatalf("mgmt %v: exit %d\n%s", args, code, stderr)
		}
		if strings.Contains(strings.Join(args, " "), "--json") {
			return out // stderr may say why status exits 3
		}
		return out + stderr
	}
	launchLog, _ := os.ReadFile(filepath.Join(home, "runs", "hostile", "launch.log"))
	forPerson := map[string]string{
		"launch stdout":    lout,
		"launch stderr":    lerr,
		"launch.log":       string(launchLog),
		"mgmt list":        mg("list"),
		"mgmt status":      mg("status", "hostile"),
		"mgmt history":     mg("history", "hostile"),
		"mgmt logs loud":   mg("logs", "hostile", "loud"),
		"mgmt logs broken": mg("logs", "hostile", "broken"),
	}
	forPrograms := map[string]string{
		"mgmt status --json":  mg("status", "--json", "hostile"),
		"mgmt history --json": mg("history", "--json", "hostile"),
		"mgmt logs --raw":     mg("logs", "--raw", "hostile", "loud"),
	}
	for name, out := range forPerson {
		for _, bad := range []string{"\x1b", "\a", "\r", "\u009b", "\x9b", "\u202e"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s holds a raw %q:\n%s", name, bad, out)
			}
		}
	}
	all := maps.Clone(forPerson)
	maps.Copy(all, forPrograms)
	for name, out := range all {
		for _, s := range []string{secret, strings.ToUpper(secret)} {
			if strings.Contains(out, s) {
				t.Errorf("%s shows the run secret:\n%s", name, out)
			}
		}
	}
	for name, want := range map[string]string{
		"mgmt status":      `banner=\x1b[31mhi\x1b]0;t\a\u202e`,
		"mgmt logs loud":   `booting \x1b]0;pwned\a\x1b[2J\x1b[31mred\x1b[0m \u009b \u202e secret=xxxxx`,
		"mgmt logs broken": `fatal \x1b[2J\x1b[Hxxxxx\r12:00:00 L2 broken ready`,
		"launch stderr":    `fatal \x1b[2J\x1b[Hxxxxx\r12:00:00 L2 broken ready`,
	} {
		if !strings.Contains(forPerson[name], want) {
			t.Errorf("%s lacks %q:\n%s", name, want, forPerson[name])
		}
	}
	if !strings.Contains(forPrograms["mgmt logs --raw"], "\x1b]0;pwned\a") {
		t.Errorf("logs --raw is not raw:\n%q", forPrograms["mgmt logs --raw"])
	}

	var st mgmt.RunStatus
	if err := json.Unmarshal([]byte(forPrograms["mgmt status --json"]), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, forPrograms["mgmt status --json"])
	}
	attrs := map[string]string{}
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if s.Name == "loud" {
				attrs = s.Attributes
			}
		}
	}
	want := map[string]string{"banner": "\x1b[31mhi\x1b]0;t\a\u202e", "fingerprint": redact.Marker, "dsn": "amqp://app:xxxxx@mq/"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("status --json attribute %s = %q, want %q (exact, secrets aside)", k, attrs[k], v)
		}
	}

	var files []string
	for _, pat := range []string{"logs/*.log", "*.log"} {
		m, _ := filepath.Glob(filepath.Join(home, "runs", "hostile", pat))
		files = append(files, m...)
	}
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", f, fi.Mode().Perm())
		}
	}
}
