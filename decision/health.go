package decision

import (
	"time"

	"nightshift"
)

// HealthConfig holds the heartbeat timings Assess judges by. Zero fields
// take the defaults (see WithDefaults).
type HealthConfig struct {
	// HeartbeatInterval is how often sitters send heartbeats (default 1s).
	HeartbeatInterval time.Duration
	// MissingTimeout is how long a running worker may stay silent after a
	// heartbeat (default 3 heartbeat intervals).
	MissingTimeout time.Duration
	// BootTimeout is how long a running worker may take to send its first
	// heartbeat (default 60s).
	BootTimeout time.Duration
	// ZombieGrace is how long after an instance left running (terminating,
	// terminated, failed) its heartbeats are still accepted as the tail of
	// a normal shutdown (default MissingTimeout). Later ones mark a zombie.
	ZombieGrace time.Duration
	// MassSilencePercent: when more than this share of a pool's running
	// workers is silent (missing) at once, and at least MassSilenceMin,
	// the silence is blamed on what carries the heartbeats (the broker,
	// the controller, the network), not on the workers: they are not
	// replaced for BootTimeout, and an alert fires. Replacing them all
	// would add a whole pool's launches to an overloaded bus, as
	// Kubernetes' node controller stops evicting when a whole zone goes
	// NotReady. 100 turns it off (default 50).
	MassSilencePercent int
}

// Health defaults.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultMissingIntervals  = 3
	DefaultBootTimeout       = 60 * time.Second
	DefaultMassSilence       = 50
	// MassSilenceMin is the fewest silent workers that count as a mass
	// silence: in a small pool one dead worker is a large share.
	MassSilenceMin = 10
)

// WithDefaults fills zero fields with their defaults.
func (hc HealthConfig) WithDefaults() HealthConfig {
	if hc.HeartbeatInterval <= 0 {
		hc.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if hc.MissingTimeout <= 0 {
		hc.MissingTimeout = DefaultMissingIntervals * hc.HeartbeatInterval
	}
	if hc.BootTimeout <= 0 {
		hc.BootTimeout = DefaultBootTimeout
	}
	if hc.ZombieGrace <= 0 {
		hc.ZombieGrace = hc.MissingTimeout
	}
	if hc.MassSilencePercent <= 0 {
		hc.MassSilencePercent = DefaultMassSilence
	}
	return hc
}

// ParseHealthConfig reads a health table (heartbeat_interval,
// missing_timeout, boot_timeout, zombie_grace, mass_silence_percent),
// filling defaults.
func ParseHealthConfig(m map[string]any) (HealthConfig, error) {
	f := NewFields("health", m)
	var hc HealthConfig
	var err error
	if hc.HeartbeatInterval, err = f.Duration("heartbeat_interval", 0); err != nil {
		return hc, err
	}
	if hc.MissingTimeout, err = f.Duration("missing_timeout", 0); err != nil {
		return hc, err
	}
	if hc.BootTimeout, err = f.Duration("boot_timeout", 0); err != nil {
		return hc, err
	}
	if hc.ZombieGrace, err = f.Duration("zombie_grace", 0); err != nil {
		return hc, err
	}
	if n, ok, err := f.Int("mass_silence_percent"); err != nil {
		return hc, err
	} else if ok {
		if n < 1 || n > 100 {
			return hc, f.Errorf("mass_silence_percent", "%d: want 1..100 (100 turns the guard off)", n)
		}
		hc.MassSilencePercent = n
	}
	if err := f.Unknown(); err != nil {
		return hc, err
	}
	hc = hc.WithDefaults()
	if hc.MissingTimeout < hc.HeartbeatInterval {
		return hc, f.Errorf("missing_timeout", "%s must not be below heartbeat_interval %s", hc.MissingTimeout, hc.HeartbeatInterval)
	}
	return hc, nil
}

// InstanceView is the controller's heartbeat bookkeeping for one instance.
type InstanceView struct {
	ID    string
	State nightshift.InstanceState
	// StateSince is when the instance entered State. For a running
	// instance it starts the boot timer; for a terminating or finished one
	// it starts the zombie grace.
	StateSince time.Time
	// LastHeartbeat is when the last heartbeat arrived; zero if never.
	LastHeartbeat time.Time
	// FailedTasks names tasks the last heartbeat reported failed.
	FailedTasks []string
	// HeartbeatError is an error the last heartbeat reported (the sitter
	// could not inspect its tasks, say).
	HeartbeatError string
	// ProbeFailing names a running task whose health probe the last
	// heartbeat reported unhealthy, and the probe's last output.
	ProbeFailing string
}

// Assess judges an instance's health at now. The rules, in order:
//   - terminating, terminated or failed, with a heartbeat later than
//     ZombieGrace after it got there, and not silent for MissingTimeout
//     since: zombie (to be terminated again);
//   - not running: unknown (requested..started, or gone and quiet);
//   - running, heard before, silent for more than MissingTimeout: missing;
//   - running, never heard, running for more than BootTimeout: never_heard;
//   - running, never heard, within BootTimeout: booting;
//   - the last heartbeat reports a failed task or an error: process_error;
//   - the last heartbeat reports a task's probe unhealthy: probe_failed;
//   - otherwise ok.
func Assess(inst InstanceView, now time.Time, hc HealthConfig) nightshift.Health {
	hc = hc.WithDefaults()
	heard := !inst.LastHeartbeat.IsZero()
	switch inst.State {
	case nightshift.StateTerminating, nightshift.StateTerminated, nightshift.StateFailed:
		// A zombie is one that should be gone and still speaks: once it
		// has been silent for missing_timeout there is nothing left to
		// terminate again, and judging it a zombie for ever had the
		// engine re-terminate it every round.
		if heard && inst.LastHeartbeat.Sub(inst.StateSince) > hc.ZombieGrace && now.Sub(inst.LastHeartbeat) <= hc.MissingTimeout {
			return nightshift.HealthZombie
		}
		return nightshift.HealthUnknown
	case nightshift.StateRunning:
	default:
		return nightshift.HealthUnknown
	}
	if !heard {
		if now.Sub(inst.StateSince) > hc.BootTimeout {
			return nightshift.HealthNeverHeard
		}
		return nightshift.HealthBooting
	}
	if now.Sub(inst.LastHeartbeat) > hc.MissingTimeout {
		return nightshift.HealthMissing
	}
	if len(inst.FailedTasks) > 0 || inst.HeartbeatError != "" {
		return nightshift.HealthProcessError
	}
	if inst.ProbeFailing != "" {
		return nightshift.HealthProbeFailed
	}
	return nightshift.HealthOK
}
