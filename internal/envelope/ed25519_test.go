package envelope

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// testKey returns a deterministic Ed25519 key; seed varies it.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

func keySigner(clock clockwork.Clock, key ed25519.PrivateKey) *Signer {
	return &Signer{Key: key, Now: clock.Now, Seen: NewReplayCache(100)}
}

func pubVerifier(clock clockwork.Clock, key ed25519.PrivateKey) *Signer {
	return &Signer{PublicKey: key.Public().(ed25519.PublicKey), Now: clock.Now, Seen: NewReplayCache(100)}
}

func TestEd25519SignVerify(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	key := testKey(1)
	e := signedEnvelope(t, keySigner(clock, key), clock.Now())
	if e.Alg != AlgEd25519 {
		t.Fatalf("Alg = %q, want %q", e.Alg, AlgEd25519)
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := testRegistry().Decode(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The worker's side holds the public key alone.
	if err := pubVerifier(clock, key).Verify(got); err != nil {
		t.Fatalf("Verify with public key: %v", err)
	}
	if err := (&Signer{PublicKey: key.Public().(ed25519.PublicKey)}).Sign(&got); err == nil {
		t.Error("a verify-only signer signed a message")
	}
}

func TestEd25519Refuses(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	key := testKey(1)
	secret := []byte("0123456789abcdef0123456789abcdef")
	cases := []struct {
		name string
		env  func(t *testing.T) Envelope
		want []error
	}{
		{"tampered body", func(t *testing.T) Envelope {
			e := signedEnvelope(t, keySigner(clock, key), clock.Now())
			e.Body = json.RawMessage(`{"reason":"shutdowN"}`)
			return e
		}, []error{ErrBadSignature}},
		{"tampered sender", func(t *testing.T) Envelope {
			e := signedEnvelope(t, keySigner(clock, key), clock.Now())
			e.Sender = "worker"
			return e
		}, []error{ErrBadSignature}},
		{"wrong key", func(t *testing.T) Envelope {
			return signedEnvelope(t, keySigner(clock, testKey(2)), clock.Now())
		}, []error{ErrBadSignature}},
		{"unsigned", func(t *testing.T) Envelope {
			e := signedEnvelope(t, keySigner(clock, key), clock.Now())
			e.Sig, e.Alg = "", ""
			return e
		}, []error{ErrUnsigned}},
		{"downgrade to hmac", func(t *testing.T) Envelope {
			return signedEnvelope(t, &Signer{Secret: secret}, clock.Now())
		}, []error{ErrBadSignature, ErrScheme}},
		{"valid signature relabelled hmac", func(t *testing.T) Envelope {
			e := signedEnvelope(t, keySigner(clock, key), clock.Now())
			e.Alg = AlgHMAC
			return e
		}, []error{ErrBadSignature, ErrScheme}},
		{"no alg", func(t *testing.T) Envelope {
			e := signedEnvelope(t, keySigner(clock, key), clock.Now())
			e.Alg = ""
			return e
		}, []error{ErrBadSignature, ErrScheme}},
		{"stale", func(t *testing.T) Envelope {
			return signedEnvelope(t, keySigner(clock, key), clock.Now().Add(-6*time.Minute))
		}, []error{ErrStale}},
		{"future", func(t *testing.T) Envelope {
			return signedEnvelope(t, keySigner(clock, key), clock.Now().Add(6*time.Minute))
		}, []error{ErrStale}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := pubVerifier(clock, key).Verify(c.env(t))
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("Verify = %v, want %v", err, w)
				}
			}
		})
	}
	t.Run("replay", func(t *testing.T) {
		v := pubVerifier(clock, key)
		e := signedEnvelope(t, keySigner(clock, key), clock.Now())
		if err := v.Verify(e); err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(e); !errors.Is(err, ErrReplay) {
			t.Errorf("second Verify = %v, want ErrReplay", err)
		}
	})
}

// An HMAC verifier refuses an Ed25519 signature too: neither scheme is a
// fallback for the other.
func TestHMACRefusesOtherScheme(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	e := signedEnvelope(t, keySigner(clock, testKey(1)), clock.Now())
	if err := testSigner(clock).Verify(e); !errors.Is(err, ErrScheme) {
		t.Errorf("HMAC Verify of an Ed25519 message = %v, want ErrScheme", err)
	}
	h := signedEnvelope(t, testSigner(clock), clock.Now())
	if h.Alg != AlgHMAC {
		t.Fatalf("Alg = %q, want %q", h.Alg, AlgHMAC)
	}
	h.Alg = ""
	if err := testSigner(clock).Verify(h); !errors.Is(err, ErrScheme) {
		t.Errorf("HMAC Verify without alg = %v, want ErrScheme", err)
	}
}

func TestSignerScheme(t *testing.T) {
	key := testKey(1)
	cases := []struct {
		name string
		s    Signer
		want string
	}{
		{"secret", Signer{Secret: []byte("k")}, AlgHMAC},
		{"private key", Signer{Key: key}, AlgEd25519},
		{"public key", Signer{PublicKey: key.Public().(ed25519.PublicKey)}, AlgEd25519},
		{"both kinds", Signer{Secret: []byte("k"), Key: key}, ""},
		{"short public key", Signer{PublicKey: ed25519.PublicKey{1, 2}}, ""},
		{"none", Signer{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.s.Scheme()
			if got != c.want || (err == nil) != (c.want != "") {
				t.Errorf("Scheme = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestCommandKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := CommandKeyPath(filepath.Join(dir, "runs", "r1", "secret"))
	if _, err := LoadCommandKey(path); err == nil {
		t.Fatal("LoadCommandKey of a missing file succeeded")
	}
	k1, err := LoadOrCreateCommandKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadCommandKey(path)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reload: %v, same key %v", err, k1.Equal(k2))
	}
	pub, err := ParsePublicKey(EncodePublicKey(k1))
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	if strings.Contains(EncodePublicKey(k1), strings.TrimSpace(readFile(t, path))) {
		t.Error("the public encoding contains the private seed")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCommandKey(path); err == nil {
		t.Error("a group-readable command key was accepted")
	}
	for _, bad := range []string{"", "zz", "0102"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) succeeded", bad)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
