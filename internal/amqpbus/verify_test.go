package amqpbus

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"nightshift/internal/envelope"
)

type verifyBody struct{}

func (verifyBody) Validate() error { return nil }

// TestVerifyOrRejectRedelivery: a command the broker redelivers after this
// process verified it (a retry, or a lost ack) is handled again, while a
// re-published copy, a bad signature or a stale time stay refused however
// they arrive.
func TestVerifyOrRejectRedelivery(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	reg := &envelope.Registry{}
	reg.Register("test.destroy", 1, func() envelope.Validator { return &verifyBody{} }, true)
	reg.Register("test.look", 1, func() envelope.Validator { return &verifyBody{} }, false)
	signer := func() *envelope.Signer {
		return &envelope.Signer{Secret: []byte("s3cret-s3cret"), Now: func() time.Time { return now }, Seen: envelope.NewReplayCache(100)}
	}
	signed := func(t *testing.T, s *envelope.Signer, typ string, at time.Time) envelope.Envelope {
		env, err := envelope.NewEnvelope(typ, 1, "run", "tester", verifyBody{}, at)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Sign(&env); err != nil {
			t.Fatal(err)
		}
		return env
	}
	log := slog.New(slog.DiscardHandler)
	// verifiedOnce is a command this process has already verified once.
	verifiedOnce := func(t *testing.T, s *envelope.Signer) envelope.Envelope {
		env := signed(t, s, "test.destroy", now)
		if err := VerifyOrReject(reg, s, log, env, Delivery{}); err != nil {
			t.Fatal(err)
		}
		return env
	}
	cases := []struct {
		name        string
		prepare     func(t *testing.T, s *envelope.Signer) envelope.Envelope
		redelivered bool
		wantErr     error // nil: accepted
	}{
		{"first delivery", func(t *testing.T, s *envelope.Signer) envelope.Envelope {
			return signed(t, s, "test.destroy", now)
		}, false, nil},
		{"re-published copy", verifiedOnce, false, envelope.ErrReplay},
		{"redelivered", verifiedOnce, true, nil},
		{"redelivered, bad signature", func(t *testing.T, s *envelope.Signer) envelope.Envelope {
			env := signed(t, s, "test.destroy", now)
			env.Sender = "someone-else"
			return env
		}, true, envelope.ErrBadSignature},
		{"redelivered, stale", func(t *testing.T, s *envelope.Signer) envelope.Envelope {
			return signed(t, s, "test.destroy", now.Add(-time.Hour))
		}, true, envelope.ErrStale},
		{"redelivered, unsigned", func(t *testing.T, s *envelope.Signer) envelope.Envelope {
			env := signed(t, s, "test.destroy", now)
			env.Sig = ""
			return env
		}, true, envelope.ErrUnsigned},
		{"not destructive, unsigned", func(t *testing.T, s *envelope.Signer) envelope.Envelope {
			env, err := envelope.NewEnvelope("test.look", 1, "run", "tester", verifyBody{}, now)
			if err != nil {
				t.Fatal(err)
			}
			return env
		}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := signer()
			env := c.prepare(t, s)
			err := VerifyOrReject(reg, s, log, env, Delivery{Redelivered: c.redelivered})
			switch {
			case c.wantErr == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != nil && (!errors.Is(err, c.wantErr) || !errors.Is(err, ErrReject)):
				t.Fatalf("err = %v, want ErrReject wrapping %v", err, c.wantErr)
			}
		})
	}
}

// TestSignedCommandRetriedAfterHandlerError: a signed destructive command
// whose handler asks for a retry (a passing store failure) is verified
// again on its redelivery and handled, not dead-lettered as a replay.
func TestSignedCommandRetriedAfterHandlerError(t *testing.T) {
	f := newFixture(t, "worker")
	b := f.dial(f.config(""))
	reg := &envelope.Registry{}
	reg.Register("destroy", 1, func() envelope.Validator { return &verifyBody{} }, true)
	secret := []byte("0123456789abcdef0123456789abcdef")
	verifier := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(100)}
	type attempt struct {
		redelivered bool
		err         error
	}
	got := make(chan attempt, 4)
	n := 0
	f.consume(b, "worker", func(ctx context.Context, d Delivery) error {
		env, _, err := DecodeOrReject(reg, f.log, d)
		if err == nil {
			err = VerifyOrReject(reg, verifier, f.log, env, d)
		}
		got <- attempt{d.Redelivered, err}
		if err != nil {
			return err
		}
		if n++; n == 1 {
			return errors.New("store is busy, try again")
		}
		return nil
	})
	env := f.envelope("destroy", verifyBody{})
	if err := (&envelope.Signer{Secret: secret}).Sign(&env); err != nil {
		t.Fatal(err)
	}
	if err := b.SendCommand(context.Background(), "worker", env); err != nil {
		t.Fatal(err)
	}
	first, second := receive(t, got, "first attempt"), receive(t, got, "redelivery")
	if first.err != nil || first.redelivered {
		t.Fatalf("first attempt: %+v, want verified, not redelivered", first)
	}
	if second.err != nil || !second.redelivered {
		t.Fatalf("redelivery: %+v, want verified again", second)
	}
}
