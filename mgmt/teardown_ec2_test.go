package mgmt_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/service/ec2service"
	"nightshift/internal/ssmparams"
	"nightshift/mgmt"
)

// stuckAPI answers TerminateInstances without terminating anything, as an
// instance EC2 keeps running would.
type stuckAPI struct{ ec2.API }

func (stuckAPI) TerminateInstances(ctx context.Context, in *awsec2.TerminateInstancesInput, o ...func(*awsec2.Options)) (*awsec2.TerminateInstancesOutput, error) {
	return &awsec2.TerminateInstancesOutput{}, nil
}

// TestTeardownSweepsEveryRegionAndItsParameters: workers in two regions and
// the run's SSM parameters are all gone after a teardown whose provisioner is
// unreachable (Pools nil: only the sweeps act), and an instance that stays
// running anywhere the sweep looked makes teardown fail naming it and where.
func TestTeardownSweepsEveryRegionAndItsParameters(t *testing.T) {
	moto := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	eng, st, run := launched(t, &fakeDriver{calls: &calls{}})

	places := []mgmt.EC2Place{{Region: "us-east-1", EndpointURL: moto}, {Region: "eu-west-1", EndpointURL: moto}}
	var sweepers []mgmt.Sweeper
	clients := map[string]*ec2.Client{}
	for _, pl := range places {
		c, err := ec2.New(ctx, ec2.Config{Region: pl.Region, EndpointURL: pl.EndpointURL})
		if err != nil {
			t.Fatal(err)
		}
		clients[pl.Region] = c
		for i := range 2 {
			id := pl.Region + "-w-" + string(rune('0'+i))
			if _, err := c.Launch(ctx, ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro",
				Tags: ec2.Tags{Run: run, Owner: "provisioner", Job: "sleeper", Launch: "L1", Instance: id}}); err != nil {
				t.Fatal(err)
			}
		}
		s, err := ssmparams.New(ctx, ssmparams.Config{Region: pl.Region, EndpointURL: pl.EndpointURL})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, run, "workers/"+pl.Region+"/broker-url", "amqps://w:pw@b/"); err != nil {
			t.Fatal(err)
		}
		sweepers = append(sweepers, ec2service.Sweeper{Client: c, Place: pl.String()}, ssmparams.Sweeper{Store: s, Place: pl.String()})
	}

	// A stuck instance in eu-west-1: its terminate call does nothing.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("eu-west-1"), config.WithBaseEndpoint(moto))
	if err != nil {
		t.Fatal(err)
	}
	stuck := ec2service.Sweeper{Client: ec2.NewWithAPI(stuckAPI{awsec2.NewFromConfig(cfg)}, nil), Place: "eu-west-1 stuck"}
	td := &mgmt.Teardown{Engine: eng, Store: st, Sweepers: []mgmt.Sweeper{stuck, sweepers[3]}}
	rep, err := td.Run(ctx, run, false)
	if !errors.Is(err, mgmt.ErrRemains) || len(rep.Remaining) != 2 || rep.Remaining[0].Where != "eu-west-1 stuck" || rep.Remaining[0].Kind != "ec2" || !strings.HasPrefix(rep.Remaining[0].ID, "i-") {
		t.Fatalf("with a stuck instance: err %v, remaining %q; want ErrRemains naming both and where", err, rep.Remaining)
	}

	td = &mgmt.Teardown{Engine: eng, Store: st, Sweepers: sweepers}
	rep, err = td.Run(ctx, run, false)
	if err != nil || len(rep.Remaining) != 0 {
		t.Fatalf("teardown: %v, remaining %q", err, rep.Remaining)
	}
	for region, c := range clients {
		if live, err := c.Find(ctx, map[string]string{ec2.TagRun: run}, []string{"pending", "running"}); err != nil || len(live) != 0 {
			t.Errorf("%s: %d live after teardown (%v)", region, len(live), err)
		}
	}
	for _, sw := range sweepers {
		if ps, ok := sw.(ssmparams.Sweeper); ok {
			if left, err := ps.Store.List(ctx, run); err != nil || len(left) != 0 {
				t.Errorf("%s: parameters %v left (%v)", sw.Name(), left, err)
			}
		}
	}
}
