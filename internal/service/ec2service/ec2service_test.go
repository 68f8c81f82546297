package ec2service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/google/uuid"

	"nightshift/bootlevel"
	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/route53dns"
	"nightshift/launchplan"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		in      map[string]any
		wantErr string
	}{
		{map[string]any{"image": "ami-1"}, ""},
		{map[string]any{}, "ec2.image: required"},
		{map[string]any{"image": "ami-1", "instnce_type": "x"}, "ec2.instnce_type: unknown key"},
		{map[string]any{"image": "ami-1", "wait_timeout": "soon"}, "ec2.wait_timeout"},
		{map[string]any{"image": "ami-1", "wait_timeout": "-1s"}, "must be positive"},
		{map[string]any{"image": "ami-1", "security_groups": []any{"sg-1", 3}}, "want strings"},
		{map[string]any{"image": "ami-1", "ready_local": "yes"}, "want true or false"},
		{map[string]any{"image": "ami-1", "dns": map[string]any{"zone": "z.internal", "name": "${service}.z.internal"}}, ""},
		{map[string]any{"image": "ami-1", "dns": map[string]any{"zone": "z.internal", "name": "${service}-${run}.z.internal", "ttl": 30, "address": "public"}}, ""},
		{map[string]any{"image": "ami-1", "dns": map[string]any{"zone": "z.internal", "name": "${service}-${index}.z.internal"}}, "unknown placeholder ${index}"},
		{map[string]any{"image": "ami-1", "dns": map[string]any{"zone": "z.internal", "name": "${service}.z.internal", "pool": "all.z.internal"}}, "no pool record"},
		{map[string]any{"image": "ami-1", "dns": map[string]any{"name": "${service}.z.internal"}}, "dns.zone: required"},
		{map[string]any{"image": "ami-1", "dns": map[string]any{"zone": "z.internal"}}, "dns.name: required"},
		{map[string]any{"image": "ami-1", "dns": "z.internal"}, "want a table"},
	}
	for _, c := range cases {
		_, err := ParseConfig(c.in)
		if c.wantErr == "" && err != nil {
			t.Errorf("%v: unexpected %v", c.in, err)
		}
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%v: got %v, want %q", c.in, err, c.wantErr)
		}
	}
}

func TestAcquireIsIdempotentAndReleaseTerminates(t *testing.T) {
	c, url := ec2test.Client(t)
	d := &Driver{}
	run := "t" + uuid.NewString()[:8]
	svc := &launchplan.Service{Name: "broker", Driver: launchplan.DriverEC2,
		EC2: map[string]any{"image": ec2test.Image, "endpoint_url": url, "region": "us-east-1"}}
	ctx := context.Background()
	h1, err := d.Acquire(ctx, run, svc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h1.InstanceID, "i-") || h1.Hostname == "" {
		t.Fatalf("host %+v lacks an instance id or address", h1)
	}
	// A resumed launch after a crash acquires again: it must adopt, not double.
	h2, err := d.Acquire(ctx, run, svc)
	if err != nil {
		t.Fatal(err)
	}
	if h2.InstanceID != h1.InstanceID {
		t.Fatalf("second acquire launched %s besides %s", h2.InstanceID, h1.InstanceID)
	}
	if err := d.Release(ctx, run, svc, h1); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, run, svc, h1); err != nil {
		t.Fatalf("release is not idempotent: %v", err)
	}
	if live, _ := c.Find(ctx, map[string]string{ec2.TagRun: run}, nil); len(live) != 0 {
		t.Fatalf("instances live after release: %v", live)
	}
}

type recordingDriver struct{ steps []bootlevel.Step }

func (r *recordingDriver) Acquire(context.Context, string, *launchplan.Service) (bootlevel.Host, error) {
	return bootlevel.Host{}, nil
}
func (r *recordingDriver) Run(_ context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	r.steps = append(r.steps, req.Step)
	return bootlevel.StepResult{}, nil
}
func (r *recordingDriver) Release(context.Context, string, *launchplan.Service, bootlevel.Host) error {
	return nil
}

