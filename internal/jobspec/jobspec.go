// Package jobspec owns what a job's workers are launched with: the driver,
// its instance table and the sitter task (Spec). The provisioner holds the
// run's specs from the plan, loaded at boot from a jobs file (Load), and
// builds every launch's spec itself; a launch names only the job and the
// Digest of the spec its sender expects, so no message can choose a
// command line, and a controller and a provisioner given different
// definitions find out at the first launch instead of running the wrong
// workers.
package jobspec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// DriverLocal is a job's driver when its definition names none, as the
// controller reads it too.
const DriverLocal = "local"

// MaxFileSize bounds a jobs file.
const MaxFileSize = 4 << 20

// Spec is one job's worker spec.
type Spec struct {
	Driver   string         `json:"driver"`
	Instance map[string]any `json:"instance,omitempty"`
	Worker   map[string]any `json:"worker,omitempty"`
	// DNS, when set, is the job's dns table. It is not part of the digest
	// or of a driver's launch spec: it decides the names the provisioner
	// gives workers, not what runs, and the controller does not read it.
	DNS *DNS `json:"dns,omitempty"`
}

// canonical is the JSON the digest is taken over: keys sorted (as
// encoding/json does for maps) and numbers as float64, so a value read
// from TOML (int64) and the same value read back from JSON hash alike.
func (s Spec) canonical() ([]byte, error) {
	if s.Driver == "" {
		s.Driver = DriverLocal
	}
	s.DNS = nil
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// Digest identifies the spec: "sha256:" and 64 hex digits.
func (s Spec) Digest() (string, error) {
	c, err := s.canonical()
	if err != nil {
		return "", fmt.Errorf("digest of job spec: %w", err)
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// LaunchSpec is the JSON a driver receives (provisioner.InstanceSpec.Spec):
// the job's spec with the engine's launch metadata under "engine", which
// names what to launch but runs nothing.
func (s Spec) LaunchSpec(engine any) (json.RawMessage, error) {
	c, err := s.canonical()
	if err != nil {
		return nil, fmt.Errorf("launch spec: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(c, &top); err != nil {
		return nil, fmt.Errorf("launch spec: %w", err)
	}
	if engine != nil {
		e, err := json.Marshal(engine)
		if err != nil {
			return nil, fmt.Errorf("launch spec: engine: %w", err)
		}
		top["engine"] = e
	}
	return json.Marshal(top)
}

// controllerKeys are the keys of a job table that belong to the
// controller; a jobs file shared with it carries them and they are
// ignored here.
var controllerKeys = []string{"engine", "policy", "health", "queue", BlockAfterSilentKey}

// BlockAfterSilentKey is the job key saying after how many workers in a
// row that reach running without ever sending a heartbeat the controller
// stops launching the job's workers (docs/jobs.md). It is the
// controller's, but checked here too, so a bad value is refused with the
// plan's file and line when the provisioner's type writes the jobs file,
// before any worker is launched.
const BlockAfterSilentKey = "block_after_silent"

// Bounds of block_after_silent: more silent workers in a row than this is
// billing, not patience.
const (
	DefaultBlockAfterSilent = 3
	MaxBlockAfterSilent     = 100
)

// BlockAfterSilent reads a job table's block_after_silent, or the default
// when it is absent. The error names the key.
func BlockAfterSilent(t map[string]any) (int, error) {
	v, ok := t[BlockAfterSilentKey]
	if !ok {
		return DefaultBlockAfterSilent, nil
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x) || math.Abs(x) > MaxBlockAfterSilent*2 {
			return 0, fmt.Errorf("key %s: want an integer from 1 to %d, got %v", BlockAfterSilentKey, MaxBlockAfterSilent, x)
		}
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, fmt.Errorf("key %s: want an integer from 1 to %d, got %q", BlockAfterSilentKey, MaxBlockAfterSilent, x.String())
		}
		n = i
	default:
		return 0, fmt.Errorf("key %s: want an integer from 1 to %d, got %s", BlockAfterSilentKey, MaxBlockAfterSilent, jsonType(v))
	}
	if n < 1 || n > MaxBlockAfterSilent {
		return 0, fmt.Errorf("key %s: want an integer from 1 to %d, got %d", BlockAfterSilentKey, MaxBlockAfterSilent, n)
	}
	return int(n), nil
}

// DecodeDocument decodes a jobs document, of at most MaxFileSize bytes, as
// JSON (numbers kept as json.Number, nothing after the object) when name
// ends in .json, else as TOML. The provisioner and the controller read the
// same file through it, so neither accepts what the other would refuse.
func DecodeDocument(name string, data []byte) (map[string]any, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, limit %d", name, len(data), MaxFileSize)
	}
	var doc map[string]any
	if strings.HasSuffix(name, ".json") {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: trailing data after the JSON object", name)
		}
	} else if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return doc, nil
}

