package envelope

import (
	"bytes"
	"container/list"
	"crypto/ed25519"
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
	// ErrScheme (always with ErrBadSignature) marks a message signed, or
	// claiming to be signed, with a scheme the verifier does not accept.
	ErrScheme = errors.New("signature scheme not accepted")
)

// The signature schemes an Envelope names in Alg.
const (
	// AlgHMAC is HMAC-SHA256 with the run's secret: commands between the
	// run's daemons, all of which hold the secret.
	AlgHMAC = "hmac-sha256"
	// AlgEd25519 is Ed25519 with the run's command key: commands to
	// sitters, which hold only the public key, so a worker can check a
	// command but not make one.
	AlgEd25519 = "ed25519"
)

// Signer signs and verifies destructive commands. It has exactly one
// scheme: HMAC when Secret is set, Ed25519 when Key (to sign and verify) or
// PublicKey (to verify only) is set; setting both kinds is an error, so no
// verifier ever falls back from one scheme to the other. A signature alone
// would let anyone who captured a "terminate_all" replay it later, so
// Verify also bounds the message time and remembers recent IDs.
type Signer struct {
	Secret    []byte
	Key       ed25519.PrivateKey // signs (and verifies) with AlgEd25519
	PublicKey ed25519.PublicKey  // verifies AlgEd25519; ignored when Key is set
	Now       func() time.Time   // nil means time.Now
	MaxSkew   time.Duration      // 0 means DefaultMaxSkew
	Seen      *ReplayCache       // required by Verify; nil refuses everything
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

// Scheme returns the one scheme s signs or verifies with (AlgHMAC or
// AlgEd25519), or an error when it has no key, or keys of both kinds.
func (s *Signer) Scheme() (string, error) {
	hasKey := len(s.Key) > 0 || len(s.PublicKey) > 0
	switch {
	case len(s.Secret) > 0 && hasKey:
		return "", errors.New("signer has both a secret and an Ed25519 key")
	case len(s.Secret) > 0:
		return AlgHMAC, nil
	case len(s.Key) > 0:
		if len(s.Key) != ed25519.PrivateKeySize {
			return "", fmt.Errorf("signer's Ed25519 private key is %d bytes, want %d", len(s.Key), ed25519.PrivateKeySize)
		}
		return AlgEd25519, nil
	case len(s.PublicKey) > 0:
		if len(s.PublicKey) != ed25519.PublicKeySize {
			return "", fmt.Errorf("signer's Ed25519 public key is %d bytes, want %d", len(s.PublicKey), ed25519.PublicKeySize)
		}
		return AlgEd25519, nil
	}
	return "", errors.New("signer has empty secret and no Ed25519 key")
}

func (s *Signer) publicKey() ed25519.PublicKey {
	if len(s.Key) > 0 {
		return s.Key.Public().(ed25519.PublicKey)
	}
	return s.PublicKey
}

// Sign sets e.Sig and e.Alg. The envelope's Time is signed as is, so set it
// (NewEnvelope does) before signing. A verify-only signer (PublicKey) cannot
// sign.
func (s *Signer) Sign(e *Envelope) error {
	alg, err := s.Scheme()
	if err != nil {
		return fmt.Errorf("sign message %q: %w", e.Type, err)
	}
	if alg == AlgEd25519 && len(s.Key) == 0 {
		return fmt.Errorf("sign message %q: signer holds only a public key", e.Type)
	}
	e.Alg = alg
	canon, err := canonical(*e, alg)
	if err != nil {
		return fmt.Errorf("sign message %q: %w", e.Type, err)
	}
	if alg == AlgEd25519 {
		e.Sig = hex.EncodeToString(ed25519.Sign(s.Key, canon))
		return nil
	}
	e.Sig = hex.EncodeToString(s.mac(canon))
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

// Authentic reports whether e carries a valid signature made with s's key
// in s's scheme, whatever its time. Errors wrap ErrUnsigned or
// ErrBadSignature (with ErrScheme when e names another scheme).
func (s *Signer) Authentic(e Envelope) error {
	what := fmt.Sprintf("verify message %q id %q", e.Type, e.ID)
	alg, err := s.Scheme()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if e.Sig == "" {
		return fmt.Errorf("%s: %w", what, ErrUnsigned)
	}
	if e.Alg != alg {
		return fmt.Errorf("%s: %w: %w: signed with %q, want %q", what, ErrBadSignature, ErrScheme, e.Alg, alg)
	}
	got, err := hex.DecodeString(e.Sig)
	if err != nil {
		return fmt.Errorf("%s: %w: not hex", what, ErrBadSignature)
	}
	canon, err := canonical(e, alg)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", what, ErrBadSignature, err)
	}
	ok := false
	if alg == AlgEd25519 {
		ok = ed25519.Verify(s.publicKey(), canon, got)
	} else {
		ok = hmac.Equal(got, s.mac(canon))
	}
	if !ok {
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

func (s *Signer) mac(canon []byte) []byte {
	m := hmac.New(sha256.New, s.Secret)
	m.Write(canon)
	return m.Sum(nil)
}

// canonical encodes the signed fields length-prefixed, so no two different
// envelopes share an encoding. The body is compacted because encoding/json
// compacts json.RawMessage on marshal: whitespace must not break signatures.
// Each scheme has its own domain tag, so bytes signed in one are never
// valid input to the other; the HMAC tag is the original one, so HMAC
// signatures are unchanged.
func canonical(e Envelope, alg string) ([]byte, error) {
	tag := "nightshift-envelope-v1"
	if alg == AlgEd25519 {
		tag = "nightshift-envelope-ed25519-v1"
	}
	var body bytes.Buffer
	if len(e.Body) > 0 {
		if err := json.Compact(&body, e.Body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	fields := [][]byte{
		[]byte(tag),
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
