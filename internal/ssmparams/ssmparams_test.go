package ssmparams_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/ssmparams"
)

// moto serves SSM on the same endpoint as EC2.
func newStore(t *testing.T) (*ssmparams.Store, *ssm.Client) {
	t.Helper()
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	s, err := ssmparams.New(ctx, ssmparams.Config{EndpointURL: u})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithBaseEndpoint(u))
	if err != nil {
		t.Fatal(err)
	}
	return s, ssm.NewFromConfig(cfg)
}

func newRun() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "ssm-" + hex.EncodeToString(b)
}

func TestRunParametersAreSecureAndTeardownDeletesThemAll(t *testing.T) {
	s, raw := newStore(t)
	ctx := context.Background()
	run, other := newRun(), newRun()

	// More than one DeleteParameters batch (10 names).
	var want []string
	for i := range 12 {
		name, err := s.Put(ctx, run, fmt.Sprintf("workers/w-%02d/broker-url", i), fmt.Sprintf("amqps://w%d:secret-%d@broker/", i, i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	secretName, err := s.Put(ctx, run, "run-secret", "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, secretName)
	slices.Sort(want)
	keep, err := s.Put(ctx, other, "run-secret", "other")
	if err != nil {
		t.Fatal(err)
	}

	if secretName != "/nightshift/"+run+"/run-secret" {
		t.Errorf("name %q, want it under /nightshift/<run>/", secretName)
	}
	got, err := s.Get(ctx, secretName)
	if err != nil || got != "hunter2" {
		t.Fatalf("Get = %q, %v; want the stored value", got, err)
	}
	// Overwrite: a re-boot writes the same names again.
	if _, err := s.Put(ctx, run, "run-secret", "hunter3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, secretName); got != "hunter3" {
		t.Fatalf("after overwrite Get = %q", got)
	}
	p, err := raw.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(secretName)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Parameter.Type != types.ParameterTypeSecureString {
		t.Errorf("type %s, want SecureString", p.Parameter.Type)
	}
	if _, err := s.Get(ctx, "/nightshift/"+run+"/nope"); !errors.Is(err, ssmparams.ErrNotFound) {
		t.Errorf("missing parameter: %v, want ErrNotFound", err)
	}

	listed, err := s.List(ctx, run)
	if err != nil || !slices.Equal(listed, want) {
		t.Fatalf("List = %v, %v; want %v", listed, err, want)
	}
	sw := ssmparams.Sweeper{Store: s}
	dry, _, err := sw.Sweep(ctx, run, true)
	if err != nil || len(dry) != len(want) {
		t.Fatalf("dry run listed %d (%v), want %d", len(dry), err, len(want))
	}
	if left, _ := s.List(ctx, run); len(left) != len(want) {
		t.Fatalf("a dry run deleted something: %d left of %d", len(left), len(want))
	}
	deleted, remaining, err := sw.Sweep(ctx, run, false)
	if err != nil || len(remaining) != 0 || !slices.Equal(deleted, want) {
		t.Fatalf("sweep deleted %v, remaining %v, err %v; want all of %v", deleted, remaining, err, want)
	}
	if left, err := s.List(ctx, run); err != nil || len(left) != 0 {
		t.Fatalf("after teardown %v (%v) remain", left, err)
	}
	if got, err := s.Get(ctx, keep); err != nil || got != "other" {
		t.Fatalf("another run's parameter was touched: %q %v", got, err)
	}
	deleted, remaining, err = sw.Sweep(ctx, run, false)
	if err != nil || len(deleted)+len(remaining) != 0 {
		t.Fatalf("second sweep: %v %v %v, want nothing to do", deleted, remaining, err)
	}
	if _, _, err := sw.Sweep(ctx, other, false); err != nil {
		t.Fatal(err)
	}
}

func TestNamesRefuseWhatSSMWouldNot(t *testing.T) {
	cases := []struct {
		run, rel, err string
	}{
		{"r1", "run-secret", ""},
		{"r1", "workers/w-1/broker-url", ""},
		{"", "x", "run"},
		{"a/b", "x", "run"},
		{"r1", "", "segments"},
		{"r1", "/abs", "segments"},
		{"r1", "a//b", "segments"},
		{"r1", "sp ace", "segments"},
		{"r1", strings.Repeat("x", 1100), "1011"},
	}
	for _, tc := range cases {
		name, err := ssmparams.Name(tc.run, tc.rel)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Name(%q, %q): %v", tc.run, tc.rel, err)
		case tc.err == "" && name != "/nightshift/"+tc.run+"/"+tc.rel:
			t.Errorf("Name(%q, %q) = %q", tc.run, tc.rel, name)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Name(%q, %q) = %v, want an error naming %q", tc.run, tc.rel, err, tc.err)
		}
	}
	s := ssmparams.NewWithAPI(nil, nil)
	if _, err := s.Get(context.Background(), "/elsewhere/x"); err == nil {
		t.Error("Get outside /nightshift/ must be refused before any call")
	}
}
