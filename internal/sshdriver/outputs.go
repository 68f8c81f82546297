package sshdriver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// maxOutputsSize bounds the boot output file we fetch; attributes are short
// strings, so anything bigger is a bug in the boot program.
const maxOutputsSize = 1 << 20

// parseOutputs decodes a boot program's output file: one JSON object whose
// values are strings, numbers or booleans. Numbers are written without an
// exponent (1e3 -> "1000") so that later ${svc.attr} references read as the
// program meant; integers keep every digit. Any other value type is an
// error naming its key.
func parseOutputs(data []byte) (map[string]string, error) {
	if len(data) > maxOutputsSize {
		return nil, fmt.Errorf("larger than %d bytes", maxOutputsSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file, want a JSON object")
		}
		return nil, fmt.Errorf("want a JSON object of string, number or boolean values: %w", err)
	}
	if raw == nil {
		return nil, errors.New("null, want a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // so the first bad key reported is stable
	out := make(map[string]string, len(raw))
	for _, k := range keys {
		switch v := raw[k].(type) {
		case string:
			out[k] = v
		case bool:
			out[k] = strconv.FormatBool(v)
		case json.Number:
			s, err := formatNumber(v)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			out[k] = s
		case nil:
			return nil, fmt.Errorf("key %q: value is null, want string, number or boolean", k)
		case []any:
			return nil, fmt.Errorf("key %q: value is an array, want string, number or boolean", k)
		case map[string]any:
			return nil, fmt.Errorf("key %q: value is an object, want string, number or boolean", k)
		default:
			return nil, fmt.Errorf("key %q: unsupported value type %T", k, v)
		}
	}
	return out, nil
}

func formatNumber(n json.Number) (string, error) {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		return s, nil // an integer literal: keep it exact, float64 would round big ones
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "", fmt.Errorf("number %s: %w", s, err)
	}
	return strconv.FormatFloat(f, 'f', -1, 64), nil
}
