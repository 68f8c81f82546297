package route53dns_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/jobspec"
	"nightshift/internal/route53dns"
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
// does not resolve stops the provisioner's start with the job's name.
func TestJobZones(t *testing.T) {
	_, _, zname := newZone(t)
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
	_, err = route53dns.JobZones(ctx, map[string]jobspec.Spec{"web": {Instance: inst, DNS: dns("missing-" + newID() + ".invalid")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "job web: dns: route53: no hosted zone") {
		t.Fatalf("err = %v", err)
	}
}
