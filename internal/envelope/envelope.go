// Package envelope owns the wire format of every Nightshift message: the
// Envelope that wraps a typed body, the per-process Registry that decodes and
// validates bodies, and the Signer that authenticates destructive commands,
// with the run's HMAC secret between daemons, or with the run's Ed25519
// command key for commands to sitters, which verify with the public half
// and so can never make a command themselves.
//
// It does no I/O except LoadOrCreateSecret and LoadOrCreateCommandKey and
// imports no transport, so the same rules apply whether a message came over
// AMQP, an in-memory bus or a test. Decoding and signature checking are separate steps: Registry.Decode
// proves a message is well formed, Signer.Verify proves who sent it and that
// it is fresh; consumers call Verify when Registry.Destructive says so.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Envelope wraps one message body with the metadata every consumer needs to
// route, dedupe and authenticate it. Delivery is at least once, so consumers
// dedupe by ID.
type Envelope struct {
	Type    string          `json:"type"`
	Version int             `json:"version"`
	ID      string          `json:"id"`
	Run     string          `json:"run"`
	Time    time.Time       `json:"time"`
	Sender  string          `json:"sender"`
	Body    json.RawMessage `json:"body"`
	Sig     string          `json:"sig,omitempty"`
	// Alg names the scheme that made Sig (AlgHMAC or AlgEd25519). A
	// verifier accepts only the one scheme it was built for, so a message
	// cannot be downgraded to a scheme the verifier would check
	// differently, and a worker never tries a secret it does not hold.
	Alg string `json:"alg,omitempty"`
}

// NewEnvelope marshals body and wraps it with a fresh random ID. The time is
// passed in, not read, so callers with an injected clock stay deterministic.
func NewEnvelope(typ string, version int, run, sender string, body any, now time.Time) (Envelope, error) {
	switch {
	case typ == "":
		return Envelope{}, errors.New("new envelope: empty type")
	case version < 1:
		return Envelope{}, fmt.Errorf("new envelope %q: version %d, want >= 1", typ, version)
	case run == "":
		return Envelope{}, fmt.Errorf("new envelope %q: empty run", typ)
	case sender == "":
		return Envelope{}, fmt.Errorf("new envelope %q: empty sender", typ)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Envelope{}, fmt.Errorf("new envelope %q: marshal body: %w", typ, err)
	}
	return Envelope{
		Type:    typ,
		Version: version,
		ID:      uuid.NewString(),
		Run:     run,
		Time:    now.UTC(),
		Sender:  sender,
		Body:    raw,
	}, nil
}
