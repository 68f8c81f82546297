package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SecretSize is the length in bytes of a run secret.
const SecretSize = 32

// LoadOrCreateSecret returns the run secret stored hex-encoded at path,
// creating it (mode 0600, missing parent directories 0700) when absent. An
// existing file readable or writable by group or others is refused rather
// than fixed: someone else may already have the key, so the run must be
// re-keyed deliberately.
func LoadOrCreateSecret(path string) ([]byte, error) {
	secret, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	raw := make([]byte, SecretSize)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	// Write a temp file then hard-link it into place: link fails if the path
	// exists, so two processes racing here agree on one secret and neither
	// ever reads a half-written file.
	tmp, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(raw) + "\n")
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("create secret %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path)
		}
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	return raw, nil
}

func readSecret(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read secret %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read secret %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read secret %s: mode %04o is too open, want 0600 (re-key the run, or chmod 600 if you know it was not exposed)", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", path, err)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("read secret %s: not hex: %w", path, err)
	}
	if len(raw) != SecretSize {
		return nil, fmt.Errorf("read secret %s: %d bytes, want %d", path, len(raw), SecretSize)
	}
	return raw, nil
}
