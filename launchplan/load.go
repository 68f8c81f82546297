package launchplan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Options carries what a plan may depend on besides its own files.
type Options struct {
	// GlobalFiles are -G files: TOML files with a [globals] table (rank 2).
	GlobalFiles []string
	// Globals are -g key=value pairs (rank 3, highest).
	Globals map[string]string
	// Getenv resolves ${env.NAME} at load time; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
	// Types are the built-in service types a service may name, from the
	// type registry (builtin.Names, internal/service/builtin); a plan
	// naming any other is refused. The loader keeps no list of its own, so
	// the registry and validation cannot drift apart.
	Types []string
	// Replicas reads how many replicas a typed service's config asks for
	// (its config key `replicas`; builtin.Replicas for the daemons that
	// stand by under a lease): 0 when the type has no such key, else the
	// count, which expands the service as replica_count does. Its error is
	// reported at config.replicas. nil: no type has replicas.
	Replicas func(typ string, cfg map[string]any) (int, error)
	// TypeCheck checks a typed service's config table as a whole at load
	// (builtin.CheckConfig), so that a config the type will refuse is
	// refused before anything boots. An error that begins "config.KEY:"
	// is reported at that key, any other at the config table. Values may
	// still hold ${...} references here. nil: no check.
	TypeCheck func(typ string, cfg map[string]any) error
	// LookPath resolves bare program names; nil means exec.LookPath.
	LookPath func(string) (string, error)
}

// namePattern is the shape of plan and service names: they become parts of
// directory names, AMQP names and hostnames.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Load reads and validates the plan at path. A failure to read the file is
// an *Error; problems in the plan are an *ErrorList holding all of them.
func Load(path string, opts Options) (*Plan, error) {
	data, err := readFile(path, MaxFileSize)
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Msg: fmt.Sprintf("read plan: %v", err), Err: err}
	}
	return Parse(path, data, opts)
}

// Parse validates a plan whose top file content is data. path names the
// file in errors and anchors relative includes and programs, which are
// still read from disk.
func Parse(path string, data []byte, opts Options) (*Plan, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.LookupEnv
	}
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Msg: fmt.Sprintf("resolve plan path: %v", err), Err: err}
	}
	b := &builder{opts: opts, hash: sha256.New(), budget: newBudget(), defaultWeight: map[string]int{}}
	top := b.parseSource(path, abs, data)
	if top == nil {
		return nil, b.errs.result()
	}
	plan := &Plan{Path: abs, Dir: filepath.Dir(abs)}
	b.build(plan, top)
	if err := b.errs.result(); err != nil {
		return nil, err
	}
	plan.Hash = hex.EncodeToString(b.hash.Sum(nil))
	return plan, nil
}

// readFile reads a plan file, refusing anything that is not a regular file
// or is larger than limit (at most MaxFileSize) before reading all of it.
func readFile(path string, limit int) ([]byte, error) {
	limit = min(limit, MaxFileSize)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	tooLarge := errTooLarge
	if limit < MaxFileSize {
		tooLarge = errTotalTooLarge
	}
	if st.Size() > int64(limit) {
		return nil, tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, tooLarge
	}
	return data, nil
}

var (
	errTooLarge      = fmt.Errorf("file is larger than %d MiB", MaxFileSize>>20)
	errTotalTooLarge = fmt.Errorf("the plan's files together are larger than %d MiB", MaxTotalSize>>20)
)

// source is one parsed TOML file of a plan.
type source struct {
	display string // path as shown in errors
	dir     string // absolute directory, anchor for relative paths
	loc     *locator
	// levelLocs are per-[[level]] locators of a top file; see chunkLocators.
	levelLocs []*locator
}

// value decodes the raw value of a top-level key.
func (s *source) value(key string) (any, bool) {
	p, ok := s.loc.root[key]
	if !ok {
		return nil, false
	}
	var v any
	if err := s.loc.md.PrimitiveDecode(p, &v); err != nil {
		return nil, false
	}
	return v, true
}

func (s *source) keys() []string { return sortedKeys(s.loc.root) }

// node returns the node of a top-level key.
func (s *source) node(key string) (node, bool) {
	v, ok := s.value(key)
	if !ok {
		return node{}, false
	}
	return node{src: s, loc: s.loc, path: []string{key}, key: key, val: v}, true
}

func (s *source) filePos() Pos { return Pos{File: s.display} }

// parseSource checks and parses one file, recording errors and returning
// nil when the file cannot be used at all.
func (b *builder) parseSource(display, abs string, data []byte) *source {
	// Limits first: everything after this, the TOML parser included, may
	// then take time in proportion to the file and no more.
	lay, lerr := scan(data, &b.budget)
	if lerr != nil {
		b.errs.add(Pos{File: display, Line: lerr.line}, "", "%s", lerr.msg)
		return nil
	}
	b.hash.Write(data)
	if !utf8.Valid(data) {
		b.errs.add(Pos{File: display, Line: invalidUTF8Line(data)}, "", "not valid UTF-8 (TOML files must be UTF-8)")
		return nil
	}
	loc, err := newLocator(string(data), lay.lines)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			b.errs.add(Pos{File: display, Line: pe.Position.Line}, "", "TOML syntax: %s", pe.Message)
		} else {
			b.errs.add(Pos{File: display}, "", "TOML: %v", err)
		}
		return nil
	}
	src := &source{display: display, dir: filepath.Dir(abs), loc: loc}
	if lv, ok := src.value("level"); ok {
		if n := countTables(lv); n > 0 {
			src.levelLocs = chunkLocators(data, lay.levelLines, n)
		}
	}
	b.checkControl(src)
	return src
}

func invalidUTF8Line(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size == 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		data = data[size:]
	}
	return line
}

// includeSource reads and parses a level file named by level.file.
func (b *builder) includeSource(from *source, n node, file string) *source {
	display := file
	abs := file
	if !filepath.IsAbs(file) {
		display = filepath.Join(filepath.Dir(from.display), file)
		abs = filepath.Join(from.dir, file)
	}
	data, err := readFile(abs, b.budget.bytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			b.errf(n, "include %s: file does not exist", display)
		} else {
			b.errf(n, "include %s: %s", display, strings.TrimPrefix(err.Error(), abs+": "))
		}
		return nil
	}
	return b.parseSource(display, abs, data)
}

// builder carries the state of one Load.
type builder struct {
	opts   Options
	hash   hash.Hash
	errs   errs
	budget budget
	// services counts services with their replicas, against MaxServices;
	// weight counts their values, against maxWeight.
	services, weight int
	defaultWeight    map[string]int // per [defaults] key, counted once
	suggestWork      int            // see builder.suggest
	// placeholders are values still holding PlaceholderMark, and
	// globalPos where each global was last set (see placeholder.go).
	placeholders []Placeholder
	globalPos    map[string]Pos
}
