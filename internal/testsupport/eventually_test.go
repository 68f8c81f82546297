package testsupport

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records a failure instead of ending the test.
type fakeT struct{ failed string }

func (*fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	ft := &fakeT{}
	Eventually(ft, 10*time.Second, func() error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if ft.failed != "" || calls.Load() != 3 {
		t.Errorf("failed %q after %d calls; want success on the third", ft.failed, calls.Load())
	}
}

func TestEventuallyFailsWithTheLastAnswer(t *testing.T) {
	n := 0
	ft := &fakeT{}
	began := time.Now()
	Eventually(ft, 50*time.Millisecond, func() error { n++; return fmt.Errorf("seen %d", n) })
	if !strings.HasPrefix(ft.failed, "timed out after 50ms: seen ") || !strings.HasSuffix(ft.failed, fmt.Sprint(n)) {
		t.Errorf("failure = %q, want the timeout and the last answer (seen %d)", ft.failed, n)
	}
	if n < 2 {
		t.Errorf("asked %d times in 50ms, want it to poll", n)
	}
	if took := time.Since(began); took < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", took)
	}
}

func TestPollAsksAtLeastOnce(t *testing.T) {
	if err := Poll(0, func() error { return nil }); err != nil {
		t.Errorf("Poll(0, ok) = %v", err)
	}
	want := errors.New("never")
	if err := Poll(0, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Poll(0, failing) = %v, want it to wrap the answer", err)
	}
}

func TestPollEveryAsksAtItsInterval(t *testing.T) {
	n := 0
	err := PollEvery(120*time.Millisecond, 50*time.Millisecond, func() error { n++; return errors.New("no") })
	if err == nil || n < 2 || n > 4 {
		t.Errorf("PollEvery(120ms, every 50ms) asked %d times (err %v), want 3 or so", n, err)
	}
}
