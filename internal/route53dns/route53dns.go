// Package route53dns is Nightshift's one adapter to Amazon Route 53
// (aws-sdk-go-v2/service/route53). It owns which A records of a hosted zone
// are a run's: Route 53 has no tags per record, so beside each A record it
// writes a TXT ownership record at the same name, as external-dns does
// (`"heritage=nightshift,run=<run>"`). A sweep finds a run's records by
// those TXT records alone, so it works with the provisioner and its ledger
// gone, and a record without the run's TXT is never changed or deleted.
package route53dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"

	"nightshift/internal/backoff"
	"nightshift/internal/jobspec"
	"nightshift/provisioner"
)

// API is the narrow part of the Route 53 client Nightshift uses;
// *route53.Client satisfies it.
type API interface {
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
	ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error)
	ListHostedZonesByName(ctx context.Context, in *route53.ListHostedZonesByNameInput, opts ...func(*route53.Options)) (*route53.ListHostedZonesByNameOutput, error)
}

// Records is what the provisioner and teardown need of DNS; *Zone
// satisfies it, and tests may fake it.
type Records interface {
	Upsert(ctx context.Context, run string, r Record) error
	Delete(ctx context.Context, run, name string) error
	List(ctx context.Context, run string) ([]Record, error)
}

// Record is one A record of a run: a name and its addresses (one for a
// worker, every healthy worker's for a pool record).
type Record struct {
	Name      string   `json:"name"` // without the trailing dot, lower case
	Addresses []string `json:"addresses"`
	TTL       int64    `json:"ttl"`
}

// Config says how to reach Route 53. Credentials come from the standard
// chain (environment, profile, the instance profile through IMDS).
type Config struct {
	EndpointURL string // moto, or a Route 53-compatible endpoint
	Log         *slog.Logger
}

// NewAPI loads AWS configuration through config.LoadDefaultConfig. Route
// 53 is global; the region only signs requests, so us-east-1 stands in
// when none is configured.
func NewAPI(ctx context.Context, cfg Config) (API, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.EndpointURL != "" {
		opts = append(opts, config.WithBaseEndpoint(cfg.EndpointURL))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	return route53.NewFromConfig(awsCfg), nil
}

// Zone is one hosted zone's records, as a run sees them.
type Zone struct {
	api  API
	id   string
	name string // the zone's apex, lower case, no trailing dot
	log  *slog.Logger

	// mu serialises Sync, which owns the fields below.
	mu sync.Mutex
	// spec is what the plan named (an id or a name) for a zone NewZone
	// resolves lazily; resolveErr, failures and nextTry pace retries of a
	// zone that did not resolve.
	spec       string
	resolveErr error
	failures   int
	nextTry    time.Time
	// known is knownRun's records as Sync last listed or wrote them, the
	// exact sets Route 53 holds (a DELETE must repeat them exactly); nil
	// when not known (never listed, or a change failed). foreign are the
	// names the last listing found holding records that are not the run's.
	known    map[string]*sets
	knownRun string
	foreign  map[string]bool
	// retry paces retries of a throttled request; attempts bounds them;
	// sleep waits (tests stub it).
	retry    backoff.Policy
	attempts int
	sleep    func(ctx context.Context, d time.Duration) error
	now      func() time.Time
}

// sets are a name's A and TXT record sets as Route 53 holds them (either
// may be nil).
type sets struct{ a, txt *types.ResourceRecordSet }

// Route 53 allows 5 requests a second per account and answers more with
// Throttling (or PriorRequestNotComplete while a change is pending); a
// request so refused is retried on this curve, up to defaultAttempts in
// all, beyond the SDK's own few retries.
var defaultRetry = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}

const defaultAttempts = 8

// resolveRetry paces attempts to resolve a zone that did not resolve:
// each reconcile asks, but a missing zone is looked up no more often.
var resolveRetry = backoff.Policy{Initial: 10 * time.Second, Max: 10 * time.Minute}

// Route 53's limits of one ChangeResourceRecordSets: 1000 changes, 1000
// record values and 32000 characters of them, an UPSERT's counted twice.
const (
	maxChanges    = 1000
	maxValues     = 1000
	maxValueChars = 32000
)

