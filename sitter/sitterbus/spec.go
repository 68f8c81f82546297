package sitterbus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"nightshift/sitter"
)

// MaxSpecSize bounds spec.json; a launch spec is a few KB.
const MaxSpecSize = 1 << 20

// LoadSpec reads the launch spec a provisioner driver wrote for this
// instance and returns its worker's tasks (see ParseSpec).
func LoadSpec(path, job string) ([]sitter.Task, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load worker spec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("load worker spec %s: %w", path, err)
	}
	return ParseSpec(path, b, job)
}

// ParseSpec decodes a launch spec ({"driver", "instance", "worker",
// "engine"}) and returns its "worker" object as validated sitter tasks
// (sitter.Worker.Tasks): the worker's own, named job unless it says
// otherwise, first, then its linked tasks, which follow it. Keys outside
// "worker" belong to the provisioner and are not checked here; inside it
// every key must be a sitter.Task key (or linked), so a typo in a plan
// fails here instead of being ignored. Errors carry name, the line for
// JSON syntax errors, and the key.
func ParseSpec(name string, data []byte, job string) ([]sitter.Task, error) {
	if len(data) > MaxSpecSize {
		return nil, fmt.Errorf("%s: %d bytes, limit %d", name, len(data), MaxSpecSize)
	}
	var top struct {
		Worker json.RawMessage `json:"worker"`
	}
	if err := strictDecode(data, &top, false); err != nil {
		return nil, specError(name, data, "", err)
	}
	if len(top.Worker) == 0 || string(top.Worker) == "null" {
		return nil, fmt.Errorf("%s: key worker: missing: the launch spec has no sitter task", name)
	}
	var w sitter.Worker
	if err := strictDecode(top.Worker, &w, true); err != nil {
		return nil, specError(name, data, "worker", err)
	}
	tasks, err := w.Tasks(job)
	if err != nil {
		var fe *sitter.FieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%s:%d: key worker.%s: %w", name, lineOfKey(data, lastKey(fe.Key)), fe.Key, err)
		}
		return nil, fmt.Errorf("%s: key worker: %w", name, err)
	}
	return tasks, nil
}

func strictDecode(data []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// specError names the key (and, where the decoder knows it, the line) of
// a decode error.
func specError(name string, data []byte, prefix string, err error) error {
	join := func(k string) string {
		if prefix == "" && k == "" {
			return "(top level)"
		}
		if prefix == "" {
			return k
		}
		if k == "" {
			return prefix
		}
		return prefix + "." + k
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn) && prefix == "":
		return fmt.Errorf("%s:%d: bad JSON: %w", name, lineAt(data, syn.Offset), err)
	case errors.As(err, &typ):
		// The worker's own keys are sitter.Worker's embedded Task's.
		field := strings.TrimPrefix(typ.Field, "Task.")
		return fmt.Errorf("%s:%d: key %s: want %s, got JSON %s", name, lineOfKey(data, lastKey(field)), join(field), typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this; its message is stable.
		k := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fmt.Errorf("%s:%d: key %s: unknown key", name, lineOfKey(data, k), join(k))
	default:
		// Text errors (bad duration, restart policy, signal) do not say
		// which key; encoding/json names none for UnmarshalText failures.
		return fmt.Errorf("%s: key %s: %w", name, join(""), err)
	}
}

func lastKey(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[i+1:]
	}
	return field
}

// lineAt is the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// lineOfKey is the line of the first "key": in data, or 1.
func lineOfKey(data []byte, key string) int {
	if key == "" {
		return 1
	}
	i := bytes.Index(data, []byte(`"`+key+`"`))
	if i < 0 {
		return 1
	}
	return lineAt(data, int64(i))
}
