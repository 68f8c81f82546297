package mgmt

import (
	"fmt"

	"nightshift/bootlevel"
	"nightshift/controller"
)

// NotReady lists why a run is not ready and at policy, or nothing when it
// is: the run is ready, every service too (and its process alive, and its
// ready check passing if one ran), and every pool has as many healthy
// running workers as its engine wants, with none launching or blocked.
// It is `mgmt status`'s exit code: 0 when empty, 3 otherwise.
func NotReady(s *RunStatus) []string {
	var why []string
	checkErr := map[string]string{}
	for _, c := range s.Checks {
		if c.Checked && !c.OK {
			checkErr[c.Service] = firstLine(c.Error)
		}
	}
	if s.State != "ready" {
		why = append(why, "run is "+s.State)
	}
	for _, l := range s.Levels {
		for _, svc := range l.Services {
			switch {
			case svc.State != "ready":
				why = append(why, fmt.Sprintf("service %s is %s", svc.Name, svc.State))
			case svc.Alive != nil && !*svc.Alive:
				why = append(why, fmt.Sprintf("service %s: process gone", svc.Name))
			case svc.Verified != nil && !*svc.Verified:
				why = append(why, fmt.Sprintf("service %s: ready check failing: %s", svc.Name, checkErr[svc.Name]))
			}
		}
	}
	if len(s.Notes) > 0 && s.State == "ready" {
		why = append(why, s.Notes...)
	}
	for _, j := range s.Jobs {
		healthy := 0
		if j.Summary != nil {
			// Workers holds only the problem ones: the summary counts.
			healthy = j.Summary.Healthy
		} else {
			for _, w := range j.Workers {
				if w.Healthy() {
					healthy++
				}
			}
		}
		switch {
		case j.Frozen:
			why = append(why, fmt.Sprintf("pool %s is frozen", j.Name))
		case j.Blocked != nil:
			if j.Blocked.Cause == controller.BlockedNoHeartbeat {
				why = append(why, fmt.Sprintf("pool %s is blocked: %d workers in a row never sent a heartbeat", j.Name, j.Blocked.FailedLaunches))
			} else {
				why = append(why, fmt.Sprintf("pool %s is blocked after %d failed launches", j.Name, j.Blocked.FailedLaunches))
			}
		case healthy != j.Desired:
			why = append(why, fmt.Sprintf("pool %s has %d healthy workers, wants %d", j.Name, healthy, j.Desired))
		case j.Counts["pending_launch"] > 0:
			why = append(why, fmt.Sprintf("pool %s is launching %d", j.Name, j.Counts["pending_launch"]))
		}
	}
	return why
}

// MarkChecks records the ready checks `status --verify` just ran: each
// checked service's Verified, and the checks themselves for --json.
func MarkChecks(s *RunStatus, checks []bootlevel.CheckResult) {
	if len(checks) == 0 {
		return
	}
	s.Checks = checks
	byName := map[string]bootlevel.CheckResult{}
	for _, c := range checks {
		byName[c.Service] = c
	}
	for i := range s.Levels {
		for j := range s.Levels[i].Services {
			svc := &s.Levels[i].Services[j]
			if c, ok := byName[svc.Name]; ok && c.Checked {
				v := c.OK
				svc.Verified = &v
			}
		}
	}
}