// batchCost is what a group of changes counts against the limits.
type batchCost struct{ changes, values, chars int }

func costOf(changes []types.Change) batchCost {
	var c batchCost
	for _, ch := range changes {
		k := 1
		if ch.Action == types.ChangeActionUpsert {
			k = 2
		}
		c.changes++
		for _, v := range ch.ResourceRecordSet.ResourceRecords {
			c.values += k
			c.chars += k * len(aws.ToString(v.Value))
		}
	}
	return c
}

func (c batchCost) plus(d batchCost) batchCost {
	return batchCost{c.changes + d.changes, c.values + d.values, c.chars + d.chars}
}

func (c batchCost) fits() bool {
	return c.changes <= maxChanges && c.values <= maxValues && c.chars <= maxValueChars
}

func (z *Zone) defaults() {
	if z.attempts == 0 {
		z.retry, z.attempts = defaultRetry, defaultAttempts
	}
	if z.sleep == nil {
		z.sleep = sleepCtx
	}
	if z.now == nil {
		z.now = time.Now
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// zoneID is what a hosted zone id looks like (with or without the
// "/hostedzone/" prefix the API returns): upper-case letters and digits,
// no dot (AWS's start with Z, moto's need not); anything else in a plan's
// zone key is a zone's name.
var zoneID = regexp.MustCompile(`^(/hostedzone/)?[A-Z0-9]{1,32}$`)

// IsZoneID reports whether s is spelled as a hosted zone id rather than a
// zone name.
func IsZoneID(s string) bool { return zoneID.MatchString(s) }

// OpenZone resolves zone (a hosted zone id, or a zone name such as
// "example.internal") to one hosted zone. A name that two zones share
// (a public and a private one) is an error: say the id.
func OpenZone(ctx context.Context, api API, zone string, log *slog.Logger) (*Zone, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want := canonical(zone)
	if IsZoneID(zone) {
		want = ""
	}
	out, err := api.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: optional(want)})
	if err != nil {
		return nil, fmt.Errorf("route53: find hosted zone %s: %w", zone, err)
	}
	var found []types.HostedZone
	for _, hz := range out.HostedZones {
		id := strings.TrimPrefix(aws.ToString(hz.Id), "/hostedzone/")
		if want == "" && id == strings.TrimPrefix(zone, "/hostedzone/") || want != "" && canonical(aws.ToString(hz.Name)) == want {
			found = append(found, hz)
		}
	}
	switch {
	case len(found) == 0 && want == "" && out.IsTruncated:
		// Beyond the first page: trust the id; the first change says
		// whether it exists.
		return &Zone{api: api, id: strings.TrimPrefix(zone, "/hostedzone/"), log: log}, nil
	case len(found) == 0:
		return nil, fmt.Errorf("route53: %w %s", ErrNoZone, zone)
	case len(found) > 1:
		return nil, fmt.Errorf("route53: %d hosted zones are named %s: give the zone's id", len(found), zone)
	}
	hz := found[0]
	return &Zone{api: api, id: strings.TrimPrefix(aws.ToString(hz.Id), "/hostedzone/"), name: canonical(aws.ToString(hz.Name)), log: log}, nil
}

