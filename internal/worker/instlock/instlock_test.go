package instlock

import (
	"testing"
	"time"
)

func TestSameIDWaitsOtherIDDoesNot(t *testing.T) {
	var s Set
	unlock := s.Lock("i-1")

	// Another id is independent of the held one.
	done := make(chan struct{})
	go func() {
		s.Lock("i-2")()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("locking i-2 waited for i-1")
	}

	// The same id waits until the holder releases it.
	got := make(chan struct{})
	go func() {
		s.Lock("i-1")()
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("i-1 was locked twice at once")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("i-1 was not handed over after unlock")
	}
}
