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
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"nightshift/internal/jobspec"
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
	type pair struct{ a, txt *types.ResourceRecordSet }
	byName := map[string]*pair{}
	p := route53.NewListResourceRecordSetsPaginator(z.api, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.id)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
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
				byName[n] = &pair{}
			}
			if rs.Type == types.RRTypeA {
				byName[n].a = &rs
			} else {
				byName[n].txt = &rs
			}
		}
	}
	var out []Record
	for n, p := range byName {
		if !ownedBy(p.txt, run) {
			continue
		}
		r := Record{Name: n, TTL: aws.ToInt64(p.txt.TTL)}
		if p.a != nil {
			r.TTL = aws.ToInt64(p.a.TTL)
			for _, v := range p.a.ResourceRecords {
				r.Addresses = append(r.Addresses, aws.ToString(v.Value))
			}
			sort.Strings(r.Addresses)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
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

// UpsertRecord, DeleteRecord and RecordAddresses make a Zone the
// provisioner's DNSZone.

// UpsertRecord is Upsert of one record.
func (z *Zone) UpsertRecord(ctx context.Context, run, name string, addrs []string, ttl int64) error {
	return z.Upsert(ctx, run, Record{Name: name, Addresses: addrs, TTL: ttl})
}

// DeleteRecord is Delete.
func (z *Zone) DeleteRecord(ctx context.Context, run, name string) error {
	return z.Delete(ctx, run, name)
}

// RecordAddresses is List as name to addresses; a name with only its TXT
// record left has none, so the provisioner deletes or rewrites it.
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

// JobZones opens the hosted zone of every job with a dns table, reached
// at the endpoint of the job's instance table (endpoint_url: moto, or ""
// for AWS). Jobs naming one zone at one endpoint share one *Zone, so the
// provisioner syncs the zone's records as one set.
func JobZones(ctx context.Context, jobs map[string]jobspec.Spec, log *slog.Logger) (map[string]*Zone, error) {
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
		z, err := OpenZone(ctx, api, d.Zone, log)
		if err != nil {
			return nil, fmt.Errorf("job %s: dns: %w", job, err)
		}
		zones[k], out[job] = z, z
	}
	return out, nil
}