// ID is the hosted zone's id.
func (z *Zone) ID() string { return z.id }

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// canonical is a DNS name as this package compares it: lower case, no
// trailing dot.
func canonical(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// Owner is the TXT value that marks a record as run's.
func Owner(run string) string { return `"heritage=nightshift,run=` + run + `"` }

// ownerRun returns the run a TXT value names, or "" when it is no
// Nightshift ownership value.
func ownerRun(txt string) string {
	v, ok := strings.CutPrefix(strings.Trim(txt, `"`), "heritage=nightshift,run=")
	if !ok || strings.ContainsAny(v, `",`) {
		return ""
	}
	return v
}

// ErrNoZone is returned by OpenZone for a zone that does not exist: it
// holds no record of anyone's.
var ErrNoZone = errors.New("no hosted zone")

// ErrNotOwned is returned when a name already holds records that are not
// the run's: Nightshift never overwrites or deletes those.
var ErrNotOwned = errors.New("record is not the run's")

// nameSets returns the A and TXT record sets at name (either may be nil).
func (z *Zone) nameSets(ctx context.Context, name string) (a, txt *types.ResourceRecordSet, err error) {
	out, err := z.api.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{
		HostedZoneId: aws.String(z.id), StartRecordName: aws.String(name + "."), MaxItems: aws.Int32(10),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("route53: list records at %s: %w", name, err)
	}
	for i := range out.ResourceRecordSets {
		rs := &out.ResourceRecordSets[i]
		if canonical(aws.ToString(rs.Name)) != name || rs.SetIdentifier != nil {
			continue
		}
		switch rs.Type {
		case types.RRTypeA:
			a = rs
		case types.RRTypeTxt:
			txt = rs
		}
	}
	return a, txt, nil
}

func ownedBy(txt *types.ResourceRecordSet, run string) bool {
	if txt == nil {
		return false
	}
	for _, v := range txt.ResourceRecords {
		if ownerRun(aws.ToString(v.Value)) == run {
			return true
		}
	}
	return false
}

func (z *Zone) check(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("route53: record name %q: want 1-253 characters", name)
	}
	if z.name != "" && name != z.name && !strings.HasSuffix(name, "."+z.name) {
		return fmt.Errorf("route53: record %s is not in zone %s", name, z.name)
	}
	return nil
}

// Upsert creates or replaces run's A record r and its ownership TXT record
// in one change batch. A name that holds an A record without the run's
// TXT record is refused (ErrNotOwned).
func (z *Zone) Upsert(ctx context.Context, run string, r Record) error {
	name := canonical(r.Name)
	if err := z.check(name); err != nil {
		return err
	}
	if len(r.Addresses) == 0 {
		return fmt.Errorf("route53: record %s: no address", name)
	}
	if r.TTL <= 0 {
		return fmt.Errorf("route53: record %s: ttl %d: want > 0", name, r.TTL)
	}
	addrs := slices.Clone(r.Addresses)
	sort.Strings(addrs)
	addrs = slices.Compact(addrs)
	var values []types.ResourceRecord
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("route53: record %s: address %q: want an IPv4 address", name, a)
		}
		values = append(values, types.ResourceRecord{Value: aws.String(a)})
	}
	a, txt, err := z.nameSets(ctx, name)
	if err != nil {
		return err
	}
	if (a != nil || txt != nil) && !ownedBy(txt, run) {
		return fmt.Errorf("route53: upsert %s: %w", name, ErrNotOwned)
	}
	_, err = z.api.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(z.id),
		ChangeBatch: &types.ChangeBatch{
			Comment: aws.String("nightshift run " + run),
			Changes: []types.Change{
				{Action: types.ChangeActionUpsert, ResourceRecordSet: &types.ResourceRecordSet{
					Name: aws.String(name + "."), Type: types.RRTypeTxt, TTL: aws.Int64(r.TTL),
					ResourceRecords: []types.ResourceRecord{{Value: aws.String(Owner(run))}},
				}},
				{Action: types.ChangeActionUpsert, ResourceRecordSet: &types.ResourceRecordSet{
					Name: aws.String(name + "."), Type: types.RRTypeA, TTL: aws.Int64(r.TTL), ResourceRecords: values,
				}},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("route53: upsert %s: %w", name, err)
	}
	z.log.Info("dns record upserted", "name", name, "addresses", addrs, "ttl", r.TTL)
	return nil
}

// Delete deletes run's A record at name and its ownership TXT record. A
// name with nothing at it is no error (a worker terminated twice); one
// that is not the run's is refused (ErrNotOwned).
func (z *Zone) Delete(ctx context.Context, run, name string) error {
	name = canonical(name)
	a, txt, err := z.nameSets(ctx, name)
	if err != nil {
		return err
	}
	if a == nil && txt == nil {
		return nil
	}
	if !ownedBy(txt, run) {
		return fmt.Errorf("route53: delete %s: %w", name, ErrNotOwned)
	}
	// Route 53 deletes only an exact match, so the sets go back as listed.
	changes := []types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: txt}}
	if a != nil {
		changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: a})
	}
	_, err = z.api.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(z.id),
		ChangeBatch:  &types.ChangeBatch{Comment: aws.String("nightshift run " + run), Changes: changes},
	})
	if err != nil {
		return fmt.Errorf("route53: delete %s: %w", name, err)
	}
	z.log.Info("dns record deleted", "name", name)
	return nil
}

