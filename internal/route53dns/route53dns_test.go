package route53dns_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/aws/smithy-go"

	"nightshift/internal/backoff"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/jobspec"
	"nightshift/internal/route53dns"
	"nightshift/provisioner"
)

func newID() string {
	b := make([]byte, 5)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newZone creates a fresh hosted zone in moto (tests share one moto) and
// returns the raw client and the zone's name.
func newZone(t *testing.T) (route53dns.API, string, string) {
	t.Helper()
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	api, err := route53dns.NewAPI(ctx, route53dns.Config{EndpointURL: u})
	if err != nil {
		t.Fatal(err)
	}
	name := "z" + newID() + ".example.internal"
	out, err := api.(*route53.Client).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name: aws.String(name), CallerReference: aws.String(newID()),
	})
	if err != nil {
		t.Fatal(err)
	}
	return api, aws.ToString(out.HostedZone.Id), name
}

func names(recs []route53dns.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Name)
	}
	return out
}

// A run's records are found by their TXT owners, moved by upsert, and
// deleted by a sweep; another run's and a foreign record are left alone.
func TestRecordsFollowUpsertDeleteAndSweep(t *testing.T) {
	api, id, zname := newZone(t)
	ctx := context.Background()
	for _, spec := range []string{id, zname, zname + "."} {
		z, err := route53dns.OpenZone(ctx, api, spec, nil)
		if err != nil {
			t.Fatalf("OpenZone(%s): %v", spec, err)
		}
		if "/hostedzone/"+z.ID() != id && z.ID() != id {
			t.Fatalf("OpenZone(%s) = %s, want %s", spec, z.ID(), id)
		}
	}
	if _, err := route53dns.OpenZone(ctx, api, "nope-"+newID()+".invalid", nil); err == nil {
		t.Fatal("OpenZone of a zone that does not exist: no error")
	}
	z, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, other := "r"+newID(), "r"+newID()
	w0 := "web-0." + run + "." + zname
	w1 := "web-1." + run + "." + zname
	pool := "web." + run + "." + zname
	for _, r := range []route53dns.Record{
		{Name: w0, Addresses: []string{"10.0.0.1"}, TTL: 60},
		{Name: w1, Addresses: []string{"10.0.0.2"}, TTL: 60},
		{Name: pool, Addresses: []string{"10.0.0.2", "10.0.0.1"}, TTL: 30},
	} {
		if err := z.Upsert(ctx, run, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Upsert(ctx, other, route53dns.Record{Name: "x." + other + "." + zname, Addresses: []string{"10.9.9.9"}, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	foreign := "hand-made." + zname
	_, err = api.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(id), ChangeBatch: &types.ChangeBatch{Changes: []types.Change{{
		Action: types.ChangeActionCreate, ResourceRecordSet: &types.ResourceRecordSet{Name: aws.String(foreign + "."), Type: types.RRTypeA, TTL: aws.Int64(300),
			ResourceRecords: []types.ResourceRecord{{Value: aws.String("192.0.2.1")}}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}

	// A replacement takes the name: the same name, a new address.
	if err := z.Upsert(ctx, run, route53dns.Record{Name: w1, Addresses: []string{"10.0.0.3"}, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	got, err := z.List(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted by name: "web-0." sorts before "web.".
	want := []route53dns.Record{
		{Name: w0, Addresses: []string{"10.0.0.1"}, TTL: 60},
		{Name: w1, Addresses: []string{"10.0.0.3"}, TTL: 60},
		{Name: pool, Addresses: []string{"10.0.0.1", "10.0.0.2"}, TTL: 30},
	}
	if len(got) != len(want) {
		t.Fatalf("List = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || !slices.Equal(got[i].Addresses, want[i].Addresses) || got[i].TTL != want[i].TTL {
			t.Errorf("List[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}

	// Nightshift never takes over or deletes a name that is not the run's.
	if err := z.Upsert(ctx, run, route53dns.Record{Name: foreign, Addresses: []string{"10.0.0.9"}, TTL: 60}); !errors.Is(err, route53dns.ErrNotOwned) {
		t.Errorf("Upsert over a foreign record: %v, want ErrNotOwned", err)
	}
	if err := z.Delete(ctx, run, foreign); !errors.Is(err, route53dns.ErrNotOwned) {
		t.Errorf("Delete of a foreign record: %v, want ErrNotOwned", err)
	}
	if err := z.Upsert(ctx, run, route53dns.Record{Name: "x." + other + "." + zname, Addresses: []string{"10.0.0.9"}, TTL: 60}); !errors.Is(err, route53dns.ErrNotOwned) {
		t.Errorf("Upsert over another run's record: %v, want ErrNotOwned", err)
	}

	// Scale in: one record deleted, twice is no error.
	for range 2 {
		if err := z.Delete(ctx, run, w0); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = z.List(ctx, run)
	if !slices.Equal(names(got), []string{w1, pool}) {
		t.Fatalf("after delete: %v", names(got))
	}

	// The sweep: a dry run deletes nothing; the real one leaves none.
	listed, _, err := route53dns.Sweeper{Zone: z}.Sweep(ctx, run, true)
	if err != nil || len(listed) != 2 {
		t.Fatalf("dry sweep = %v, %v", listed, err)
	}
	deleted, remaining, err := route53dns.Sweeper{Zone: z}.Sweep(ctx, run, false)
	if err != nil || len(deleted) != 2 || len(remaining) != 0 {
		t.Fatalf("sweep = %v, %v, %v", deleted, remaining, err)
	}
	if got, _ := z.List(ctx, run); len(got) != 0 {
		t.Fatalf("after sweep: %v", got)
	}
	if got, _ := z.List(ctx, other); len(got) != 1 {
		t.Fatalf("the other run's records after the sweep: %v", got)
	}
	out, err := api.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	foundForeign := false
	for _, rs := range out.ResourceRecordSets {
		if aws.ToString(rs.Name) == foreign+"." {
			foundForeign = true
		}
	}
	if !foundForeign {
		t.Error("the sweep deleted a record that was not the run's")
	}
}

func TestUpsertRefusesBadRecords(t *testing.T) {
	api, _, zname := newZone(t)
	ctx := context.Background()
	z, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    route53dns.Record
	}{
		{"no address", route53dns.Record{Name: "a." + zname, TTL: 60}},
		{"ipv6", route53dns.Record{Name: "a." + zname, Addresses: []string{"::1"}, TTL: 60}},
		{"not an address", route53dns.Record{Name: "a." + zname, Addresses: []string{"ip-10-0-0-1"}, TTL: 60}},
		{"zero ttl", route53dns.Record{Name: "a." + zname, Addresses: []string{"10.0.0.1"}}},
		{"outside the zone", route53dns.Record{Name: "a.elsewhere.invalid", Addresses: []string{"10.0.0.1"}, TTL: 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := z.Upsert(ctx, "run", tc.r); err == nil {
				t.Fatalf("Upsert(%+v): no error", tc.r)
			}
		})
	}
}

func TestOwnerValueIsExternalDNSStyle(t *testing.T) {
	if got := route53dns.Owner("prod"); got != `"heritage=nightshift,run=prod"` {
		t.Fatalf("Owner = %s", got)
	}
}

// Jobs naming one zone share one *Zone (the provisioner syncs a zone's
// records as one set); a job without a dns table gets none; a zone that
// does not resolve is no error at start (the provisioner must start and
// run its pools): each Sync reports it, and once it exists, and its
// back-off has run out, Sync finds it and writes the records.
func TestJobZones(t *testing.T) {
	raw, _, zname := newZone(t)
	ctx := context.Background()
	u := ec2test.URL(t)
	dns := func(zone string) *jobspec.DNS {
		return &jobspec.DNS{Zone: zone, Name: "${job}-${index}." + zname, TTL: 60, Address: "private"}
	}
	inst := map[string]any{"endpoint_url": u}
	zs, err := route53dns.JobZones(ctx, map[string]jobspec.Spec{
		"a": {Instance: inst, DNS: dns(zname)}, "b": {Instance: inst, DNS: dns(zname + ".")}, "c": {Instance: inst},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 2 || zs["a"] == nil || zs["a"] != zs["b"] {
		t.Fatalf("zones %v: want a and b sharing one", zs)
	}

	missing := "missing-" + newID() + ".example.internal"
	zs, err = route53dns.JobZones(ctx, map[string]jobspec.Spec{"web": {Instance: inst, DNS: dns(missing)}}, nil)
	if err != nil || zs["web"] == nil {
		t.Fatalf("JobZones with a zone that does not resolve = %v, %v; want the zone, to resolve later", zs, err)
	}
	z := zs["web"]
	now := time.Now()
	route53dns.SetRetry(z, backoff.Policy{}, 1, nil, func() time.Time { return now })
	rec := []provisioner.DNSRecord{{Name: "web-0." + missing, Addresses: []string{"10.0.0.1"}, TTL: 60}}
	if _, err := z.Sync(ctx, "r1", rec, false); !errors.Is(err, route53dns.ErrNoZone) {
		t.Fatalf("Sync into a zone that does not exist: %v, want ErrNoZone", err)
	}
	if _, err := raw.(*route53.Client).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name: aws.String(missing), CallerReference: aws.String(newID()),
	}); err != nil {
		t.Fatal(err)
	}
	// Within the back-off the zone is not looked up again ...
	if _, err := z.Sync(ctx, "r1", rec, false); !errors.Is(err, route53dns.ErrNoZone) || !strings.Contains(err.Error(), "next look-up in") {
		t.Fatalf("Sync within the back-off: %v, want the last failure again", err)
	}
	// ... and after it, it is, and the records follow.
	now = now.Add(time.Hour)
	if ch, err := z.Sync(ctx, "r1", rec, false); err != nil || len(ch.Upserted) != 1 {
		t.Fatalf("Sync once the zone exists = %+v, %v", ch, err)
	}
	if got, err := z.RecordAddresses(ctx, "r1"); err != nil || len(got["web-0."+missing]) != 1 {
		t.Fatalf("records = %v, %v", got, err)
	}
}

// countAPI counts a zone's requests and answers changes from a script of
// errors first.
type countAPI struct {
	route53dns.API
	lists, changes int
	fail           []error
	sizes          []int
	strictCreate   bool
}

func (c *countAPI) ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error) {
	c.lists++
	return c.API.ListResourceRecordSets(ctx, in, opts...)
}

func (c *countAPI) ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error) {
	c.changes++
	if c.strictCreate {
		// moto lets a CREATE overwrite a set that exists; Route 53 refuses
		// the whole batch, and the zone's safety rests on that.
		for _, ch := range in.ChangeBatch.Changes {
			if ch.Action != types.ChangeActionCreate {
				continue
			}
			rs := ch.ResourceRecordSet
			out, err := c.API.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: in.HostedZoneId,
				StartRecordName: rs.Name, StartRecordType: rs.Type, MaxItems: aws.Int32(1)})
			if err != nil {
				return nil, err
			}
			if len(out.ResourceRecordSets) > 0 && aws.ToString(out.ResourceRecordSets[0].Name) == aws.ToString(rs.Name) && out.ResourceRecordSets[0].Type == rs.Type {
				return nil, &smithy.GenericAPIError{Code: "InvalidChangeBatch", Message: "Tried to create resource record set " + aws.ToString(rs.Name) + " but it already exists"}
			}
		}
	}
	if len(c.fail) > 0 {
		err := c.fail[0]
		c.fail = c.fail[1:]
		return nil, err
	}
	// Route 53 counts an UPSERT's values twice against its 1000.
	values := 0
	for _, ch := range in.ChangeBatch.Changes {
		k := 1
		if ch.Action == types.ChangeActionUpsert {
			k = 2
		}
		values += k * len(ch.ResourceRecordSet.ResourceRecords)
	}
	c.sizes = append(c.sizes, values)
	return c.API.ChangeResourceRecordSets(ctx, in, opts...)
}

// Sync lists the zone only when asked to (or when it knows nothing yet),
// sends only what changed, batches at most 1000 changes a request, and
// refuses a foreign name while doing the rest.
func TestSyncIsIncrementalAndBatched(t *testing.T) {
	raw, id, zname := newZone(t)
	api := &countAPI{API: raw}
	ctx := context.Background()
	z, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := "r" + newID()
	recs := func(n int, addr string) []provisioner.DNSRecord {
		var out []provisioner.DNSRecord
		for i := range n {
			out = append(out, provisioner.DNSRecord{Name: fmt.Sprintf("w-%03d.%s", i, zname), Addresses: []string{addr}, TTL: 60})
		}
		return out
	}
	step := func(what string, want []provisioner.DNSRecord, full bool, lists, changes, upserted, deleted int) {
		t.Helper()
		api.lists, api.changes = 0, 0
		ch, err := z.Sync(ctx, run, want, full)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if lists < 0 && api.lists > 0 {
			lists = api.lists // at least one: as many pages as the zone has
		}
		if api.lists != lists || api.changes != changes || len(ch.Upserted) != upserted || len(ch.Deleted) != deleted {
			t.Errorf("%s: %d lists, %d changes, %d upserted, %d deleted; want %d, %d, %d, %d",
				what, api.lists, api.changes, len(ch.Upserted), len(ch.Deleted), lists, changes, upserted, deleted)
		}
	}
	// 501 records just listed absent are 1002 UPSERTs of one value each,
	// which Route 53 counts as 2004 values: three requests of at most
	// 1000, after one listing.
	step("first sync", recs(501, "10.0.0.1"), false, 1, 3, 501, 0)
	if len(api.sizes) != 3 || slices.Max(api.sizes) > 1000 || api.sizes[0]+api.sizes[1]+api.sizes[2] != 2004 {
		t.Errorf("batches of %v values, want 3 of at most 1000, 2004 in all", api.sizes)
	}
	if got, _ := z.RecordAddresses(ctx, run); len(got) != 501 {
		t.Fatalf("%d records, want 501", len(got))
	}
	step("nothing changed", recs(501, "10.0.0.1"), false, 0, 0, 0, 0)
	more := recs(501, "10.0.0.1")
	more[7].Addresses = []string{"10.0.0.7"}
	step("one address moved", more, false, 0, 1, 1, 0)
	step("scale in by one", more[:500], false, 0, 1, 0, 1)
	step("the reconcile's repair", more[:500], true, -1, 0, 0, 0)

	// A name someone else took since the last listing: the CREATE fails,
	// the zone is listed, the name refused, the rest done.
	api.strictCreate = true
	foreign := "w-900." + zname
	if _, err := raw.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(id), ChangeBatch: &types.ChangeBatch{Changes: []types.Change{{
		Action: types.ChangeActionCreate, ResourceRecordSet: &types.ResourceRecordSet{Name: aws.String(foreign + "."), Type: types.RRTypeA, TTL: aws.Int64(300),
			ResourceRecords: []types.ResourceRecord{{Value: aws.String("192.0.2.1")}}},
	}}}}); err != nil {
		t.Fatal(err)
	}
	want := append(more[:500:500], provisioner.DNSRecord{Name: foreign, Addresses: []string{"10.0.0.9"}, TTL: 60},
		provisioner.DNSRecord{Name: "w-901." + zname, Addresses: []string{"10.0.0.9"}, TTL: 60})
	if _, err := z.Sync(ctx, run, want, false); !errors.Is(err, route53dns.ErrNotOwned) {
		t.Fatalf("Sync over a foreign name: %v, want ErrNotOwned", err)
	}
	got, _ := z.RecordAddresses(ctx, run)
	if _, ok := got[foreign]; ok || got["w-901."+zname] == nil {
		t.Fatalf("after the refusal: foreign taken %v, w-901 %v; want the first refused and the second written", ok, got["w-901."+zname])
	}
	out, err := raw.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(id),
		StartRecordName: aws.String(foreign + "."), MaxItems: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range out.ResourceRecordSets {
		if aws.ToString(rs.Name) == foreign+"." && (rs.Type != types.RRTypeA || aws.ToString(rs.ResourceRecords[0].Value) != "192.0.2.1") {
			t.Errorf("the foreign name now holds %s %v", rs.Type, rs.ResourceRecords)
		}
	}
}

// A throttled change is retried after a back-off; any other error is
// not; a throttle that does not pass is given up after the attempts.
func TestSyncBacksOffWhenThrottled(t *testing.T) {
	raw, _, zname := newZone(t)
	throttle := &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}
	pending := &smithy.GenericAPIError{Code: "PriorRequestNotComplete", Message: "wait"}
	bad := &smithy.GenericAPIError{Code: "InvalidChangeBatch", Message: "no"}
	for _, tc := range []struct {
		name   string
		fail   []error
		ok     bool
		sleeps int
	}{
		{"throttled twice", []error{throttle, pending}, true, 2},
		{"throttled throughout", []error{throttle, throttle, throttle, throttle}, false, 3},
		{"refused", []error{bad, bad}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			api := &countAPI{API: raw, fail: tc.fail}
			z, err := route53dns.OpenZone(ctx, api, zname, nil)
			if err != nil {
				t.Fatal(err)
			}
			var slept []time.Duration
			route53dns.SetRetry(z, backoff.Policy{Initial: time.Second, Max: time.Minute}, 4, func(_ context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			}, nil)
			run := "r" + newID()
			_, err = z.Sync(ctx, run, []provisioner.DNSRecord{{Name: "a." + run + "." + zname, Addresses: []string{"10.0.0.1"}, TTL: 60}}, true)
			if (err == nil) != tc.ok || len(slept) != tc.sleeps {
				t.Fatalf("Sync = %v after %d back-offs %v; want ok %v after %d", err, len(slept), slept, tc.ok, tc.sleeps)
			}
			for i := 1; i < len(slept); i++ {
				if slept[i] <= slept[i-1] {
					t.Errorf("back-offs %v do not grow", slept)
				}
			}
			if got, _ := z.RecordAddresses(ctx, run); (len(got) == 1) != tc.ok {
				t.Errorf("records %v, want written: %v", got, tc.ok)
			}
		})
	}
}
