package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/cmdledger"
	"nightshift/internal/envelope"
	"nightshift/internal/service/builtin"
	"nightshift/internal/store/provstore"
	"nightshift/launchplan"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

// corpus is the shared bad-input corpus at the module root.
func corpus(t *testing.T, sub string) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "testdata", "badinput", sub)
}

// wants reads FILE.want: one expected error substring per line.
func wants(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file + ".want")
	if err != nil {
		t.Fatalf("every corpus file needs a .want file of expected error substrings: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s.want is empty: a case that expects nothing cannot fail", file)
	}
	return out
}

func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked: %v", what, r)
		}
	}()
	f()
}

// TestBadInputCorpus feeds every bad plan to launchplan.Load and every bad
// message through the gate every consumer uses (registry decode, then the
// signer for destructive types) and into a provisioner. Each must be
// refused with an error naming where the problem is (file:line and key; type
// and field), without a panic and without changing any state.
func TestBadInputCorpus(t *testing.T) {
	t.Run("plans", testBadPlans)
	t.Run("messages", testBadMessages)
}

func testBadPlans(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(corpus(t, "plans"), "*.toml"))
	if err != nil || len(files) < 10 {
		t.Fatalf("bad-plan corpus: %d files (err %v), want at least 10", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wants(t, f)
			var err error
			noPanic(t, "launchplan.Load", func() {
				_, err = launchplan.Load(f, launchplan.Options{Types: builtin.Names(), Replicas: builtin.Replicas, TypeCheck: builtin.CheckConfig})
			})
			if err == nil {
				t.Fatal("loaded without error")
			}
			msg := err.Error()
			// Every error line must say file:line so an operator can find it.
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, f+":") || !hasLineNumber(strings.TrimPrefix(line, f+":")) {
					t.Errorf("error line lacks %s:LINE: %q", filepath.Base(f), line)
				}
			}
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
	t.Run("oversized", func(t *testing.T) {
		// Generated here rather than stored: 4 MiB of testdata helps nobody.
		f := filepath.Join(t.TempDir(), "oversized.toml")
		big := "name = \"big\"\n[[level]]\n[level.service.web]\nboot = [\"echo\", \"" +
			strings.Repeat("x", launchplan.MaxFileSize) + "\"]\n"
		if err := os.WriteFile(f, []byte(big), 0o644); err != nil {
			t.Fatal(err)
		}
		var err error
		noPanic(t, "launchplan.Load", func() {
			_, err = launchplan.Load(f, launchplan.Options{Types: builtin.Names(), Replicas: builtin.Replicas, TypeCheck: builtin.CheckConfig})
		})
		if err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("oversized plan: err %v, want it refused naming the file and its size", err)
		}
	})
}

