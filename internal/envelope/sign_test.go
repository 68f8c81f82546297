package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func testSigner(clock clockwork.Clock) *Signer {
	return &Signer{Secret: []byte("0123456789abcdef0123456789abcdef"), Now: clock.Now, Seen: NewReplayCache(100)}
}

func signedEnvelope(t *testing.T, s *Signer, now time.Time) Envelope {
	t.Helper()
	e, err := NewEnvelope("terminate_all", 1, "r1", "mgmt@host", terminateAllBody{Reason: "shutdown"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sign(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSignVerify(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	s := testSigner(clock)
	e := signedEnvelope(t, s, clock.Now())
	// Through the wire: marshal, decode, verify.
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := testRegistry().Decode(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(got); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyRefusesTampering(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	tamper := []struct {
		name string
		f    func(*Envelope)
	}{
		{"type", func(e *Envelope) { e.Type = "launch" }},
		{"version", func(e *Envelope) { e.Version = 2 }},
		{"id", func(e *Envelope) { e.ID = "other" }},
		{"run", func(e *Envelope) { e.Run = "r2" }},
		{"time", func(e *Envelope) { e.Time = e.Time.Add(time.Nanosecond) }},
		{"sender", func(e *Envelope) { e.Sender = "evil" }},
		{"body", func(e *Envelope) { e.Body = json.RawMessage(`{"reason":"shutdowN"}`) }},
		{"sig", func(e *Envelope) { e.Sig = "00" + e.Sig[2:] }},
		{"sig not hex", func(e *Envelope) { e.Sig = "zz" }},
		{"wrong key", func(e *Envelope) {
			other := &Signer{Secret: []byte("another secret")}
			_ = other.Sign(e)
		}},
	}
	for _, c := range tamper {
		t.Run(c.name, func(t *testing.T) {
			s := testSigner(clock)
			e := signedEnvelope(t, s, clock.Now())
			c.f(&e)
			if err := s.Verify(e); !errors.Is(err, ErrBadSignature) {
				t.Errorf("Verify after tampering %s = %v, want ErrBadSignature", c.name, err)
			}
		})
	}
}

func TestVerifyIgnoresBodyWhitespace(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	s := testSigner(clock)
	e := signedEnvelope(t, s, clock.Now())
	e.Body = json.RawMessage("{ \"reason\" :\n \"shutdown\" }")
	if err := s.Verify(e); err != nil {
		t.Errorf("Verify after reformatting body: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	cases := []struct {
		name    string
		signer  func() *Signer
		env     func(s *Signer) Envelope
		wantErr error
	}{
		{"unsigned", func() *Signer { return testSigner(clock) }, func(s *Signer) Envelope {
			e := signedEnvelope(t, s, clock.Now())
			e.Sig = ""
			return e
		}, ErrUnsigned},
		{"old", func() *Signer { return testSigner(clock) }, func(s *Signer) Envelope {
			return signedEnvelope(t, s, clock.Now().Add(-6*time.Minute))
		}, ErrStale},
		{"future", func() *Signer { return testSigner(clock) }, func(s *Signer) Envelope {
			return signedEnvelope(t, s, clock.Now().Add(6*time.Minute))
		}, ErrStale},
		{"custom skew", func() *Signer {
			s := testSigner(clock)
			s.MaxSkew = time.Second
			return s
		}, func(s *Signer) Envelope { return signedEnvelope(t, s, clock.Now().Add(-2*time.Second)) }, ErrStale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.signer()
			if err := s.Verify(c.env(s)); !errors.Is(err, c.wantErr) {
				t.Errorf("Verify = %v, want %v", err, c.wantErr)
			}
		})
	}
	t.Run("no replay cache", func(t *testing.T) {
		s := testSigner(clock)
		e := signedEnvelope(t, s, clock.Now())
		s.Seen = nil
		if err := s.Verify(e); err == nil {
			t.Error("Verify without replay cache succeeded, want refusal")
		}
	})
	t.Run("empty secret", func(t *testing.T) {
		e := Envelope{Type: "x"}
		if err := (&Signer{}).Sign(&e); err == nil {
			t.Error("Sign with empty secret succeeded")
		}
	})
}

func TestVerifyRefusesReplay(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	s := testSigner(clock)
	e := signedEnvelope(t, s, clock.Now())
	if err := s.Verify(e); err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Minute)
	if err := s.Verify(e); !errors.Is(err, ErrReplay) {
		t.Errorf("second Verify = %v, want ErrReplay", err)
	}
	// Once outside the skew window it is stale, not a replay: either way refused.
	clock.Advance(2 * time.Minute)
	if err := s.Verify(e); !errors.Is(err, ErrStale) {
		t.Errorf("Verify after window = %v, want ErrStale", err)
	}
	// A forged copy must not poison the cache for the real message.
	e2 := signedEnvelope(t, s, clock.Now())
	forged := e2
	forged.Sig = "00"
	if err := s.Verify(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged: %v", err)
	}
	if err := s.Verify(e2); err != nil {
		t.Errorf("genuine message after forged copy: %v", err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := NewReplayCache(3)
	now := t0
	for i := range 10 {
		if c.CheckAndAdd(fmt.Sprint(i), now, time.Hour) {
			t.Fatalf("id %d reported seen on first add", i)
		}
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d, want 3", c.Len())
	}
	if !c.CheckAndAdd("9", now, time.Hour) {
		t.Error("newest id forgotten")
	}
	if c.CheckAndAdd("0", now, time.Hour) {
		t.Error("oldest id should have been evicted")
	}
	// Expiry frees entries.
	later := now.Add(2 * time.Hour)
	if c.CheckAndAdd("9", later, time.Hour) {
		t.Error("expired id reported seen")
	}
	if c.Len() != 1 {
		t.Errorf("Len after expiry = %d, want 1", c.Len())
	}
}
