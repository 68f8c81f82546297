package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SecretSize is the length in bytes of a run secret.
const SecretSize = 32

// LoadOrCreateSecret returns the run secret stored hex-encoded at path,
// creating it (mode 0600, missing parent directories 0700) when absent. An
// existing file readable or writable by group or others is refused rather
// than fixed: someone else may already have the key, so the run must be
// re-keyed deliberately.
func LoadOrCreateSecret(path string) ([]byte, error) {
	return loadOrCreate(path, "secret", SecretSize)
}

// CommandKeyPath is where the run's Ed25519 command key lives: beside the
// run secret at secretPath, in every home that has one.
func CommandKeyPath(secretPath string) string {
	return filepath.Join(filepath.Dir(secretPath), "command.key")
}

// LoadOrCreateCommandKey returns the run's Ed25519 command key, whose
// 32-byte seed is stored hex-encoded at path, creating it once like the
// run secret (0600, racing creators agree on one key). Only the run's
// daemons and mgmt hold it; workers get its public half.
func LoadOrCreateCommandKey(path string) (ed25519.PrivateKey, error) {
	seed, err := loadOrCreate(path, "command key", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// LoadCommandKey is LoadOrCreateCommandKey for a process that must not
// make up a key of its own (one nobody else would match): a missing file is
// an error wrapping fs.ErrNotExist.
func LoadCommandKey(path string) (ed25519.PrivateKey, error) {
	seed, err := readSecret(path, "command key", ed25519.SeedSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read command key %s: %w", path, err)
		}
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ParsePublicKey decodes a command key's public half as handed to workers
// (hex, EncodePublicKey).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("command public key: not hex: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("command public key: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// EncodePublicKey encodes the public half of key for a worker (hex).
func EncodePublicKey(key ed25519.PrivateKey) string {
	return hex.EncodeToString(key.Public().(ed25519.PublicKey))
}

func loadOrCreate(path, kind string, size int) ([]byte, error) {
	secret, err := readSecret(path, kind, size)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s %s: %w", kind, path, err)
	}
	raw := make([]byte, size)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("create %s %s: %w", kind, path, err)
	}
	// Write a temp file then hard-link it into place: link fails if the path
	// exists, so two processes racing here agree on one secret and neither
	// ever reads a half-written file.
	tmp, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("create %s %s: %w", kind, path, err)
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
		return nil, fmt.Errorf("create %s %s: %w", kind, path, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path, kind, size)
		}
		return nil, fmt.Errorf("create %s %s: %w", kind, path, err)
	}
	return raw, nil
}

func readSecret(path, kind string, size int) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s %s: %w", kind, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s %s: not a regular file (%s)", kind, path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read %s %s: mode %04o is too open, want 0600 (re-key the run, or chmod 600 if you know it was not exposed)", kind, path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", kind, path, err)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: not hex: %w", kind, path, err)
	}
	if len(raw) != size {
		return nil, fmt.Errorf("read %s %s: %d bytes, want %d", kind, path, len(raw), size)
	}
	return raw, nil
}