func hasLineNumber(s string) bool {
	n, _, ok := strings.Cut(s, ":")
	if !ok || n == "" {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// gate is what every consumer does with a delivery before acting on it:
// decode, then for a signed command authenticate it and consult the
// command ledger in dir. replayed says the id was handled before (and
// would be answered, not handled).
func gate(reg *envelope.Registry, s *envelope.Signer, dir string, data []byte) (env envelope.Envelope, body any, replayed bool, err error) {
	log := slog.New(slog.DiscardHandler)
	env, body, err = amqpbus.DecodeOrReject(reg, log, amqpbus.Delivery{Body: data})
	if err != nil || !reg.Destructive(env.Type) {
		return env, body, false, err
	}
	g := &cmdledger.Guard{Ledger: &cmdledger.Dir{Path: dir}, Signer: s}
	_, replayed, err = g.Run(context.Background(), env, func(context.Context) ([]byte, bool) { return []byte("{}"), true })
	if err != nil {
		return env, nil, false, err
	}
	return env, body, replayed, nil
}

func testBadMessages(t *testing.T) {
	dir := corpus(t, "messages")
	secret, err := os.ReadFile(filepath.Join(dir, "test-secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret = bytes.TrimSpace(secret)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) < 20 {
		t.Fatalf("bad-message corpus: %d files (err %v), want at least 20", len(files), err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A real provisioner behind the gate: anything that got through would
	// be handled, and the state check below would see it.
	st, err := provstore.Open(ctx, filepath.Join(t.TempDir(), "provisioner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	prov, err := provisioner.New(provisioner.Config{Run: "badinput", Driver: provisionertest.NewDriver("badinput"),
		Store: st, ReconcileEvery: -1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	before, err := prov.Describe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	regs := map[string]*envelope.Registry{"provisioner": provisioner.Messages(), "controller": ctlbus.Messages()}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wants(t, f)
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			targets := []string{"provisioner", "controller"}
			switch {
			case strings.HasPrefix(filepath.Base(f), "prov-"):
				targets = []string{"provisioner"}
			case strings.HasPrefix(filepath.Base(f), "ctl-"):
				targets = []string{"controller"}
			}
			for _, target := range targets {
				signer := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(64)}
				var gerr error
				var body any
				noPanic(t, target+" gate", func() { _, body, _, gerr = gate(regs[target], signer, t.TempDir(), data) })
				if gerr == nil {
					t.Errorf("%s accepted the message (body %T)", target, body)
					if target == "provisioner" {
						prov.Handle(ctx, body)
					}
					continue
				}
				if !errors.Is(gerr, amqpbus.ErrReject) {
					t.Errorf("%s: error does not wrap amqpbus.ErrReject (it would be requeued, not dead-lettered): %v", target, gerr)
				}
				for _, w := range want {
					if !strings.Contains(gerr.Error(), w) {
						t.Errorf("%s: error lacks %q: %v", target, w, gerr)
					}
				}
			}
			if strings.Contains(f, "-replay-") {
				checkReplay(t, regs[targets[0]], secret, data)
			}
		})
	}

	t.Run("oversized", func(t *testing.T) {
		data := []byte(`{"type":"provisioner.describe","version":1,"pad":"` + strings.Repeat("x", amqpbus.MaxMessageSize) + `"}`)
		for name, reg := range regs {
			var gerr error
			noPanic(t, name+" gate", func() {
				_, _, _, gerr = gate(reg, &envelope.Signer{Secret: secret}, t.TempDir(), data)
			})
			if gerr == nil || !strings.Contains(gerr.Error(), "oversized") {
				t.Errorf("%s: oversized message: %v, want refused as oversized", name, gerr)
			}
		}
	})

	// The gate must let a genuine command through, or the refusals above
	// prove nothing.
	t.Run("control-genuine-command-passes", func(t *testing.T) {
		signer := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(8)}
		env, err := envelope.NewEnvelope(provisioner.TypeTerminateAll, 1, "badinput", "mgmt", provisioner.TerminateAllBody{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := signer.Sign(&env); err != nil {
			t.Fatal(err)
		}
		data, err := jsonMarshal(env)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if _, _, replayed, err := gate(regs["provisioner"], signer, dir, data); err != nil || replayed {
			t.Fatalf("a freshly signed terminate_all was refused: %v (replayed %v)", err, replayed)
		}
		if _, _, replayed, err := gate(regs["provisioner"], signer, dir, data); err != nil || !replayed {
			t.Fatalf("the same terminate_all sent twice: %v (replayed %v), want it answered from the ledger", err, replayed)
		}
	})

	after, err := prov.Describe(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if after.Disabled != before.Disabled || after.Live != before.Live || len(after.Instances) != len(before.Instances) {
		t.Errorf("provisioner state changed: before %+v, after %+v", before, after)
	}
}

// checkReplay proves a stored old command is refused for its age and not
// for a broken signature: verified at its own time it passes once, and the
// same id again is a replay.
func checkReplay(t *testing.T, reg *envelope.Registry, secret, data []byte) {
	t.Helper()
	env, _, err := reg.Decode(data, amqpbus.MaxMessageSize)
	if err != nil {
		t.Fatalf("replay fixture does not decode: %v", err)
	}
	then := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(8), Now: func() time.Time { return env.Time }}
	if err := then.Verify(env); err != nil {
		t.Fatalf("replay fixture's signature is not genuine (regenerate it with testdata/badinput/messages/test-secret): %v", err)
	}
	if err := then.Verify(env); !errors.Is(err, envelope.ErrReplay) {
		t.Errorf("second delivery of %s id %s: %v, want ErrReplay", env.Type, env.ID, err)
	}
	now := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(8)}
	if err := now.Verify(env); !errors.Is(err, envelope.ErrStale) {
		t.Errorf("old %s replayed today: %v, want ErrStale", env.Type, err)
	}
}

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	return b, nil
}

// FuzzMessageGate throws arbitrary bytes at both daemons' gates, seeded
// with the bad-message corpus. Whatever the input, the gate must not panic
// and must never let a destructive command through: the fuzzer cannot
// know the secret, so anything destructive it builds is unsigned or forged.
func FuzzMessageGate(f *testing.F) {
	root, err := ModuleRoot()
	if err != nil {
		f.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "testdata", "badinput", "messages", "*.json"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	secret := []byte("fuzz-secret-the-fuzzer-never-sees")
	regs := []*envelope.Registry{provisioner.Messages(), ctlbus.Messages()}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, reg := range regs {
			env, _, _, err := gate(reg, &envelope.Signer{Secret: secret}, t.TempDir(), data)
			if err == nil && reg.Destructive(env.Type) {
				t.Fatalf("destructive %q accepted without the secret", env.Type)
			}
			if err != nil && !errors.Is(err, amqpbus.ErrReject) {
				t.Fatalf("refusal does not wrap ErrReject: %v", err)
			}
		}
	})
}
