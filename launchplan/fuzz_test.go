package launchplan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic, hang or
// return an error that is not an *ErrorList naming a file.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/valid/*.toml", "testdata/invalid/*.toml"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	opts := testOptions()
	f.Fuzz(func(t *testing.T, data []byte) {
		// Anchored in testdata/valid so that seeds' includes and programs resolve.
		plan, err := Parse("testdata/valid/fuzz.toml", data, opts)
		if err == nil {
			if plan == nil || len(plan.Levels) == 0 {
				t.Fatalf("nil error but plan %+v", plan)
			}
			_ = plan.Graph()
			for _, l := range plan.Levels {
				for i := range l.Services {
					if _, err := ExpandService(&l.Services[i], Scope{}); err != nil && strings.Contains(err.Error(), "panic") {
						t.Fatal(err)
					}
				}
			}
			return
		}
		var list *ErrorList
		if !errors.As(err, &list) || len(*list) == 0 {
			t.Fatalf("want a non-empty *ErrorList, got %T: %v", err, err)
		}
		for _, e := range *list {
			if e.Pos.File == "" || e.Msg == "" {
				t.Fatalf("error without file or message: %#v", e)
			}
		}
	})
}

// FuzzReferences checks that the template scanner agrees with itself:
// whatever References accepts, Expand accepts with every reference bound.
func FuzzReferences(f *testing.F) {
	for _, s := range []string{"", "${a.b}", "$${a.b}", "${.x}${global.y}", "${", "${a}", "$$$", "x${env.HOME}y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		refs, err := References(tmpl)
		s := Scope{
			Self:    map[string]string{},
			Globals: map[string]string{},
			Getenv:  func(string) (string, bool) { return "", false },
			Service: func(svc, attr string) (string, bool) { return fmt.Sprintf("<%s.%s>", svc, attr), true },
		}
		for _, r := range refs {
			s.Self[r.Name] = "v"
			s.Globals[r.Name] = "v"
		}
		s.Getenv = func(k string) (string, bool) { return "v", true }
		_, expErr := s.Expand(tmpl)
		if (err == nil) != (expErr == nil) {
			t.Fatalf("References err %v but Expand err %v", err, expErr)
		}
	})
}

// FuzzScan checks that the limits scan never undercounts what the decoder
// then builds: whatever the scan lets through and the decoder accepts has
// no key deeper than MaxDepth, none with a part longer than MaxKeyLen and
// no more keys than MaxKeys. Those are what keep the decoder linear.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		"a.b.c = 1", "[a.b]\nc.d = { e.f = [ { g = 1 } ] }", "[[level]]\n[level.service.x]\nboot = ['true']",
		"x = [[[[1]]]]", "'a'.\"b\" = 1", "x = \"\"\"\n[[level]]\n\"\"\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := newBudget()
		if _, err := scan(data, &b); err != nil {
			return
		}
		var v map[string]any
		md, err := toml.Decode(string(data), &v)
		if err != nil {
			return
		}
		keys := md.Keys()
		for _, k := range keys {
			if len(k) > MaxDepth {
				t.Fatalf("key %q is %d deep; the scan allowed it", k, len(k))
			}
			for _, p := range k {
				if len(p) > MaxKeyLen {
					t.Fatalf("key part of %d bytes; the scan allowed it", len(p))
				}
			}
		}
	})
}
