package daemonflag

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
)

// A daemon's log never shows a secret it was handed, however the value
// reaches a record: an error quoting the broker URL, the run secret inside
// a message, a worker password registered by another process.
func TestLoggerRedactsByValue(t *testing.T) {
	home := t.TempDir()
	lay := runlayout.Of(home, "r1")
	if err := os.MkdirAll(lay.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	const runSecret = "6e6967687473686966742d72756e2d736563726574"
	if err := os.WriteFile(lay.Secret(), []byte(runSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const workerPass = "worker-password-from-the-registry"
	if err := redact.Register(lay.RedactValues(), workerPass); err != nil {
		t.Fatal(err)
	}
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", asJSON), func(t *testing.T) {
			var c Common
			fs := flag.NewFlagSet("d", flag.ContinueOnError)
			c.Register(fs, Options{SecretDefault: true})
			if err := fs.Parse([]string{"--run", "r1", "--home", home, "--amqp-url", "amqp://prov:s3cret-broker-pass@127.0.0.1:5672/"}); err != nil {
				t.Fatal(err)
			}
			if err := c.Resolve(func(string) string { return "" }); err != nil {
				t.Fatal(err)
			}
			red, err := c.Redactor()
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log := c.Logger(&out, red, asJSON)
			log.Error("dial failed: amqp://prov:s3cret-broker-pass@127.0.0.1:5672/", "err", errors.New("secret "+runSecret+" rejected"))
			log.With("url", "amqp://w:"+workerPass+"@h/").Info("worker", "args", []string{"--pass", workerPass})
			for _, secret := range []string{"s3cret-broker-pass", runSecret, workerPass} {
				if strings.Contains(out.String(), secret) {
					t.Errorf("log shows %q:\n%s", secret, out.String())
				}
			}
			if !strings.Contains(out.String(), redact.Marker) {
				t.Errorf("no redaction marker in:\n%s", out.String())
			}
		})
	}
}

// A secret file that cannot be read is an error, not a silently
// unredacted log; one that does not exist yet is fine (the daemon creates
// it and adds it then).
func TestRedactorSecretFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"missing", filepath.Join(dir, "nope"), false},
		{"a directory", dir, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Common{URL: "amqp://guest:guest@127.0.0.1/", SecretFile: tc.path, opts: Options{NoHome: true}}
			_, err := c.Redactor()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
