package provisioner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"nightshift"
	"nightshift/internal/jobspec"
)

// DNSZone keeps a run's A records in one hosted zone (internal/route53dns
// through the wiring). Records of other runs, and names the run does not
// own, are not its business: the zone refuses them.
type DNSZone interface {
	// UpsertRecord points name at addrs with ttl.
	UpsertRecord(ctx context.Context, run, name string, addrs []string, ttl int64) error
	// DeleteRecord deletes run's record name; one already gone is no error.
	DeleteRecord(ctx context.Context, run, name string) error
	// RecordAddresses lists run's records in the zone: name to addresses.
	RecordAddresses(ctx context.Context, run string) (map[string][]string, error)
}

// assignDNSNames names each new instance of a job with a dns table: the
// lowest index no live worker of the job holds (jobspec.NextIndex), so a
// replacement takes over the name of the worker it replaces. The caller
// holds nameMu from here until the launch is recorded, so two launches of
// one job never take one index.
func (p *Provisioner) assignDNSNames(ctx context.Context, job string, insts []Instance) error {
	d := p.cfg.Jobs[job].DNS
	if d == nil {
		return nil
	}
	live, err := p.cfg.Store.Instances(ctx, Filter{Job: job, LiveOnly: true})
	if err != nil {
		return fmt.Errorf("dns names of job %s: %w", job, err)
	}
	held := map[string]bool{}
	for _, in := range live {
		if in.DNSName != "" {
			held[in.DNSName] = true
		}
	}
	var taken []int
	for i := 0; i < len(live)+len(insts); i++ {
		name, err := jobspec.RenderName(d.Name, job, p.cfg.Run, i)
		if err != nil {
			return fmt.Errorf("dns names of job %s: %w", job, err)
		}
		if held[name] {
			taken = append(taken, i)
		}
	}
	for k := range insts {
		i := jobspec.NextIndex(taken)
		name, err := jobspec.RenderName(d.Name, job, p.cfg.Run, i)
		if err != nil {
			return fmt.Errorf("dns names of job %s: %w", job, err)
		}
		insts[k].DNSName = name
		taken = append(taken, i)
	}
	return nil
}

// dnsAddress is the address a job's record holds for a driver's result.
func (p *Provisioner) dnsAddress(job, private, public string) string {
	d := p.cfg.Jobs[job].DNS
	if d == nil {
		return ""
	}
	if d.Address == jobspec.AddressPublic {
		return public
	}
	return private
}

// SyncDNS makes every DNS zone hold exactly the records the ledger wants:
// a record per running worker with a name and an address, a pool record
// per job that has one (every running worker's address), and none of the
// run's other records. It works from the ledger alone, so it repairs what
// a crash between a launch and its record left, and a replacement's record
// is never deleted by its predecessor's late cleanup. Running (not yet
// healthy) is what earns a record. Errors are returned after every zone was
// tried; the next reconcile tries again.
func (p *Provisioner) SyncDNS(ctx context.Context) error {
	if len(p.cfg.DNS) == 0 {
		return nil
	}
	p.dnsMu.Lock()
	defer p.dnsMu.Unlock()
	recs, err := p.cfg.Store.Instances(ctx, Filter{LiveOnly: true})
	if err != nil {
		return fmt.Errorf("dns: list records: %w", err)
	}
	type want struct {
		addrs []string
		ttl   int64
	}
	zones := map[DNSZone]map[string]*want{}
	for _, job := range slices.Sorted(maps.Keys(p.cfg.DNS)) {
		z, d := p.cfg.DNS[job], p.cfg.Jobs[job].DNS
		if d == nil {
			continue
		}
		if zones[z] == nil {
			zones[z] = map[string]*want{}
		}
		pool := ""
		if d.Pool != "" {
			if pool, err = jobspec.RenderName(d.Pool, job, p.cfg.Run, 0); err != nil {
				return fmt.Errorf("dns: job %s: %w", job, err)
			}
		}
		for _, r := range recs {
			if r.Job != job || r.State != nightshift.StateRunning || r.DNSName == "" || r.DNSAddress == "" {
				continue
			}
			zones[z][r.DNSName] = &want{addrs: []string{r.DNSAddress}, ttl: d.TTL}
			if pool != "" {
				if zones[z][pool] == nil {
					zones[z][pool] = &want{ttl: d.TTL}
				}
				zones[z][pool].addrs = append(zones[z][pool].addrs, r.DNSAddress)
			}
		}
	}
	var errs []error
	for z, wanted := range zones {
		have, err := z.RecordAddresses(ctx, p.cfg.Run)
		if err != nil {
			errs = append(errs, fmt.Errorf("dns: %w", err))
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(wanted)) {
			w := wanted[name]
			slices.Sort(w.addrs)
			w.addrs = slices.Compact(w.addrs)
			if cur, ok := have[name]; ok && slices.Equal(sorted(cur), w.addrs) {
				continue
			}
			if err := z.UpsertRecord(ctx, p.cfg.Run, name, w.addrs, w.ttl); err != nil {
				errs = append(errs, fmt.Errorf("dns: %w", err))
				continue
			}
			p.log.Info("dns record set", "name", name, "addresses", w.addrs)
		}
		for _, name := range slices.Sorted(maps.Keys(have)) {
			if wanted[name] != nil {
				continue
			}
			if err := z.DeleteRecord(ctx, p.cfg.Run, name); err != nil {
				errs = append(errs, fmt.Errorf("dns: %w", err))
				continue
			}
			p.log.Info("dns record deleted", "name", name)
		}
	}
	return errors.Join(errs...)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// dnsChanged syncs the records after a change that moves one: an instance
// of a job with DNS reached running or ended.
func (p *Provisioner) dnsChanged(ctx context.Context, inst Instance) {
	if inst.DNSName == "" || p.cfg.DNS[inst.Job] == nil {
		return
	}
	if inst.State != nightshift.StateRunning && inst.State.Live() {
		return
	}
	if err := p.SyncDNS(ctx); err != nil {
		p.log.Warn("dns sync failed; the next reconcile retries", "instance", inst.ID, "err", err)
	}
}