func TestReadyLocalRunsReadyOnTheLauncherAndTheRestOverSSH(t *testing.T) {
	remote, local := &recordingDriver{}, &recordingDriver{}
	d := &Driver{Remote: remote, Local: local}
	svc := &launchplan.Service{Name: "web", EC2: map[string]any{"image": "ami-1", "ready_local": true}}
	for _, st := range []bootlevel.Step{bootlevel.StepBoot, bootlevel.StepReady, bootlevel.StepTerminate} {
		if _, err := d.Run(context.Background(), bootlevel.StepRequest{Service: svc, Step: st, Host: bootlevel.Host{Hostname: "10.0.0.5"}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(local.steps) != 1 || local.steps[0] != bootlevel.StepReady {
		t.Errorf("local ran %v, want only ready", local.steps)
	}
	if len(remote.steps) != 2 {
		t.Errorf("remote ran %v, want boot and terminate", remote.steps)
	}
}

// TestStepsHereFollowsAllStepsLocal: a built-in type asks the driver where
// its steps run; with AllStepsLocal (tests against moto) every step runs on
// the local driver, so the type must start its daemon here, not as a unit on
// an instance nobody can reach.
func TestStepsHereFollowsAllStepsLocal(t *testing.T) {
	svc := &launchplan.Service{Name: "provisioner", EC2: map[string]any{"image": "ami-1"}}
	for _, here := range []bool{false, true} {
		remote, local := &recordingDriver{}, &recordingDriver{}
		d := &Driver{Remote: remote, Local: local, AllStepsLocal: here}
		if got := d.StepsHere(svc); got != here {
			t.Errorf("AllStepsLocal %v: StepsHere %v", here, got)
		}
		if _, err := d.Run(context.Background(), bootlevel.StepRequest{Service: svc, Step: bootlevel.StepBoot, Host: bootlevel.Host{Hostname: "10.0.0.5"}}); err != nil {
			t.Fatal(err)
		}
		if ranHere := len(local.steps) == 1; ranHere != here {
			t.Errorf("AllStepsLocal %v: boot ran locally %v, but StepsHere says %v", here, ranHere, here)
		}
	}
}

// TestStepsLocalRecordedInThePlan: a run launched with AllStepsLocal stores
// steps_local in its ec2 services' tables (MarkStepsLocal); a driver
// without the switch, as teardown or repair of that run get, then still runs
// every step of those services here and tells the types so, while a
// service of another plan still goes over ssh.
func TestStepsLocalRecordedInThePlan(t *testing.T) {
	plan := &launchplan.Plan{Levels: []launchplan.Level{{Services: []launchplan.Service{
		{Name: "broker", Driver: launchplan.DriverEC2},
		{Name: "provisioner", Driver: launchplan.DriverEC2, EC2: map[string]any{"image": "ami-1"}},
		{Name: "web", Driver: launchplan.DriverLocal},
	}}}}
	if StepsLocal(plan) {
		t.Fatal("an unmarked plan reports local steps")
	}
	MarkStepsLocal(plan)
	// The run stores the plan as JSON; teardown reads it back.
	data, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	var stored launchplan.Plan
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	if !StepsLocal(&stored) {
		t.Fatal("the stored plan lost steps_local")
	}
	if _, ok := stored.Levels[0].Services[2].EC2[StepsLocalKey]; ok {
		t.Error("a local service was marked")
	}
	prov := &stored.Levels[0].Services[1]
	prov.EC2["image"] = "ami-1"
	for _, c := range []struct {
		name string
		svc  *launchplan.Service
		here bool
	}{
		{"recorded", prov, true},
		{"not recorded", &launchplan.Service{Name: "other", Driver: launchplan.DriverEC2, EC2: map[string]any{"image": "ami-1"}}, false},
	} {
		remote, local := &recordingDriver{}, &recordingDriver{}
		d := &Driver{Remote: remote, Local: local} // no AllStepsLocal: as mgmt teardown without the switch
		if got := d.StepsHere(c.svc); got != c.here {
			t.Errorf("%s: StepsHere %v, want %v", c.name, got, c.here)
		}
		if _, err := d.Run(context.Background(), bootlevel.StepRequest{Service: c.svc, Step: bootlevel.StepTerminate, Host: bootlevel.Host{Hostname: "10.0.0.5"}}); err != nil {
			t.Fatal(err)
		}
		if ranHere := len(local.steps) == 1 && len(remote.steps) == 0; ranHere != c.here {
			t.Errorf("%s: terminate ran here %v (local %v, remote %v), want %v", c.name, ranHere, local.steps, remote.steps, c.here)
		}
	}
	if _, err := ParseConfig(map[string]any{"image": "ami-1", StepsLocalKey: "yes"}); err == nil || !strings.Contains(err.Error(), "ec2."+StepsLocalKey) {
		t.Errorf("steps_local = \"yes\": err %v, want one naming ec2.%s", err, StepsLocalKey)
	}
}

// An ec2 service's dns table: its record points at the instance once it
// runs (Acquire), owned by the run so teardown's sweep would find it, and
// is deleted when the service is released; releasing twice is fine.
func TestServiceRecordFollowsItsInstance(t *testing.T) {
	_, url := ec2test.Client(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	ctx := context.Background()
	api, err := route53dns.NewAPI(ctx, route53dns.Config{EndpointURL: url})
	if err != nil {
		t.Fatal(err)
	}
	zname := "z" + strings.ReplaceAll(uuid.NewString()[:8], "-", "") + ".example.internal"
	if _, err := api.(*route53.Client).CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
		Name: aws.String(zname), CallerReference: aws.String(uuid.NewString()),
	}); err != nil {
		t.Fatal(err)
	}
	zone, err := route53dns.OpenZone(ctx, api, zname, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &Driver{}
	run := "t" + uuid.NewString()[:8]
	svc := &launchplan.Service{Name: "broker", Driver: launchplan.DriverEC2,
		EC2: map[string]any{"image": ec2test.Image, "endpoint_url": url, "region": "us-east-1",
			"dns": map[string]any{"zone": zname, "name": "${service}.${run}." + zname, "ttl": 30}}}
	h, err := d.Acquire(ctx, run, svc)
	if err != nil {
		t.Fatal(err)
	}
	name := "broker." + run + "." + zname
	got, err := zone.RecordAddresses(ctx, run)
	if err != nil || len(got) != 1 || len(got[name]) != 1 || got[name][0] != h.Attrs["private_ip"] || h.Attrs["dns_name"] != name {
		t.Fatalf("records %v (%v), host %+v: want %s at the instance's private address", got, err, h, name)
	}
	for range 2 {
		if err := d.Release(ctx, run, svc, h); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := zone.RecordAddresses(ctx, run); err != nil || len(got) != 0 {
		t.Fatalf("records after release: %v, %v", got, err)
	}
}
