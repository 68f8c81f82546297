// Package keeper owns the supervision of a run's own processes on this host:
// the private broker node and the daemons (provisioner, controller). A
// keeper watches each one by pid and /proc start time several times a
// second and, when one dies, restarts it through the boot engine (the same
// boot and ready steps `mgmt repair` runs) with the sitter's restart rules:
// back-off that doubles per failure and resets after a healthy run, and a
// windowed give-up. Two keeper processes run per run, an active one and a
// standby blocked on the active's lock, each replacing the other, so killing
// either one loses nothing. The decisions are a pure core (Core); the
// process, file and lock work sits at the edges (Daemon, Start, Stop).
package keeper

import (
	"fmt"
	"sort"
	"time"

	"nightshift/sitter"
)

// Policy returns the restart rules the keeper applies to every service,
// expressed as a sitter task so that the sitter's Decide applies them: a
// first restart after 100ms (a dead controller is back well within a
// second), doubling to 30s for a service that keeps dying, the back-off
// forgotten once a run lasted 5s (a daemon that connected and answered
// its ready check is not crash-looping), and giving up after 20 restarts
// within 10 minutes, when something a restart cannot fix is wrong.
func Policy() sitter.Task {
	max := 20
	return sitter.Task{
		Name:              "keeper",
		Restart:           sitter.RestartAlways,
		MaxRestarts:       &max,
		RestartWindow:     sitter.Duration(10 * time.Minute),
		BackoffInitial:    sitter.Duration(100 * time.Millisecond),
		BackoffMax:        sitter.Duration(30 * time.Second),
		BackoffResetAfter: sitter.Duration(5 * time.Second),
	}
}

// Observation is what one look at a service's process found.
type Observation struct {
	Service string
	PID     int
	// Start is the process's start time from /proc (clock ticks since
	// boot); with PID it names one process, whatever reuses the pid later.
	Start uint64
	Alive bool
	// Exit says how the process ended when that is known (it was the
	// observer's child and was reaped); "" otherwise.
	Exit string
}

// View is the keeper's account of one service, for status.
type View struct {
	Service  string    `json:"service"`
	Up       bool      `json:"up"`
	PID      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts"`
	LastExit string    `json:"last_exit,omitempty"`
	DownAt   time.Time `json:"down_at,omitzero"`
	NextTry  time.Time `json:"next_try,omitzero"`
	GaveUp   string    `json:"gave_up,omitempty"`
}

type service struct {
	up       bool
	pid      int
	start    uint64
	since    time.Time // when the current (or last) run of it began
	downAt   time.Time
	lastExit string
	pending  bool // a restart is decided and due at due
	due      time.Time
	gaveUp   string
	hist     sitter.History
}

// Core decides which services to restart and when. It holds no clock and
// does no I/O: every call is given now.
type Core struct {
	task sitter.Task
	svcs map[string]*service
}

// NewCore returns a core applying task's restart rules (see Policy).
func NewCore(task sitter.Task) *Core {
	return &Core{task: task, svcs: map[string]*service{}}
}

// Observe records one look at every watched service and returns, sorted,
// the services whose restart is due at now. A service first seen alive is
// adopted as it is (a keeper replacing another restarts nothing); one first
// seen dead, or seen dying, gets the restart its history allows. Services
// missing from obs are forgotten.
func (c *Core) Observe(now time.Time, obs []Observation) []string {
	seen := map[string]bool{}
	var due []string
	for _, o := range obs {
		seen[o.Service] = true
		s := c.svcs[o.Service]
		if s == nil {
			s = &service{since: now, up: o.Alive}
			if o.Alive {
				s.pid, s.start = o.PID, o.Start
			}
			c.svcs[o.Service] = s
			if !o.Alive {
				c.died(s, now, o.Exit)
			}
		} else if o.Alive {
			if !s.up || s.pid != o.PID || s.start != o.Start {
				// Back, by our restart or someone else's (mgmt repair, a
				// relaunch): a new run of the service begins.
				s.up, s.pid, s.start, s.since = true, o.PID, o.Start, now
				s.pending, s.gaveUp = false, ""
			}
		} else if s.up || (!s.pending && s.gaveUp == "") {
			// Seen dying, or dead again after a restart that seemed to work.
			c.died(s, now, o.Exit)
		}
		if s.pending && !now.Before(s.due) {
			due = append(due, o.Service)
		}
	}
	for n := range c.svcs {
		if !seen[n] {
			delete(c.svcs, n)
		}
	}
	sort.Strings(due)
	return due
}

func (c *Core) died(s *service, now time.Time, exit string) {
	s.up = false
	s.downAt = now
	if exit == "" {
		exit = "died (exit status unknown: not the keeper's child)"
		if s.pid != 0 {
			exit = fmt.Sprintf("pid %d died (exit status unknown: not the keeper's child)", s.pid)
		}
	}
	s.lastExit = exit
	c.decide(s, sitter.RunEnd{Started: s.since, Ended: now, ExitCode: -1, Err: exit})
}

func (c *Core) decide(s *service, end sitter.RunEnd) {
	d, h := sitter.Decide(c.task, s.hist, end)
	s.hist = h
	if d.Outcome != sitter.OutcomeRestart {
		s.pending, s.gaveUp = false, d.Reason
		return
	}
	s.pending, s.due = true, end.Ended.Add(d.Delay)
}

// Restarted records the outcome of a restart the caller made because
// Observe said it was due. A failed restart counts as another failed run,
// so the next attempt backs off further. A restart that could not even
// begin (the run's lock was busy) is reported with Deferred instead.
func (c *Core) Restarted(name string, now time.Time, err error) {
	s := c.svcs[name]
	if s == nil {
		return
	}
	s.pending = false
	s.since = now
	if err != nil {
		s.lastExit = "restart failed: " + err.Error()
		c.decide(s, sitter.RunEnd{Started: now, Ended: now, ExitCode: -1, Err: s.lastExit})
	}
}

// Deferred keeps a due restart pending until after, without counting it.
func (c *Core) Deferred(name string, after time.Time) {
	if s := c.svcs[name]; s != nil && s.pending && s.due.Before(after) {
		s.due = after
	}
}

// Views returns the keeper's account of every service, sorted by name.
func (c *Core) Views() []View {
	out := make([]View, 0, len(c.svcs))
	for n, s := range c.svcs {
		v := View{Service: n, Up: s.up, Restarts: s.hist.Total, LastExit: s.lastExit, GaveUp: s.gaveUp}
		if s.up {
			v.PID = s.pid
		} else {
			v.DownAt = s.downAt
			if s.pending {
				v.NextTry = s.due
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}