// List returns every A record of run in the zone, found by the run's
// ownership TXT records, sorted by name. A name whose TXT record is the
// run's but whose A record is gone is listed with no address, so a sweep
// deletes the TXT record too.
func (z *Zone) List(ctx context.Context, run string) ([]Record, error) {
	byName, err := z.listSets(ctx)
	if err != nil {
		return nil, err
	}
	var out []Record
	for n, p := range byName {
		if !ownedBy(p.txt, run) {
			continue
		}
		out = append(out, p.record(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// record is the Record a name's owned sets hold.
func (p *sets) record(name string) Record {
	r := Record{Name: name, TTL: aws.ToInt64(p.txt.TTL)}
	if p.a != nil {
		r.TTL = aws.ToInt64(p.a.TTL)
		for _, v := range p.a.ResourceRecords {
			r.Addresses = append(r.Addresses, aws.ToString(v.Value))
		}
		sort.Strings(r.Addresses)
	}
	return r
}

// listSets lists the zone's plain A and TXT record sets by name: every
// page, each retried while throttled.
func (z *Zone) listSets(ctx context.Context) (map[string]*sets, error) {
	z.defaults()
	byName := map[string]*sets{}
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.id)}
	for {
		var page *route53.ListResourceRecordSetsOutput
		err := z.throttled(ctx, "list records", func() error {
			var err error
			page, err = z.api.ListResourceRecordSets(ctx, in)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("route53: list records of zone %s: %w", z.id, err)
		}
		for i := range page.ResourceRecordSets {
			rs := page.ResourceRecordSets[i]
			if rs.SetIdentifier != nil || (rs.Type != types.RRTypeA && rs.Type != types.RRTypeTxt) {
				continue
			}
			n := canonical(aws.ToString(rs.Name))
			if byName[n] == nil {
				byName[n] = &sets{}
			}
			if rs.Type == types.RRTypeA {
				byName[n].a = &rs
			} else {
				byName[n].txt = &rs
			}
		}
		if !page.IsTruncated {
			return byName, nil
		}
		in = &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.id),
			StartRecordName: page.NextRecordName, StartRecordType: page.NextRecordType, StartRecordIdentifier: page.NextRecordIdentifier}
	}
}

// throttled runs call, again after a back-off while Route 53 answers that
// it is throttling the account, up to the zone's attempts.
func (z *Zone) throttled(ctx context.Context, what string, call func() error) error {
	z.defaults()
	for failures := 1; ; failures++ {
		err := call()
		if err == nil || !isThrottle(err) || failures >= z.attempts {
			return err
		}
		d := z.retry.Delay(failures, rand.Float64())
		z.log.Warn("route53 throttled the request; backing off", "zone", z.id, "request", what, "delay", d, "attempt", failures, "err", err)
		if serr := z.sleep(ctx, d); serr != nil {
			return fmt.Errorf("%w (backing off after: %w)", serr, err)
		}
	}
}

// isThrottle reports whether err is Route 53 refusing a request for its
// rate, not for what it asks.
func isThrottle(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded", "TooManyRequestsException":
		return true
	}
	return false
}

// DeleteRun deletes every record of run in the zone (with dryRun, only
// lists them) and returns what it deleted and what a fresh list still
// shows.
func (z *Zone) DeleteRun(ctx context.Context, run string, dryRun bool) (deleted, remaining []string, err error) {
	recs, err := z.List(ctx, run)
	if err != nil {
		return nil, nil, err
	}
	if dryRun {
		for _, r := range recs {
			deleted = append(deleted, describe(r))
		}
		return deleted, nil, nil
	}
	var errs []error
	for _, r := range recs {
		if err := z.Delete(ctx, run, r.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, describe(r))
	}
	left, err := z.List(ctx, run)
	if err != nil {
		return deleted, nil, errors.Join(append(errs, err)...)
	}
	for _, r := range left {
		remaining = append(remaining, describe(r))
	}
	return deleted, remaining, errors.Join(errs...)
}

