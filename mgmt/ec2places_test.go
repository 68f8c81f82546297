package mgmt_test

import (
	"slices"
	"testing"

	"nightshift/launchplan"
	"nightshift/mgmt"
)

func TestEC2PlacesCoverEveryRegionAndEndpointTheRunNames(t *testing.T) {
	svc := func(driver string, ec2 map[string]any, cfg map[string]any) launchplan.Service {
		return launchplan.Service{Name: "s", Driver: driver, EC2: ec2, TypeConfig: cfg}
	}
	plan := func(globals map[string]string, ss ...launchplan.Service) *launchplan.Plan {
		return &launchplan.Plan{Globals: globals, Levels: []launchplan.Level{{Services: ss}}}
	}
	cases := []struct {
		name string
		plan *launchplan.Plan
		want []string
	}{
		{name: "nothing on ec2", plan: plan(nil, svc("local", nil, nil)), want: nil},
		{name: "a service, endpoint from the environment",
			plan: plan(nil, svc("ec2", map[string]any{"region": "us-east-1"}, nil)),
			want: []string{"us-east-1 at http://env"}},
		{name: "a job's workers in another region, through globals",
			plan: plan(map[string]string{"region": "us-east-1", "worker_region": "eu-west-1"},
				svc("ec2", map[string]any{"region": "${global.region}", "endpoint_url": "http://moto"}, nil),
				svc("local", nil, map[string]any{"jobs": map[string]any{"sleeper": map[string]any{
					"instance": map[string]any{"region": "${global.worker_region}", "endpoint_url": "http://moto"}}}})),
			want: []string{"eu-west-1 at http://moto", "us-east-1 at http://moto"}},
		{name: "jobs as a list, another endpoint, worker_region only as a global",
			plan: plan(map[string]string{"worker_region": "ap-south-1"},
				svc("ec2", map[string]any{"region": "us-east-1"}, nil),
				svc("local", nil, map[string]any{"jobs": []any{map[string]any{
					"instance": map[string]any{"region": "us-west-2", "endpoint_url": "http://other"}}}})),
			want: []string{"ap-south-1 at http://env", "us-east-1 at http://env", "ap-south-1 at http://other", "us-west-2 at http://other"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range mgmt.EC2Places(tc.plan, "http://env") {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("places %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDNSZonesAreEveryJobsZone(t *testing.T) {
	jobs := map[string]any{
		"web": map[string]any{"instance": map[string]any{"endpoint_url": "http://moto"},
			"dns": map[string]any{"zone": "${global.zone}", "name": "$${job}-$${index}.x.y"}},
		"db":    map[string]any{"dns": map[string]any{"zone": "Z123", "name": "db-$${index}.x.y"}},
		"batch": map[string]any{"instance": map[string]any{"endpoint_url": "http://moto"}},
	}
	p := &launchplan.Plan{Globals: map[string]string{"zone": "example.internal"}, Levels: []launchplan.Level{{Services: []launchplan.Service{
		{Name: "controller", TypeConfig: map[string]any{"jobs": jobs}},
		{Name: "other", TypeConfig: map[string]any{"dns": map[string]any{"zone": "not-a-job.internal"}}},
		// An ec2 service's own record; a local one's ec2 table is not used.
		{Name: "broker", Driver: launchplan.DriverEC2, EC2: map[string]any{"endpoint_url": "http://moto2",
			"dns": map[string]any{"zone": "svc.internal", "name": "$${service}.x.y"}}},
		{Name: "local", EC2: map[string]any{"dns": map[string]any{"zone": "not-ec2.internal"}}},
	}}}}
	got := mgmt.DNSZones(p, "http://env")
	want := []mgmt.DNSZone{{Zone: "Z123", EndpointURL: "http://env"}, {Zone: "example.internal", EndpointURL: "http://moto"},
		{Zone: "svc.internal", EndpointURL: "http://moto2"}}
	if !slices.Equal(got, want) {
		t.Fatalf("zones %+v, want %+v", got, want)
	}
	if got := mgmt.DNSZones(&launchplan.Plan{}, ""); len(got) != 0 {
		t.Fatalf("a plan without dns tables: %+v", got)
	}
}
