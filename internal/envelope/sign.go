package envelope

import (
	"bytes"
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxSkew is how far a signed message's time may be from the
// verifier's clock when Signer.MaxSkew is zero.
const DefaultMaxSkew = 5 * time.Minute

// Errors returned (wrapped) by Signer.Verify.
var (
	ErrUnsigned     = errors.New("missing signature")
	ErrBadSignature = errors.New("bad signature")
	ErrStale        = errors.New("time outside allowed skew")
	ErrReplay       = errors.New("message id already seen")
)

// Signer signs and verifies destructive commands with the run's secret. A
// signature alone would let anyone who captured a "terminate_all" replay it
// later, so Verify also bounds the message time and remembers recent IDs.
type Signer struct {
	Secret  []byte
	Now     func() time.Time // nil means time.Now
	MaxSkew time.Duration    // 0 means DefaultMaxSkew
	Seen    *ReplayCache     // required by Verify; nil refuses everything
}

func (s *Signer) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Signer) maxSkew() time.Duration {
	if s.MaxSkew <= 0 {
		return DefaultMaxSkew
	}
	return s.MaxSkew
}

// Sign sets e.Sig. The envelope's Time is signed as is, so set it (NewEnvelope
// does) before signing.
func (s *Signer) Sign(e *Envelope) error {
	if len(s.Secret) == 0 {
		return fmt.Errorf("sign message %q: empty secret", e.Type)
	}
	mac, err := s.mac(*e)
	if err != nil {
		return fmt.Errorf("sign message %q: %w", e.Type, err)
	}
	e.Sig = hex.EncodeToString(mac)
	return nil
}

// Verify refuses e unless it carries a valid signature, its time is within
// ±MaxSkew of now, and its ID has not been verified before within the replay
// window. Errors wrap ErrUnsigned, ErrBadSignature, ErrStale or ErrReplay.
// Consumers that record command ids durably (internal/cmdledger) call
// Authentic and Fresh instead and let their ledger decide what a repeat is.
func (s *Signer) Verify(e Envelope) error {
	what := fmt.Sprintf("verify message %q id %q", e.Type, e.ID)
	if s.Seen == nil {
		return fmt.Errorf("%s: signer has no replay cache", what)
	}
	if err := s.Authentic(e); err != nil {
		return err
	}
	if err := s.Fresh(e); err != nil {
		return err
	}
	// A message within ±skew of its own time can be replayed for at most
	// 2*skew after we first saw it; remember it that long.
	if s.Seen.CheckAndAdd(e.ID, s.now(), 2*s.maxSkew()) {
		return fmt.Errorf("%s: %w", what, ErrReplay)
	}
	return nil
}

// Authentic reports whether e carries a valid signature made with the
// secret, whatever its time. Errors wrap ErrUnsigned or ErrBadSignature.
func (s *Signer) Authentic(e Envelope) error {
	what := fmt.Sprintf("verify message %q id %q", e.Type, e.ID)
	if len(s.Secret) == 0 {
		return fmt.Errorf("%s: signer has empty secret", what)
	}
	if e.Sig == "" {
		return fmt.Errorf("%s: %w", what, ErrUnsigned)
	}
	got, err := hex.DecodeString(e.Sig)
	if err != nil {
		return fmt.Errorf("%s: %w: not hex", what, ErrBadSignature)
	}
	want, err := s.mac(e)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", what, ErrBadSignature, err)
	}
	if !hmac.Equal(got, want) {
		return fmt.Errorf("%s: %w", what, ErrBadSignature)
	}
	return nil
}

// Fresh reports whether e's time is within ±MaxSkew of now; the error
// wraps ErrStale. It says nothing about the signature: call Authentic
// first, or the time is whatever a forger chose.
func (s *Signer) Fresh(e Envelope) error {
	now, skew := s.now(), s.maxSkew()
	if d := now.Sub(e.Time); d > skew || d < -skew {
		return fmt.Errorf("verify message %q id %q: %w: sent %s, now %s, max skew %s", e.Type, e.ID, ErrStale,
			e.Time.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	return nil
}

func (s *Signer) mac(e Envelope) ([]byte, error) {
	canon, err := canonical(e)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, s.Secret)
	m.Write(canon)
	return m.Sum(nil), nil
}

// canonical encodes the signed fields length-prefixed, so no two different
// envelopes share an encoding. The body is compacted because encoding/json
// compacts json.RawMessage on marshal: whitespace must not break signatures.
func canonical(e Envelope) ([]byte, error) {
	var body bytes.Buffer
	if len(e.Body) > 0 {
		if err := json.Compact(&body, e.Body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	fields := [][]byte{
		[]byte("nightshift-envelope-v1"),
		[]byte(e.Type),
		[]byte(strconv.Itoa(e.Version)),
		[]byte(e.ID),
		[]byte(e.Run),
		[]byte(e.Time.UTC().Format(time.RFC3339Nano)),
		[]byte(e.Sender),
		body.Bytes(),
	}
	var out []byte
	for _, f := range fields {
		out = binary.AppendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	return out, nil
}

// ReplayCache remembers recently verified message IDs. It is bounded both in
// time (entries expire) and in size (the oldest entry is evicted when full),
// so a flood of messages cannot grow it without limit. Size it above the
// expected destructive-command rate times 2*MaxSkew; an ID evicted early
// could be replayed within its time window. It is hand-written rather than
// taken from an LRU library because expiry must follow the injected clock.
type ReplayCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *replayEntry, oldest first
	byID  map[string]*list.Element
}

type replayEntry struct {
	id      string
	expires time.Time
}

// NewReplayCache returns a cache holding at most max IDs (min 1).
func NewReplayCache(max int) *ReplayCache {
	if max < 1 {
		max = 1
	}
	return &ReplayCache{max: max, order: list.New(), byID: make(map[string]*list.Element)}
}

// CheckAndAdd reports whether id is already remembered and unexpired at now;
// if not, it remembers id until now+ttl.
func (c *ReplayCache) CheckAndAdd(id string, now time.Time, ttl time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Entries share one ttl in practice, so insertion order is expiry order.
	for front := c.order.Front(); front != nil; front = c.order.Front() {
		ent := front.Value.(*replayEntry)
		if now.Before(ent.expires) {
			break
		}
		c.order.Remove(front)
		delete(c.byID, ent.id)
	}
	if el, ok := c.byID[id]; ok {
		if now.Before(el.Value.(*replayEntry).expires) {
			return true
		}
		c.order.Remove(el)
		delete(c.byID, id)
	}
	if c.order.Len() >= c.max {
		oldest := c.order.Front()
		c.order.Remove(oldest)
		delete(c.byID, oldest.Value.(*replayEntry).id)
	}
	c.byID[id] = c.order.PushBack(&replayEntry{id: id, expires: now.Add(ttl)})
	return false
}

// Len returns how many IDs are remembered.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