func describe(r Record) string {
	if len(r.Addresses) == 0 {
		return r.Name + " (TXT only)"
	}
	return r.Name + " (" + strings.Join(r.Addresses, ",") + ")"
}

// Sweeper deletes a run's records in one zone at teardown; it satisfies
// mgmt.Sweeper.
type Sweeper struct {
	Zone *Zone
}

// Name implements mgmt.Sweeper.
func (w Sweeper) Name() string { return "dns-record (zone " + w.Zone.id + ")" }

// Sweep implements mgmt.Sweeper. A zone it could not list is reported
// remaining: not knowing is not "none left".
func (w Sweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	destroyed, remaining, err = w.Zone.DeleteRun(ctx, run, dryRun)
	if err != nil && len(remaining) == 0 && !dryRun {
		remaining = []string{"zone " + w.Zone.id + " (not listed)"}
	}
	return destroyed, remaining, err
}

// Unreachable stands for a zone teardown could not open: it reports the
// zone remaining, so teardown exits non-zero rather than claim no record
// is left. It satisfies mgmt.Sweeper.
type Unreachable struct {
	Zone string
	Err  error
}

// Name implements mgmt.Sweeper.
func (u Unreachable) Name() string { return "dns-record (zone " + u.Zone + ")" }

// Sweep implements mgmt.Sweeper.
func (u Unreachable) Sweep(context.Context, string, bool) (destroyed, remaining []string, err error) {
	return nil, []string{"zone " + u.Zone + " (not opened)"}, u.Err
}

// NewZone returns the zone that spec (a hosted zone id, or a zone name)
// names, resolved when first used rather than now: a zone that does not
// resolve (yet, or for a while) fails each Sync with the reason, and is
// looked up again on a back-off, so the provisioner runs its pools
// meanwhile instead of failing to start.
func NewZone(api API, spec string, log *slog.Logger) *Zone {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Zone{api: api, spec: spec, log: log}
}

// Resolve resolves a zone NewZone returned, unless it is resolved already
// or its last failure's back-off has not run out (that failure is
// returned again).
func (z *Zone) Resolve(ctx context.Context) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.resolve(ctx)
}

func (z *Zone) resolve(ctx context.Context) error {
	z.defaults()
	if z.id != "" {
		return nil
	}
	if now := z.now(); now.Before(z.nextTry) {
		return fmt.Errorf("%w (next look-up in %s)", z.resolveErr, z.nextTry.Sub(now).Round(time.Second))
	}
	var got *Zone
	err := z.throttled(ctx, "find hosted zone", func() error {
		var err error
		got, err = OpenZone(ctx, z.api, z.spec, z.log)
		return err
	})
	if err != nil {
		z.failures++
		z.resolveErr = err
		z.nextTry = z.now().Add(resolveRetry.Delay(z.failures, 0))
		return err
	}
	if z.failures > 0 {
		z.log.Info("hosted zone resolved", "zone", z.spec, "id", got.id)
	}
	z.id, z.name, z.failures, z.resolveErr = got.id, got.name, 0, nil
	return nil
}

// Sync implements provisioner.DNSZone: it makes run's records in the zone
// exactly want. With full, or when it does not know what the zone holds,
// it lists the zone first; otherwise it trusts what it last listed or
// wrote and sends only the differences. Changes go in batches of at most
// maxChanges, each name's A and TXT sets in one batch; a name the run
// does not know as its own is CREATEd unless the zone was just listed, so
// a record someone else wrote since fails the batch instead of being
// overwritten.
// A failed incremental sync lists the zone and tries once more. A name
// that holds records not the run's is refused (ErrNotOwned) and the rest
// is still done.
func (z *Zone) Sync(ctx context.Context, run string, want []provisioner.DNSRecord, full bool) (provisioner.DNSChanges, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if err := z.resolve(ctx); err != nil {
		return provisioner.DNSChanges{}, err
	}
	listed := full || z.known == nil || z.knownRun != run
	ch, err := z.sync(ctx, run, want, listed)
	if err != nil && !listed && ctx.Err() == nil {
		z.log.Info("dns records were not what was last seen; listing the zone", "zone", z.id, "err", err)
		more, err2 := z.sync(ctx, run, want, true)
		ch.Upserted = append(ch.Upserted, more.Upserted...)
		ch.Deleted = append(ch.Deleted, more.Deleted...)
		err = err2
	}
	return ch, err
}

