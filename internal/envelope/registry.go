package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Validator is implemented by every registered body type. Validate reports
// the first problem as a *FieldError (see Require and Check) so the error
// names the field.
type Validator interface {
	Validate() error
}

type key struct {
	typ     string
	version int
}

type entry struct {
	newBody     func() Validator
	destructive bool
}

// Registry maps (type, version) to a body constructor. Each process builds
// its own at start-up; there is no package-level registry, so tests and
// components cannot see each other's types. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	entries map[key]entry
	types   map[string]bool // every registered type, any version
}

// Register adds a body type. newBody must return a fresh pointer each call
// (Decode unmarshals into it). destructive marks types that must be signed
// (see Signer). A later registration of the same (type, version) replaces the
// earlier one.
func (r *Registry) Register(typ string, version int, newBody func() Validator, destructive bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = make(map[key]entry)
		r.types = make(map[string]bool)
	}
	r.entries[key{typ, version}] = entry{newBody: newBody, destructive: destructive}
	r.types[typ] = true
}

// Destructive reports whether any registered version of typ requires a
// signature. Unknown types report false; Decode refuses them anyway.
func (r *Registry) Destructive(typ string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for k, e := range r.entries {
		if k.typ == typ && e.destructive {
			return true
		}
	}
	return false
}

func (r *Registry) lookup(typ string, version int) (entry, bool, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[key{typ, version}]
	return e, ok, r.types[typ]
}

// DecodeError says why a message was refused, naming the type and field so a
// dead-lettered message can be traced to its sender's bug.
type DecodeError struct {
	Type    string // "" when the envelope itself could not be read
	Version int    // 0 when unknown
	Field   string // "" when the problem is not about one field
	Reason  string
	Err     error // underlying error, if any
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("message")
	if e.Type != "" {
		fmt.Fprintf(&b, " %q", e.Type)
		if e.Version > 0 {
			fmt.Fprintf(&b, " v%d", e.Version)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// FieldError is what Validate returns for one bad field. Decode lifts it into
// a DecodeError carrying the message type.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %s", e.Field, e.Reason) }

// Require returns a "missing" FieldError unless ok. It keeps the wording of
// missing-field errors identical across every message type.
func Require(field string, ok bool) error {
	return Check(field, ok, "missing")
}

// Check returns a FieldError with reason unless ok.
func Check(field string, ok bool, reason string) error {
	if ok {
		return nil
	}
	return &FieldError{Field: field, Reason: reason}
}

// FirstError returns the first non-nil error, so Validate can list its
// checks in field order:
//
//	return envelope.FirstError(
//		envelope.Require("node_id", b.NodeID != ""),
//		envelope.Check("count", b.Count >= 1, "must be >= 1"))
func FirstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Decode parses data as an Envelope, checks its metadata, and decodes the
// body into the registered type, returning the body pointer from newBody.
// maxSize > 0 caps len(data). Unknown fields anywhere are refused. Every
// error is a *DecodeError. Decode does not check signatures.
func (r *Registry) Decode(data []byte, maxSize int) (Envelope, any, error) {
	return r.decode(data, maxSize, "")
}

// DecodeReply is Decode, except that the body of a message of type
// replyType is decoded without refusing unknown fields (any other type is
// decoded as strictly as by Decode): replies gain fields as the answering side grows (a provisioner's
// dns_problem, a worker's uid), and a strict decoder would turn an older
// controller or mgmt talking to a newer peer into one that cannot read any
// answer at all. Replies answer a request this process sent, so they are not
// untrusted commands; those stay strict through Decode. The envelope itself
// stays strict, and the body is still validated.
func (r *Registry) DecodeReply(data []byte, maxSize int, replyType string) (Envelope, any, error) {
	return r.decode(data, maxSize, replyType)
}

// decode is DecodeReply, or Decode when replyType is "" (no type is "").
func (r *Registry) decode(data []byte, maxSize int, replyType string) (Envelope, any, error) {
	if maxSize > 0 && len(data) > maxSize {
		return Envelope{}, nil, &DecodeError{Reason: fmt.Sprintf("oversized: %d bytes, limit %d", len(data), maxSize)}
	}
	var env Envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return Envelope{}, nil, jsonDecodeError(&DecodeError{}, err)
	}
	de := &DecodeError{Type: env.Type, Version: env.Version}
	if env.Type == "" {
		de.Field, de.Reason = "type", "missing"
		return env, nil, de
	}
	if env.Version < 1 {
		de.Field, de.Reason = "version", "must be >= 1"
		return env, nil, de
	}
	e, ok, typeKnown := r.lookup(env.Type, env.Version)
	if !typeKnown {
		de.Version, de.Reason = 0, "unknown type"
		return env, nil, de
	}
	if !ok {
		de.Field, de.Reason = "version", "unsupported version"
		return env, nil, de
	}
	if err := FirstError(
		Require("id", env.ID != ""),
		Require("run", env.Run != ""),
		Require("time", !env.Time.IsZero()),
		Require("sender", env.Sender != ""),
		Require("body", len(env.Body) > 0 && string(env.Body) != "null"),
	); err != nil {
		return env, nil, fieldDecodeError(de, err)
	}
	body := e.newBody()
	if body == nil {
		de.Reason = "registry constructor returned nil"
		return env, nil, de
	}
	if err := unmarshal(env.Body, body, env.Type != replyType); err != nil {
		return env, nil, jsonDecodeError(de, err)
	}
	if err := body.Validate(); err != nil {
		return env, nil, fieldDecodeError(de, err)
	}
	return env, body, nil
}

// strictUnmarshal is json.Unmarshal that refuses unknown fields and trailing
// data, so a typo in a sender's field name fails loudly instead of being
// silently dropped.
func strictUnmarshal(data []byte, v any) error {
	return unmarshal(data, v, true)
}

// unmarshal is strictUnmarshal, refusing unknown fields only when strict;
// trailing data is refused either way.
func unmarshal(data []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func fieldDecodeError(de *DecodeError, err error) *DecodeError {
	var fe *FieldError
	if errors.As(err, &fe) {
		de.Field, de.Reason = fe.Field, fe.Reason
	} else {
		de.Reason = err.Error()
	}
	de.Err = err
	return de
}

// jsonDecodeError turns encoding/json errors into field-naming reasons.
func jsonDecodeError(de *DecodeError, err error) *DecodeError {
	de.Err = err
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		de.Field = typeErr.Field
		de.Reason = fmt.Sprintf("want %s, got JSON %s", typeErr.Type, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this; the message is stable.
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if unq, uerr := stringsUnquote(name); uerr == nil {
			name = unq
		}
		de.Field, de.Reason = name, "unknown field"
	case errors.As(err, &timeErr):
		// encoding/json does not say which field held the bad time; in the
		// envelope (no type known yet) it can only be "time".
		if de.Type == "" {
			de.Field = "time"
		}
		de.Reason = "want RFC 3339 time: " + timeErr.Error()
	case errors.As(err, &syntaxErr):
		de.Reason = fmt.Sprintf("bad JSON: %s (offset %d)", syntaxErr, syntaxErr.Offset)
	default:
		de.Reason = "bad JSON: " + err.Error()
	}
	return de
}

func stringsUnquote(s string) (string, error) {
	var out string
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}
