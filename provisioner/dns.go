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

// DNSRecord is one A record a run wants in a zone: a worker's (one
// address) or a pool's (every healthy worker's).
type DNSRecord struct {
	Name      string
	Addresses []string // sorted, without duplicates
	TTL       int64
}

// DNSChanges says what a DNSZone.Sync changed, by record name.
type DNSChanges struct {
	Upserted, Deleted []string
}

// DNSZone keeps a run's A records in one hosted zone (internal/route53dns
// through the wiring). Records of other runs, and names the run does not
// own, are not its business: the zone refuses them.
type DNSZone interface {
	// Sync makes run's records in the zone exactly want. With full it
	// lists the zone first and repairs whatever differs: the periodic
	// reconcile's repair. Without, it changes only what differs from what
	// it last listed or wrote, batched into as few requests as the zone
	// allows: what follows each change, which must not list a zone of
	// thousands of records every time a worker starts.
	Sync(ctx context.Context, run string, want []DNSRecord, full bool) (DNSChanges, error)
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

// SyncDNS makes every DNS zone hold exactly the records the ledger wants,
// listing each zone and repairing what differs; Reconcile calls it. A
// record per running worker with a name and an address that the
// controller has judged healthy at least once (SetHealth), a pool record
// per job that has one (every worker judged healthy now), and none of the
// run's other records. It works from the ledger alone, so it repairs what
// a crash between a launch and its record left, and a replacement's record
// is never deleted by its predecessor's late cleanup. Errors are returned
// after every zone was tried; the next reconcile tries again.
func (p *Provisioner) SyncDNS(ctx context.Context) error { return p.syncDNS(ctx, true) }

// syncDNS is SyncDNS; without full each zone changes only the records that
// differ from what it last listed or wrote (DNSZone.Sync).
func (p *Provisioner) syncDNS(ctx context.Context, full bool) error {
	if len(p.cfg.DNS) == 0 {
		return nil
	}
	p.dnsMu.Lock()
	defer p.dnsMu.Unlock()
	recs, err := p.cfg.Store.Instances(ctx, Filter{LiveOnly: true})
	if err != nil {
		return fmt.Errorf("dns: list records: %w", err)
	}
	zones := map[DNSZone]map[string]*DNSRecord{}
	var order []DNSZone
	for _, job := range slices.Sorted(maps.Keys(p.cfg.DNS)) {
		z, d := p.cfg.DNS[job], p.cfg.Jobs[job].DNS
		if d == nil {
			continue
		}
		if zones[z] == nil {
			zones[z] = map[string]*DNSRecord{}
			order = append(order, z)
		}
		pool := ""
		if d.Pool != "" {
			if pool, err = jobspec.RenderName(d.Pool, job, p.cfg.Run, 0); err != nil {
				return fmt.Errorf("dns: job %s: %w", job, err)
			}
		}
		for _, r := range recs {
			if r.Job != job || r.State != nightshift.StateRunning || r.DNSName == "" || r.DNSAddress == "" || r.Health == "" {
				continue
			}
			zones[z][r.DNSName] = &DNSRecord{Name: r.DNSName, Addresses: []string{r.DNSAddress}, TTL: d.TTL}
			if pool != "" && r.Health == HealthHealthy {
				if zones[z][pool] == nil {
					zones[z][pool] = &DNSRecord{Name: pool, TTL: d.TTL}
				}
				zones[z][pool].Addresses = append(zones[z][pool].Addresses, r.DNSAddress)
			}
		}
	}
	var errs []error
	for _, z := range order {
		var want []DNSRecord
		for _, name := range slices.Sorted(maps.Keys(zones[z])) {
			w := zones[z][name]
			slices.Sort(w.Addresses)
			w.Addresses = slices.Compact(w.Addresses)
			want = append(want, *w)
		}
		ch, err := z.Sync(ctx, p.cfg.Run, want, full)
		for _, n := range ch.Upserted {
			p.log.Info("dns record set", "name", n)
		}
		for _, n := range ch.Deleted {
			p.log.Info("dns record deleted", "name", n)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("dns: %w", err))
		}
	}
	err = errors.Join(errs...)
	p.reportDNS(err)
	return err
}

// reportDNS logs the DNS state when it changes: a failure loudly (the
// workers run on, unnamed or under stale records, until it passes), and
// its end. Repeats of one failure are logged quietly.
func (p *Provisioner) reportDNS(err error) {
	if o, ok := p.cfg.Observer.(DNSObserver); ok {
		o.DNSSynced(err)
	}
	p.dnsErrMu.Lock()
	defer p.dnsErrMu.Unlock()
	switch {
	case err != nil && p.dnsErr == "":
		p.log.Error("dns records are not being kept: workers run, but their names may be missing or stale until this passes; retrying", "err", err)
	case err != nil && p.dnsErr != err.Error():
		p.log.Error("dns records are still not being kept; retrying", "err", err)
	case err != nil:
		p.log.Debug("dns records still not kept", "err", err)
	case p.dnsErr != "":
		p.log.Info("dns records are kept again")
	}
	p.dnsErr = ""
	if err != nil {
		p.dnsErr = err.Error()
	}
}