func (z *Zone) sync(ctx context.Context, run string, want []provisioner.DNSRecord, list bool) (provisioner.DNSChanges, error) {
	var ch provisioner.DNSChanges
	if list {
		byName, err := z.listSets(ctx)
		if err != nil {
			z.known = nil
			return ch, err
		}
		z.known, z.knownRun, z.foreign = map[string]*sets{}, run, map[string]bool{}
		for n, p := range byName {
			if ownedBy(p.txt, run) {
				z.known[n] = p
			} else {
				z.foreign[n] = true
			}
		}
	}
	type group struct {
		name    string
		del     bool
		changes []types.Change
		after   *sets // what the name holds once the group is applied; nil: nothing
	}
	var groups []group
	var errs []error
	wanted := map[string]bool{}
	for _, w := range want {
		name := canonical(w.Name)
		wanted[name] = true
		a, txt, err := z.recordSets(run, name, w.Addresses, w.TTL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cur := z.known[name]
		if cur != nil && cur.a != nil && cur.txt != nil && sameSet(cur.a, a) && aws.ToInt64(cur.txt.TTL) == w.TTL {
			continue
		}
		action := types.ChangeActionUpsert
		if cur == nil {
			if z.foreign[name] {
				errs = append(errs, fmt.Errorf("route53: upsert %s: %w", name, ErrNotOwned))
				continue
			}
			// Not looked at just now: CREATE, which Route 53 refuses
			// if anything is there, so nobody's record is overwritten.
			// Just listed empty, UPSERT (as moto refuses re-creating a
			// record identical to one deleted earlier).
			if !list {
				action = types.ChangeActionCreate
			}
		}
		groups = append(groups, group{name: name, after: &sets{a: a, txt: txt}, changes: []types.Change{
			{Action: action, ResourceRecordSet: txt}, {Action: action, ResourceRecordSet: a},
		}})
	}
	for _, name := range slices.Sorted(maps.Keys(z.known)) {
		if wanted[name] {
			continue
		}
		cur := z.known[name]
		// Route 53 deletes only an exact match, so the sets go back as
		// last seen.
		g := group{name: name, del: true, changes: []types.Change{{Action: types.ChangeActionDelete, ResourceRecordSet: cur.txt}}}
		if cur.a != nil {
			g.changes = append(g.changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: cur.a})
		}
		groups = append(groups, g)
	}
	for len(groups) > 0 {
		// As many groups as fit Route 53's limits, and at least one (a
		// pool record too big for one request fails on its own).
		n, cost := 1, costOf(groups[0].changes)
		for n < len(groups) {
			next := cost.plus(costOf(groups[n].changes))
			if !next.fits() {
				break
			}
			cost, n = next, n+1
		}
		batch := groups[:n]
		groups = groups[n:]
		var changes []types.Change
		for _, g := range batch {
			changes = append(changes, g.changes...)
		}
		err := z.throttled(ctx, "change records", func() error {
			_, err := z.api.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
				HostedZoneId: aws.String(z.id),
				ChangeBatch:  &types.ChangeBatch{Comment: aws.String("nightshift run " + run), Changes: changes},
			})
			return err
		})
		if err != nil {
			// What the zone holds is no longer known: the next sync lists it.
			z.known = nil
			errs = append(errs, fmt.Errorf("route53: change %d records of zone %s: %w", len(batch), z.id, err))
			break
		}
		for _, g := range batch {
			if g.del {
				delete(z.known, g.name)
				ch.Deleted = append(ch.Deleted, g.name)
				continue
			}
			z.known[g.name] = g.after
			ch.Upserted = append(ch.Upserted, g.name)
		}
	}
	return ch, errors.Join(errs...)
}

