package keeper

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func alive(name string, pid int, start uint64) Observation {
	return Observation{Service: name, PID: pid, Start: start, Alive: true}
}

func dead(name string) Observation { return Observation{Service: name} }

// TestCoreRestartsDeadService walks one service through the cases that
// matter, each step an observation at an offset with the restarts due.
func TestCoreRestartsDeadService(t *testing.T) {
	type step struct {
		at       time.Duration
		obs      []Observation
		restart  error // outcome reported for every due service
		wantDue  []string
		wantNote string
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"adopts what is alive and restarts nothing", []step{
			{at: 0, obs: []Observation{alive("controller", 10, 1), alive("broker", 11, 1)}},
			{at: time.Second, obs: []Observation{alive("controller", 10, 1), alive("broker", 11, 1)}},
		}},
		{"first restart after the initial back-off", []step{
			{at: 0, obs: []Observation{alive("controller", 10, 1)}},
			{at: time.Second, obs: []Observation{dead("controller")}},
			{at: time.Second + 50*time.Millisecond, obs: []Observation{dead("controller")}},
			{at: time.Second + 100*time.Millisecond, obs: []Observation{dead("controller")}, wantDue: []string{"controller"}},
			{at: time.Second + 400*time.Millisecond, obs: []Observation{alive("controller", 20, 5)}},
		}},
		{"a service dead at first sight is restarted", []step{
			{at: 0, obs: []Observation{dead("provisioner")}},
			{at: 100 * time.Millisecond, obs: []Observation{dead("provisioner")}, wantDue: []string{"provisioner"}},
		}},
		{"a failed restart backs off further", []step{
			{at: 0, obs: []Observation{alive("broker", 10, 1)}},
			{at: time.Second, obs: []Observation{dead("broker")}},
			{at: 1100 * time.Millisecond, obs: []Observation{dead("broker")}, restart: errors.New("boot failed"), wantDue: []string{"broker"}},
			{at: 1250 * time.Millisecond, obs: []Observation{dead("broker")}},
			{at: 1300 * time.Millisecond, obs: []Observation{dead("broker")}, wantDue: []string{"broker"}},
		}},
		{"someone else's restart cancels ours", []step{
			{at: 0, obs: []Observation{alive("controller", 10, 1)}},
			{at: time.Second, obs: []Observation{dead("controller")}},
			{at: time.Second + 50*time.Millisecond, obs: []Observation{alive("controller", 30, 9)}},
			{at: 2 * time.Second, obs: []Observation{alive("controller", 30, 9)}},
		}},
		{"a reused pid is a different process", []step{
			{at: 0, obs: []Observation{alive("controller", 10, 1)}},
			{at: time.Second, obs: []Observation{alive("controller", 10, 7)}},
			{at: 2 * time.Second, obs: []Observation{alive("controller", 10, 7)}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCore(Policy())
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				due := c.Observe(now, s.obs)
				if !slices.Equal(due, s.wantDue) {
					t.Fatalf("step %d (+%s): due %v, want %v; views %+v", i, s.at, due, s.wantDue, c.Views())
				}
				for _, n := range due {
					c.Restarted(n, now, s.restart)
				}
			}
		})
	}
}

// TestCoreGivesUpWithinWindow: the sitter's windowed give-up applies; a
// service that died 20 times in 10 minutes is left down, and says why.
func TestCoreGivesUpWithinWindow(t *testing.T) {
	c := NewCore(Policy())
	now := t0
	c.Observe(now, []Observation{alive("controller", 1, 1)})
	restarts := 0
	for i := 0; i < 40; i++ {
		now = now.Add(time.Second)
		c.Observe(now, []Observation{dead("controller")})
		next := c.Views()[0].NextTry
		if next.IsZero() {
			break
		}
		now = next
		for _, n := range c.Observe(now, []Observation{dead("controller")}) {
			restarts++
			c.Restarted(n, now, nil)
		}
		c.Observe(now, []Observation{alive("controller", 100+i, uint64(i))})
	}
	v := c.Views()[0]
	if restarts != 20 || !strings.Contains(v.GaveUp, "gave up") || v.Up {
		t.Errorf("restarts %d, view %+v: want 20 restarts then a give-up", restarts, v)
	}
}

// TestCoreBackoffResetsAfterHealthyRun: a service that ran 5s since its
// last death is restarted after the initial delay again.
func TestCoreBackoffResetsAfterHealthyRun(t *testing.T) {
	c := NewCore(Policy())
	now := t0
	c.Observe(now, []Observation{alive("p", 1, 1)})
	for i, up := range []time.Duration{time.Second, time.Second, 5 * time.Second} {
		now = now.Add(up)
		c.Observe(now, []Observation{dead("p")})
		v := c.Views()[0]
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond}[i]
		if got := v.NextTry.Sub(now); got != want {
			t.Errorf("death %d after %s up: next try in %s, want %s", i+1, up, got, want)
		}
		now = v.NextTry
		c.Restarted("p", now, nil)
		c.Observe(now, []Observation{alive("p", 10+i, uint64(i+2))})
	}
	if v := c.Views()[0]; v.Restarts != 3 || !v.Up {
		t.Errorf("view %+v", v)
	}
}

func TestCoreDeferredAndForgotten(t *testing.T) {
	c := NewCore(Policy())
	c.Observe(t0, []Observation{dead("a"), alive("b", 2, 2)})
	due := c.Observe(t0.Add(time.Second), []Observation{dead("a"), alive("b", 2, 2)})
	if !slices.Equal(due, []string{"a"}) {
		t.Fatalf("due %v", due)
	}
	c.Deferred("a", t0.Add(3*time.Second))
	if due := c.Observe(t0.Add(2*time.Second), []Observation{dead("a")}); len(due) != 0 {
		t.Errorf("deferred restart due early: %v", due)
	}
	if due := c.Observe(t0.Add(3*time.Second), []Observation{dead("a")}); !slices.Equal(due, []string{"a"}) {
		t.Errorf("deferred restart not due: %v", due)
	}
	if vs := c.Views(); len(vs) != 1 || vs[0].Service != "a" || vs[0].Restarts != 1 {
		t.Errorf("views %+v: b, unobserved, must be forgotten; a restarted once", vs)
	}
}
