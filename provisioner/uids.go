package provisioner

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"nightshift"
)

// assignUIDs gives each new instance the uid of its own its driver runs it
// under (UIDPicker), if any: none that a live record holds, whatever its
// job. The caller holds nameMu until the launch is recorded, so two
// launches never take one uid; the ledger's unique index is the backstop.
func (p *Provisioner) assignUIDs(ctx context.Context, spec json.RawMessage, insts []Instance) error {
	picker, ok := p.cfg.Driver.(UIDPicker)
	if !ok || len(insts) == 0 || insts[0].State != nightshift.StateRequested {
		return nil
	}
	// Read only when the driver wants uids for this launch: a burst of
	// launches that need none costs no scan of the live records.
	held := func() (map[uint32]bool, error) {
		live, err := p.cfg.Store.Instances(ctx, Filter{LiveOnly: true})
		if err != nil {
			return nil, err
		}
		out := map[uint32]bool{}
		for _, in := range live {
			if in.WorkerUID != 0 {
				out[in.WorkerUID] = true
			}
		}
		return out, nil
	}
	uids, err := picker.PickUIDs(ctx, spec, len(insts), held)
	if err != nil {
		return fmt.Errorf("worker uids: %w", err)
	}
	if uids == nil {
		return nil
	}
	if len(uids) != len(insts) {
		return fmt.Errorf("worker uids: driver gave %d for %d instances", len(uids), len(insts))
	}
	for k := range insts {
		insts[k].WorkerUID = uids[k]
	}
	return nil
}

// failUnlaunched records new instances as failed before any driver call.
func failUnlaunched(insts []Instance, now time.Time, reason string) {
	for k := range insts {
		insts[k].State, insts[k].Reason = nightshift.StateFailed, reason
		insts[k].History = []Change{{State: nightshift.StateFailed, Reason: reason, Time: now}}
	}
}