// recordSets are the A and TXT sets run's record name holds when it points
// at addrs with ttl, or why it cannot.
func (z *Zone) recordSets(run, name string, addrs []string, ttl int64) (a, txt *types.ResourceRecordSet, err error) {
	if err := z.check(name); err != nil {
		return nil, nil, err
	}
	if len(addrs) == 0 {
		return nil, nil, fmt.Errorf("route53: record %s: no address", name)
	}
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("route53: record %s: ttl %d: want > 0", name, ttl)
	}
	addrs = slices.Clone(addrs)
	sort.Strings(addrs)
	addrs = slices.Compact(addrs)
	var values []types.ResourceRecord
	for _, v := range addrs {
		ip, err := netip.ParseAddr(v)
		if err != nil || !ip.Is4() {
			return nil, nil, fmt.Errorf("route53: record %s: address %q: want an IPv4 address", name, v)
		}
		values = append(values, types.ResourceRecord{Value: aws.String(v)})
	}
	return &types.ResourceRecordSet{Name: aws.String(name + "."), Type: types.RRTypeA, TTL: aws.Int64(ttl), ResourceRecords: values},
		&types.ResourceRecordSet{Name: aws.String(name + "."), Type: types.RRTypeTxt, TTL: aws.Int64(ttl),
			ResourceRecords: []types.ResourceRecord{{Value: aws.String(Owner(run))}}}, nil
}

// sameSet reports whether two A sets hold the same addresses with the
// same TTL.
func sameSet(x, y *types.ResourceRecordSet) bool {
	vals := func(rs *types.ResourceRecordSet) []string {
		var out []string
		for _, v := range rs.ResourceRecords {
			out = append(out, aws.ToString(v.Value))
		}
		slices.Sort(out)
		return out
	}
	return aws.ToInt64(x.TTL) == aws.ToInt64(y.TTL) && slices.Equal(vals(x), vals(y))
}

// RecordAddresses is List as name to addresses; a name with only its TXT
// record left has none.
func (z *Zone) RecordAddresses(ctx context.Context, run string) (map[string][]string, error) {
	recs, err := z.List(ctx, run)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(recs))
	for _, r := range recs {
		out[r.Name] = r.Addresses
	}
	return out, nil
}

// JobZones returns the hosted zone of every job with a dns table, reached
// at the endpoint of the job's instance table (endpoint_url: moto, or ""
// for AWS). Jobs naming one zone at one endpoint share one *Zone, so the
// provisioner syncs the zone's records as one set. Each zone is looked up
// now, but one that does not resolve is no error: it is logged, and Sync
// reports it and looks again (NewZone), so the provisioner starts and runs
// its pools rather than fail and be restarted in a loop.
func JobZones(ctx context.Context, jobs map[string]jobspec.Spec, log *slog.Logger) (map[string]*Zone, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	type key struct{ endpoint, zone string }
	apis := map[string]API{}
	zones := map[key]*Zone{}
	out := map[string]*Zone{}
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		d := jobs[job].DNS
		if d == nil {
			continue
		}
		endpoint, _ := jobs[job].Instance["endpoint_url"].(string)
		k := key{endpoint, canonical(d.Zone)}
		if IsZoneID(d.Zone) {
			k.zone = strings.TrimPrefix(d.Zone, "/hostedzone/")
		}
		if z := zones[k]; z != nil {
			out[job] = z
			continue
		}
		api := apis[endpoint]
		if api == nil {
			var err error
			if api, err = NewAPI(ctx, Config{EndpointURL: endpoint, Log: log}); err != nil {
				return nil, fmt.Errorf("job %s: dns: %w", job, err)
			}
			apis[endpoint] = api
		}
		z := NewZone(api, d.Zone, log)
		if err := z.Resolve(ctx); err != nil {
			log.Error("dns: hosted zone not resolved: the job's workers run without DNS records until it is; looking again on a back-off",
				"job", job, "zone", d.Zone, "err", err)
		}
		zones[k], out[job] = z, z
	}
	return out, nil
}
