package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"nightshift/bootlevel"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/route53dns"
	"nightshift/launchplan"
	"nightshift/mgmt"
)

// TestTeardownSweepsDNSRecordsOfEveryJobsZone: teardown's sweepers, built
// from the run's stored plan alone (provisioner dead, ledger gone), delete
// the run's records in each zone a job names and leave none; a zone that
// cannot be opened is reported remaining, so teardown exits non-zero.
func TestTeardownSweepsDNSRecordsOfEveryJobsZone(t *testing.T) {
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	ctx := context.Background()
	api, err := route53dns.NewAPI(ctx, route53dns.Config{EndpointURL: u})
	if err != nil {
		t.Fatal(err)
	}
	zname := "z" + randHex(t) + ".example.internal"
	if _, err := api.(*route53.Client).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(zname), CallerReference: aws.String(randHex(t))}); err != nil {
		t.Fatal(err)
	}
	z, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := "dns" + randHex(t)
	for _, n := range []string{"web-0", "web-1", "web"} {
		if err := z.Upsert(ctx, run, route53dns.Record{Name: n + "." + run + "." + zname, Addresses: []string{"10.0.0.1"}, TTL: 60}); err != nil {
			t.Fatal(err)
		}
	}
	plan := func(zone string) bootlevel.Run {
		p := launchplan.Plan{Globals: map[string]string{"zone": zone}, Levels: []launchplan.Level{{Index: 1, Services: []launchplan.Service{{
			Name: "controller", Type: "controller", TypeConfig: map[string]any{"jobs": map[string]any{"web": map[string]any{
				"instance": map[string]any{"endpoint_url": u},
				"dns":      map[string]any{"zone": "${global.zone}", "name": "$${job}-$${index}.$${run}." + zname},
			}}},
		}}}}}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return bootlevel.Run{Name: run, Plan: raw}
	}

	sws, err := dnsOnly(ec2Sweepers(ctx, plan(zname)))
	if err != nil || len(sws) != 1 {
		t.Fatalf("sweepers %v, %v; want the zone's", sws, err)
	}
	listed, _, err := sws[0].Sweep(ctx, run, true)
	if err != nil || len(listed) != 3 {
		t.Fatalf("dry run listed %v, %v", listed, err)
	}
	deleted, remaining, err := sws[0].Sweep(ctx, run, false)
	if err != nil || len(deleted) != 3 || len(remaining) != 0 {
		t.Fatalf("sweep: deleted %v remaining %v, %v", deleted, remaining, err)
	}
	if left, _ := z.List(ctx, run); len(left) != 0 {
		t.Fatalf("records left: %v", left)
	}

	// A zone that no longer exists holds no record: nothing to sweep.
	if sws, err := dnsOnly(ec2Sweepers(ctx, plan("gone-"+randHex(t)+".invalid"))); err != nil || len(sws) != 0 {
		t.Fatalf("a deleted zone: sweepers %v, %v", sws, err)
	}
	// One that cannot be reached is reported remaining.
	bad := plan(zname)
	var p launchplan.Plan
	json.Unmarshal(bad.Plan, &p)
	p.Levels[0].Services[0].TypeConfig["jobs"].(map[string]any)["web"].(map[string]any)["instance"] = map[string]any{"endpoint_url": "http://127.0.0.1:9"}
	bad.Plan, _ = json.Marshal(p)
	sws, err = dnsOnly(ec2Sweepers(ctx, bad))
	if err == nil || len(sws) != 1 {
		t.Fatalf("unreachable zone: sweepers %v, %v", sws, err)
	}
	if _, remaining, _ := sws[0].Sweep(ctx, run, false); len(remaining) != 1 {
		t.Fatalf("unreachable zone: remaining %v, want the zone", remaining)
	}
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// dnsOnly keeps the DNS sweepers (the plan's instance table brings the EC2
// and SSM ones too).
func dnsOnly(sws []mgmt.Sweeper, err error) ([]mgmt.Sweeper, error) {
	var out []mgmt.Sweeper
	for _, s := range sws {
		if strings.HasPrefix(s.Name(), "dns-record") {
			out = append(out, s)
		}
	}
	return out, err
}
