package launchplan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxOutputBytes caps a boot program's output file ($NIGHTSHIFT_OUTPUT);
// attributes are short strings, so anything bigger is a bug in the program.
const MaxOutputBytes = 1 << 20

// ReadOutputs reads a boot program's output file from r, at most
// MaxOutputBytes of it, and parses it with ParseOutputs. Every driver reads
// the file through here, so the same program exports the same attributes
// wherever it runs. name is the file name used in errors.
func ReadOutputs(name string, r io.Reader) (map[string]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxOutputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("boot outputs %s: %w", name, err)
	}
	if len(data) > MaxOutputBytes {
		return nil, fmt.Errorf("boot outputs %s: larger than %d bytes", name, MaxOutputBytes)
	}
	return ParseOutputs(name, data)
}

// ParseOutputs decodes a boot program's output file: one JSON object whose
// values are strings, numbers or booleans. Numbers keep their literal text
// when it has no exponent (8080 -> "8080", 0.10 -> "0.10"); exponents are
// spelled out (1e3 -> "1000"). Errors name the file, and the line and key
// where known; a key given twice is refused rather than silently
// overwritten, since a program that writes it twice meant one of the two.
// name is the file name used in errors.
func ParseOutputs(name string, data []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("boot outputs %s:%d: %s", name, outputLine(data, dec.InputOffset()), fmt.Sprintf(format, args...))
	}
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("boot outputs %s:%d: invalid JSON: %w", name, outputLine(data, se.Offset), err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("boot outputs %s:%d: unexpected end of JSON", name, outputLine(data, int64(len(data))))
		}
		return fmt.Errorf("boot outputs %s: %w", name, err)
	}

	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("boot outputs %s: empty file; want a JSON object", name)
		}
		return nil, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail("want a JSON object of strings, numbers and booleans, got %s", describeJSON(tok))
	}
	out := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fail("want a key, got %s", describeJSON(tok))
		}
		if key == "" {
			return nil, fail("empty key")
		}
		if _, dup := out[key]; dup {
			return nil, fail("key %q: given twice", key)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		switch v := tok.(type) {
		case string:
			out[key] = v
		case bool:
			out[key] = strconv.FormatBool(v)
		case json.Number:
			s, err := numberText(v)
			if err != nil {
				return nil, fail("key %q: %v", key, err)
			}
			out[key] = s
		default:
			return nil, fail("key %q: value is %s; want a string, number or boolean", key, describeJSON(tok))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntax(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntax(err)
		}
		return nil, fail("data after the JSON object")
	}
	return out, nil
}

// numberText spells a JSON number the way a human wrote it, without the
// exponent noise a float64 round trip adds.
func numberText(n json.Number) (string, error) {
	s := n.String()
	if !strings.ContainsAny(s, "eE") {
		return s, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "", fmt.Errorf("number %s: %w", s, err)
	}
	return strconv.FormatFloat(f, 'f', -1, 64), nil
}

func describeJSON(tok any) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(v))
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", tok)
}

// outputLine is the 1-based line of byte offset off in data.
func outputLine(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return 1 + bytes.Count(data[:off], []byte{'\n'})
}
