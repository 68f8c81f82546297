package decision

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Factory makes a fresh, unconfigured engine.
type Factory func() Engine

// Registry maps engine names to factories. It is an ordinary value built by
// the program that needs it (no package-level registration), and is safe
// for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns a registry holding the built-in engines
// (npreserving, queuelen). The exec engine lives in decision/execengine
// and is registered by the program, since it needs a logger.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{
		NPreservingName: func() Engine { return NewNPreserving() },
		QueueLenName:    func() Engine { return NewQueueLen() },
	}}
}

// Register adds an engine under name. Names are unique: registering a name
// twice is an error, so that a plugin cannot silently replace a built-in.
func (r *Registry) Register(name string, f Factory) error {
	if name == "" {
		return fmt.Errorf("register engine: empty name")
	}
	if f == nil {
		return fmt.Errorf("register engine %q: nil factory", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.factories == nil {
		r.factories = map[string]Factory{}
	}
	if _, dup := r.factories[name]; dup {
		return fmt.Errorf("register engine %q: already registered", name)
	}
	r.factories[name] = f
	return nil
}

// New makes a fresh engine by name.
func (r *Registry) New(name string) (Engine, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("new engine %q: unknown engine (known: %v)", name, r.Names())
	}
	e := f()
	if e == nil {
		return nil, fmt.Errorf("new engine %q: factory returned nil", name)
	}
	return e, nil
}

// Names lists the registered engine names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.factories))
}
