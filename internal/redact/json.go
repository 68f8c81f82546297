package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// EncodeJSON writes v as indented JSON (as json.Encoder with a two-space
// indent would) with every string passed through r, and with the string
// value of every key that names a secret replaced by Marker. It works on the
// encoded token stream, so it reaches nested maps and types it has never
// heard of, keeps the field order, and never rewrites numbers, booleans or
// the JSON's structure (replacing text in the encoded bytes could turn a
// secret "true" into invalid JSON).
func (r *Redactor) EncodeJSON(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	compact, err := r.JSON(raw)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// JSON returns data (one or more JSON values) re-encoded compactly with its
// strings redacted as EncodeJSON does.
func (r *Redactor) JSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		obj bool
		n   int    // tokens written in this container (keys and values)
		key string // the object's current key
	}
	var stack []frame
	var out bytes.Buffer
	// The same few keys repeat in every element of a long list (a status
	// lists every worker): match each against the secret pattern once.
	secretKeys := keyCache{}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("redact json: %w", err)
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			out.WriteByte(byte(d))
			continue
		}
		isKey, key := false, ""
		if len(stack) == 0 {
			if out.Len() > 0 {
				out.WriteByte('\n')
			}
		} else {
			f := &stack[len(stack)-1]
			switch {
			case f.obj && f.n%2 == 0:
				if f.n > 0 {
					out.WriteByte(',')
				}
				isKey = true
			case f.obj:
				out.WriteByte(':')
				key = f.key
			case f.n > 0:
				out.WriteByte(',')
			}
			f.n++
			if isKey {
				f.key, _ = tok.(string)
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(t))
			stack = append(stack, frame{obj: t == '{'})
		case string:
			s := r.String(t)
			if !isKey && t != "" && secretKeys.is(key) {
				s = Marker
			}
			b, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			out.Write(b)
		case json.Number:
			out.WriteString(t.String())
		case bool:
			if t {
				out.WriteString("true")
			} else {
				out.WriteString("false")
			}
		case nil:
			out.WriteString("null")
		}
	}
	return out.Bytes(), nil
}

// keyCache remembers IsSecretKey per key within one document.
type keyCache map[string]bool

func (c keyCache) is(key string) bool {
	secret, ok := c[key]
	if !ok {
		secret = IsSecretKey(key)
		c[key] = secret
	}
	return secret
}