// DNSProblem is the last DNS sync's error ("" when it worked or no job has
// DNS), for status.
func (p *Provisioner) DNSProblem() string {
	p.dnsErrMu.Lock()
	defer p.dnsErrMu.Unlock()
	return p.dnsErr
}

// SetHealth records the controller's judgement of b.Job's running workers
// (Instance.Health) in the ledger and moves their DNS records: a worker
// gets its own record when first healthy and is in its pool record while
// healthy. Ids the provisioner does not hold as running workers of the
// job are stale news and ignored. Only the controller sends it, signed
// (provbus), so a worker cannot vouch for itself.
//
// The changes go to the ledger in one transaction (Store.SetHealths),
// which is all that holds mu: the first report on a pool of thousands
// must not stall the launches and terminations behind it. The DNS sync
// that follows holds no health lock and is shared (syncDNSSoon): while
// another caller syncs, SetHealth returns once its changes are recorded,
// and that caller's next sync moves their records.
func (p *Provisioner) SetHealth(ctx context.Context, b HealthBody) error {
	if _, ok := p.cfg.Jobs[b.Job]; !ok {
		return fmt.Errorf("health: %w: field \"job\": unknown job %q", ErrInvalid, b.Job)
	}
	healthy := make(map[string]bool, len(b.Healthy)+len(b.Unhealthy))
	for _, id := range b.Healthy {
		healthy[id] = true
	}
	for _, id := range b.Unhealthy {
		healthy[id] = false
	}
	set, err := p.setHealth(ctx, b.Job, healthy)
	if err != nil {
		return err
	}
	// After healthMu is released: the zone's calls (Route 53, seconds
	// each) must not hold up the next report, and the chunks of a pool's
	// report arriving meanwhile share one sync (syncDNSSoon).
	if len(set) > 0 && p.cfg.DNS[b.Job] != nil {
		p.syncDNSSoon(ctx)
	}
	return nil
}

// setHealth is SetHealth's ledger half: it records the judgements in
// healthy that change a running worker's Health, returning the ids set.
func (p *Provisioner) setHealth(ctx context.Context, job string, healthy map[string]bool) ([]string, error) {
	// Two reports read and written interleaved could leave a mix of both
	// that neither said.
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	// Read without mu: only SetHealth writes health (healthMu), and a
	// worker that leaves running meanwhile is skipped by the write's
	// compare-and-set.
	recs, err := p.cfg.Store.Instances(ctx, Filter{Job: job, LiveOnly: true})
	if err != nil {
		return nil, fmt.Errorf("health of job %s: %w", job, err)
	}
	next := map[string]string{}
	for _, r := range recs {
		h, ok := healthy[r.ID]
		if !ok || r.State != nightshift.StateRunning {
			continue
		}
		switch {
		case h:
			next[r.ID] = HealthHealthy
		case r.Health == HealthHealthy:
			next[r.ID] = HealthUnhealthy
		}
		if next[r.ID] == r.Health {
			delete(next, r.ID)
		}
	}
	if len(next) == 0 {
		return nil, nil
	}
	// The committer reads a record, applies a transition and writes it
	// under mu, and decides from the Health it read whether the change
	// moves a DNS record (movesDNS): a health written in between would
	// leave a record it never syncs away.
	p.mu.Lock()
	set, err := p.cfg.Store.SetHealths(ctx, job, next)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("health of job %s: %w", job, err)
	}
	for _, id := range set {
		p.log.Info("worker health recorded", "instance", id, "job", job, "health", next[id])
	}
	return set, nil
}

// syncDNSSoon runs an incremental sync (syncDNS) for changes already in
// the ledger. While one runs, it only marks the zones dirty and returns:
// the running caller syncs once more when done, and that sync reads the
// ledger after every change marked before it. So one sync at a time runs
// however many changes arrive (a pool over 10,000 reports its health in
// several chunks), and a burst costs at most two syncs, not one each. A
// failed sync is logged; the next reconcile repairs it.
func (p *Provisioner) syncDNSSoon(ctx context.Context) {
	p.dnsReqMu.Lock()
	p.dnsDirty = true
	if p.dnsRunning {
		p.dnsReqMu.Unlock()
		return
	}
	p.dnsRunning = true
	for p.dnsDirty && ctx.Err() == nil {
		p.dnsDirty = false
		p.dnsReqMu.Unlock()
		if err := p.syncDNS(ctx, false); err != nil {
			p.log.Warn("dns sync failed; the next reconcile retries", "err", err)
		}
		p.dnsReqMu.Lock()
	}
	// A cancelled caller leaves what is still dirty to the next change's
	// sync or the reconcile.
	p.dnsRunning = false
	p.dnsReqMu.Unlock()
}

// movesDNS reports whether a recorded change may move a record, so that
// the zones need an (incremental) sync: an instance of a job with DNS
// that the controller has judged (Health set) left running or ended. One
// never judged has no record yet (it gets one through SetHealth, which
// syncs), so its launch and its reaching running need no sync: a burst of
// N launches would otherwise read the whole ledger N times for nothing.
func (p *Provisioner) movesDNS(inst Instance) bool {
	if inst.DNSName == "" || inst.Health == "" || p.cfg.DNS[inst.Job] == nil {
		return false
	}
	return inst.State != nightshift.StateRequested && inst.State != nightshift.StatePending
}
