package decision

import (
	"slices"
	"strings"
	"testing"
)

// fixed is a trivial engine for registry tests.
type fixed struct{ NPreserving }

func (fixed) Name() string { return "fixed" }

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	if got := r.Names(); !slices.Equal(got, []string{"npreserving", "queuelen"}) {
		t.Fatalf("built-ins = %v", got)
	}
	for _, name := range r.Names() {
		e, err := r.New(name)
		if err != nil || e.Name() != name {
			t.Fatalf("New(%q) = %v, %v", name, e, err)
		}
	}
	// Each New is a fresh engine: configuring one does not touch another.
	a, _ := r.New("npreserving")
	b, _ := r.New("npreserving")
	if err := a.Configure(map[string]any{"n": 2}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Config()["n"]; ok {
		t.Fatal("engines from one factory share configuration")
	}
	if err := r.Register("fixed", func() Engine { return &fixed{*NewNPreserving()} }); err != nil {
		t.Fatal(err)
	}
	if e, err := r.New("fixed"); err != nil || e.Name() != "fixed" {
		t.Fatalf("New(fixed) = %v, %v", e, err)
	}
	// Separate registries are independent.
	if _, err := NewRegistry().New("fixed"); err == nil {
		t.Fatal("registration leaked into another registry")
	}
	errs := []struct {
		err  error
		want string
	}{
		{r.Register("queuelen", func() Engine { return NewQueueLen() }), `register engine "queuelen": already registered`},
		{r.Register("", func() Engine { return NewQueueLen() }), "register engine: empty name"},
		{r.Register("nilf", nil), `register engine "nilf": nil factory`},
		{r.Register("nilengine", func() Engine { return nil }), ""},
	}
	for _, e := range errs {
		if e.want == "" {
			continue
		}
		if e.err == nil || e.err.Error() != e.want {
			t.Errorf("err = %v, want %q", e.err, e.want)
		}
	}
	if _, err := r.New("nilengine"); err == nil || !strings.Contains(err.Error(), "factory returned nil") {
		t.Errorf("nil engine: %v", err)
	}
	if _, err := r.New("magic"); err == nil || !strings.Contains(err.Error(), `new engine "magic": unknown engine`) {
		t.Errorf("unknown: %v", err)
	}
	var zero Registry
	if err := zero.Register("x", func() Engine { return NewQueueLen() }); err != nil {
		t.Errorf("zero registry: %v", err)
	}
}
