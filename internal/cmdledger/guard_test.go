package cmdledger

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

type body struct {
	N int `json:"n"`
}

func (body) Validate() error { return nil }

func signed(t *testing.T, at time.Time, n int) envelope.Envelope {
	t.Helper()
	return signedFor(t, "run", at, n)
}

func signedFor(t *testing.T, run string, at time.Time, n int) envelope.Envelope {
	t.Helper()
	env, err := envelope.NewEnvelope("test.reconfigure", 1, run, "mgmt", body{N: n}, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&envelope.Signer{Secret: secret}).Sign(&env); err != nil {
		t.Fatal(err)
	}
	return env
}

type counter struct{ n int }

func (c *counter) handle(reply string, done bool) func(context.Context) ([]byte, bool) {
	return func(context.Context) ([]byte, bool) { c.n++; return []byte(reply), done }
}

// TestGuard: every way a command can arrive, and whether it runs.
func TestGuard(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	newGuard := func(t *testing.T) *Guard {
		return &Guard{Ledger: &Dir{Path: filepath.Join(t.TempDir(), "c")}, Signer: &envelope.Signer{Secret: secret, Now: clock.Now}, Log: slog.New(slog.DiscardHandler)}
	}
	ctx := context.Background()

	t.Run("refused before anything runs", func(t *testing.T) {
		cases := []struct {
			name string
			env  func() envelope.Envelope
			want error
		}{
			{"unsigned", func() envelope.Envelope { e := signed(t, t0, 1); e.Sig = ""; return e }, envelope.ErrUnsigned},
			{"forged", func() envelope.Envelope { e := signed(t, t0, 1); e.Body = []byte(`{"n":5}`); return e }, envelope.ErrBadSignature},
			{"wrong key", func() envelope.Envelope {
				e := signed(t, t0, 1)
				_ = (&envelope.Signer{Secret: []byte("another")}).Sign(&e)
				return e
			}, envelope.ErrBadSignature},
			{"stale", func() envelope.Envelope { return signed(t, t0.Add(-time.Hour), 1) }, envelope.ErrStale},
			{"from the future", func() envelope.Envelope { return signed(t, t0.Add(time.Hour), 1) }, envelope.ErrStale},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				g, h := newGuard(t), &counter{}
				env := c.env()
				_, _, err := g.Run(ctx, env, h.handle("{}", true))
				if !errors.Is(err, amqpbus.ErrReject) || !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want ErrReject wrapping %v", err, c.want)
				}
				if h.n != 0 {
					t.Fatal("handler ran")
				}
				if _, err := g.Ledger.Lookup(ctx, env.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("a refused command was recorded: %v", err)
				}
			})
		}
	})

	t.Run("a repeat is answered from the ledger", func(t *testing.T) {
		g, h := newGuard(t), &counter{}
		env := signed(t, t0, 5)
		rep, replayed, err := g.Run(ctx, env, h.handle(`{"v":1}`, true))
		if err != nil || replayed || string(rep) != `{"v":1}` || h.n != 1 {
			t.Fatalf("first: %s %v %v, ran %d", rep, replayed, err, h.n)
		}
		// Later, when the command is past its skew, and after a restart
		// (a new Guard on the same ledger): answered, never run again.
		clock.Advance(time.Hour)
		defer clock.Advance(-time.Hour)
		g2 := &Guard{Ledger: g.Ledger, Signer: &envelope.Signer{Secret: secret, Now: clock.Now}}
		rep, replayed, err = g2.Run(ctx, env, h.handle(`{"v":2}`, true))
		if err != nil || !replayed || string(rep) != `{"v":1}` || h.n != 1 {
			t.Fatalf("repeat: %s %v %v, ran %d; want the recorded reply, not run", rep, replayed, err, h.n)
		}
	})

	t.Run("an unfinished command runs again", func(t *testing.T) {
		g, h := newGuard(t), &counter{}
		env := signed(t, t0, 1)
		if _, replayed, err := g.Run(ctx, env, h.handle(`{"error":"busy"}`, false)); err != nil || replayed {
			t.Fatal(replayed, err)
		}
		rep, replayed, err := g.Run(ctx, env, h.handle(`{"v":2}`, true))
		if err != nil || replayed || string(rep) != `{"v":2}` || h.n != 2 {
			t.Fatalf("retry: %s %v %v, ran %d", rep, replayed, err, h.n)
		}
		if e, _ := g.Ledger.Lookup(ctx, env.ID); e.Attempts != 2 || e.State != StateDone {
			t.Errorf("entry %+v, want done after 2 attempts", e)
		}
	})

	t.Run("an id reused by another command is refused", func(t *testing.T) {
		g, h := newGuard(t), &counter{}
		first := signed(t, t0, 1)
		if _, _, err := g.Run(ctx, first, h.handle("{}", true)); err != nil {
			t.Fatal(err)
		}
		other := signed(t, t0, 9)
		other.ID = first.ID
		if err := (&envelope.Signer{Secret: secret}).Sign(&other); err != nil {
			t.Fatal(err)
		}
		if _, _, err := g.Run(ctx, other, h.handle("{}", true)); !errors.Is(err, amqpbus.ErrReject) || !errors.Is(err, envelope.ErrReplay) {
			t.Fatalf("err = %v, want ErrReject wrapping ErrReplay", err)
		}
		if h.n != 1 {
			t.Fatalf("ran %d times", h.n)
		}
	})

	t.Run("typed", func(t *testing.T) {
		g := newGuard(t)
		env := signed(t, t0, 1)
		type reply struct{ V int }
		n := 0
		for range 3 {
			r, _, err := Do(ctx, g, env, func(context.Context) (reply, bool) { n++; return reply{V: 7}, true })
			if err != nil || r.V != 7 {
				t.Fatalf("Do = %+v, %v", r, err)
			}
		}
		if n != 1 {
			t.Errorf("ran %d times, want 1", n)
		}
	})
}
