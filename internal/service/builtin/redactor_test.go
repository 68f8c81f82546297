package builtin

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/envelope"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// TestRunRedactorKnowsTheRunsSecretFiles: the run secret (hex as served,
// upper-case, base64), the command key (seed as served, whole private key),
// a value a component registered, and a PKI private key are all redacted,
// the command key's public half is not; a run with none of these files gives an empty
// redactor and no error.
func TestRunRedactorKnowsTheRunsSecretFiles(t *testing.T) {
	home := t.TempDir()
	raw, err := envelope.LoadOrCreateSecret(runlayout.Of(home, "r1").Secret())
	if err != nil {
		t.Fatal(err)
	}
	hexSecret, ok := RunEnv(home)("r1", EnvRunSecret)
	if !ok {
		t.Fatal("RunEnv served no secret")
	}
	if err := redact.Register(runlayout.Of(home, "r1").RedactValues(), "worker-7-broker-password"); err != nil {
		t.Fatal(err)
	}
	keyLine := "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5vFjNb7i0YRKSoAoGCCqGSM49"
	if err := os.MkdirAll(runlayout.Of(home, "r1").PKI(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runlayout.Of(home, "r1").PKI(), "broker.key"), []byte("-----BEGIN EC PRIVATE KEY-----\n"+keyLine+"\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seedHex, ok := RunEnv(home)("r1", launchplan.EnvCommandKey)
	if !ok {
		t.Fatal("RunEnv served no command key")
	}
	key, err := envelope.LoadCommandKey(envelope.CommandKeyPath(runlayout.Of(home, "r1").Secret()))
	if err != nil || hex.EncodeToString(key.Seed()) != seedHex {
		t.Fatalf("served command key is not the run's: %v", err)
	}
	red, err := RunRedactor(home, "r1")
	if err != nil {
		t.Fatal(err)
	}
	// The public half is handed to workers and must stay readable.
	if pub := envelope.EncodePublicKey(key); red.String(pub) != pub {
		t.Errorf("public command key redacted: %q", red.String(pub))
	}
	for _, s := range []string{seedHex, base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key), hexSecret, strings.ToUpper(hexSecret), base64.StdEncoding.EncodeToString(raw), "worker-7-broker-password", keyLine} {
		if got := red.String("x " + s + " y"); got != "x xxxxx y" {
			t.Errorf("%q not redacted: %q", s, got)
		}
	}
	empty, err := RunRedactor(home, "no-such-run")
	if err != nil || empty.Len() != 0 {
		t.Fatalf("run without files: %d values, err %v", empty.Len(), err)
	}
}