// Parse reads a jobs document: {"jobs": {"NAME": {...}}} as JSON when name
// ends in .json, else TOML [jobs.NAME] tables, the controller's jobs file
// format. Each job's driver, instance and worker make its Spec. Errors name
// the document, the job and the key.
func Parse(name string, data []byte) (map[string]Spec, error) {
	doc, err := DecodeDocument(name, data)
	if err != nil {
		return nil, err
	}
	for k := range doc {
		if k != "jobs" {
			return nil, fmt.Errorf("%s: key %s: unknown key (want only [jobs.NAME] tables)", name, k)
		}
	}
	tables, ok := doc["jobs"].(map[string]any)
	if !ok || len(tables) == 0 {
		return nil, fmt.Errorf("%s: key jobs: want one [jobs.NAME] table per job", name)
	}
	out := make(map[string]Spec, len(tables))
	for _, job := range slices.Sorted(maps.Keys(tables)) {
		t, ok := tables[job].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: job %s: want a table, got %s", name, job, jsonType(tables[job]))
		}
		s, err := FromTable(t)
		if err != nil {
			return nil, fmt.Errorf("%s: job %s: %w", name, job, err)
		}
		out[job] = s
	}
	return out, nil
}

// FromTable reads one job table as the controller's jobs file has it:
// driver (default local), instance and worker make the Spec; the
// controller's own keys are ignored and any other key is an error.
func FromTable(t map[string]any) (Spec, error) {
	var s Spec
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v := t[k]
		switch {
		case k == "driver":
			d, ok := v.(string)
			if !ok {
				return s, fmt.Errorf("key driver: want a string, got %s", jsonType(v))
			}
			s.Driver = d
		case k == "instance" || k == "worker":
			m, ok := v.(map[string]any)
			if !ok {
				return s, fmt.Errorf("key %s: want a table, got %s", k, jsonType(v))
			}
			if k == "instance" {
				s.Instance = m
			} else {
				if err := checkWorkerUser(m); err != nil {
					return s, err
				}
				s.Worker = m
			}
		case k == DNSKey:
			d, err := parseDNS(v)
			if err != nil {
				return s, err
			}
			s.DNS = d
		case k == BlockAfterSilentKey:
			if _, err := BlockAfterSilent(t); err != nil {
				return s, err
			}
		case slices.Contains(controllerKeys, k):
		default:
			return s, fmt.Errorf("key %s: unknown key (a job has driver, instance, worker, dns and the controller's %s)", k, strings.Join(controllerKeys, ", "))
		}
	}
	if s.Driver == "" {
		s.Driver = DriverLocal
	}
	if _, err := s.canonical(); err != nil {
		return s, err
	}
	return s, nil
}

// checkWorkerUser checks worker.user and worker.group, which decide the
// Unix user a local worker runs as under a root provisioner (and a task's
// user under a root sitter): a bad one is refused when the plan is booted,
// with its file and line, rather than at every launch.
func checkWorkerUser(w map[string]any) error {
	for _, k := range []string{"user", "group"} {
		v, ok := w[k]
		if !ok {
			continue
		}
		name, isString := v.(string)
		if !isString {
			return fmt.Errorf("key worker.%s: want a user name (a string), got %s", k, jsonType(v))
		}
		if err := CheckUserName(name); err != nil {
			return fmt.Errorf("key worker.%s: %w", k, err)
		}
	}
	return nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return "a number"
	}
}

// Load reads a jobs file (see Parse). The file decides which commands run
// as workers, so one that others may write is refused.
func Load(path string) (map[string]Spec, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load jobs %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("load jobs %s: mode %04o lets others change what workers run; want 0600", path, perm)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load jobs %s: %w", path, err)
	}
	return Parse(filepath.Base(path), data)
}

// Write stores jobs as a JSON jobs file, mode 0600, replacing path
// atomically.
func Write(path string, jobs map[string]Spec) error {
	data, err := json.MarshalIndent(map[string]any{"jobs": jobs}, "", "  ")
	if err != nil {
		return fmt.Errorf("write jobs %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".jobs-*")
	if err != nil {
		return fmt.Errorf("write jobs %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(data, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		return fmt.Errorf("write jobs %s: %w", path, werr)
	}
	return nil
}

// userNamePattern is what a worker user may be called: a POSIX-portable
// login name (as useradd accepts by default), or a numeric uid.
var userNamePattern = regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})$`)

// CheckUserName reports why name cannot name a worker user, or nil.
func CheckUserName(name string) error {
	if !userNamePattern.MatchString(name) {
		return fmt.Errorf("%q is not a user name (want [a-z_][a-z0-9_-]{0,31}, or a numeric uid)", name)
	}
	return nil
}
