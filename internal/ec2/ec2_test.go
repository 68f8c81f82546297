package ec2_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"

	"nightshift"
	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
)

func tags(run, inst string) ec2.Tags {
	return ec2.Tags{Run: run, Owner: "provisioner", Job: "work", Launch: "l1", Instance: inst}
}

func newRun() string { return "t" + uuid.NewString()[:8] }

func TestLaunchIsIdempotentByTag(t *testing.T) {
	c, _ := ec2test.Client(t)
	ctx := context.Background()
	run := newRun()
	spec := ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro", Tags: tags(run, "work-1")}
	a, err := c.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Launch(ctx, spec) // a retry after a crash or an ambiguous answer
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID {
		t.Fatalf("second launch made a new instance: %s then %s", a.ID, b.ID)
	}
	live, err := c.Find(ctx, map[string]string{ec2.TagRun: run}, nil)
	if err != nil || len(live) != 1 {
		t.Fatalf("live instances %v (err %v), want exactly 1", live, err)
	}
	for k, want := range map[string]string{ec2.TagRun: run, ec2.TagOwner: "provisioner", ec2.TagJob: "work", ec2.TagLaunch: "l1", ec2.TagInstance: "work-1"} {
		if live[0].Tags[k] != want {
			t.Errorf("tag %s = %q, want %q", k, live[0].Tags[k], want)
		}
	}
	got, err := c.WaitRunning(ctx, a.ID, 10*time.Second)
	if err != nil || got.Address() == "" {
		t.Fatalf("wait running: %+v %v", got, err)
	}
	h, err := c.Health(ctx, []string{a.ID})
	if err != nil || h[a.ID] != "ok" {
		t.Fatalf("health %v %v", h, err)
	}
}

// lossyAPI launches for real but reports a network failure, as a dropped
// connection after EC2 accepted the request would.
type lossyAPI struct {
	ec2.API
	drops  int      // calls EC2 answers but whose answer is lost
	lost   int      // calls lost before they reach EC2
	tokens []string // the ClientToken of every RunInstances call
}

func (l *lossyAPI) RunInstances(ctx context.Context, in *awsec2.RunInstancesInput, o ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error) {
	l.tokens = append(l.tokens, aws.ToString(in.ClientToken))
	if l.lost > 0 {
		l.lost--
		return nil, errors.New("dial tcp: i/o timeout")
	}
	out, err := l.API.RunInstances(ctx, in, o...)
	if err == nil && l.drops > 0 {
		l.drops--
		return nil, errors.New("read tcp: connection reset by peer")
	}
	return out, err
}

func TestAmbiguousErrorThenRetryAdoptsInsteadOfDoubling(t *testing.T) {
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	real, err := newSDK(u)
	if err != nil {
		t.Fatal(err)
	}
	lossy := &lossyAPI{API: real, drops: 1}
	c := ec2.NewWithAPI(lossy, nil)
	ctx := context.Background()
	run := newRun()
	spec := ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro", Tags: tags(run, "work-7")}
	_, err = c.Launch(ctx, spec)
	if err == nil || !ec2.Ambiguous(err) {
		t.Fatalf("want an ambiguous error, got %v", err)
	}
	inst, err := c.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Moto ignores ClientToken, so the tag lookup adopted the first
	// instance; EC2 would also have deduplicated by the repeated token.
	if len(lossy.tokens) != 1 || lossy.tokens[0] != ec2.ClientToken(spec.Tags) {
		t.Fatalf("RunInstances tokens %q, want one call with %q", lossy.tokens, ec2.ClientToken(spec.Tags))
	}
	live, _ := c.Find(ctx, map[string]string{ec2.TagRun: run}, nil)
	if len(live) != 1 || live[0].ID != inst.ID {
		t.Fatalf("after the retry %d live instances (%v), want the one adopted %s", len(live), live, inst.ID)
	}
}

func TestRetriesReuseOneClientTokenPerLaunchAndInstance(t *testing.T) {
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	real, err := newSDK(u)
	if err != nil {
		t.Fatal(err)
	}
	lossy := &lossyAPI{API: real, lost: 2}
	c := ec2.NewWithAPI(lossy, nil)
	ctx := context.Background()
	spec := ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro", Tags: tags(newRun(), "work-8")}
	for range 2 {
		if _, err := c.Launch(ctx, spec); err == nil || !ec2.Ambiguous(err) {
			t.Fatalf("want an ambiguous error, got %v", err)
		}
	}
	if _, err := c.Launch(ctx, spec); err != nil {
		t.Fatal(err)
	}
	want := ec2.ClientToken(spec.Tags)
	if len(lossy.tokens) != 3 {
		t.Fatalf("%d RunInstances calls, want 3", len(lossy.tokens))
	}
	for i, tok := range lossy.tokens {
		if tok != want {
			t.Errorf("attempt %d used token %q, want %q for every attempt", i, tok, want)
		}
	}

	long := strings.Repeat("x", 128)
	cases := []ec2.Tags{
		{Run: "r", Launch: "l", Instance: "i-1"},
		{Run: "r", Launch: "l", Instance: "i-2"},
		{Run: "r", Launch: "l2", Instance: "i-1"},
		{Run: "r2", Launch: "l", Instance: "i-1"},
		{Run: long, Launch: long, Instance: long + "a"},
		{Run: long, Launch: long, Instance: long + "b"},
	}
	seen := map[string]int{}
	for i, tg := range cases {
		tok := ec2.ClientToken(tg)
		if len(tok) > 64 {
			t.Errorf("case %d: token %q is over EC2's 64 characters", i, tok)
		}
		if j, dup := seen[tok]; dup {
			t.Errorf("cases %d and %d share token %q", j, i, tok)
		}
		seen[tok] = i
	}
}

func TestErrorsBecomeReasons(t *testing.T) {
	c, _ := ec2test.Client(t)
	ctx := context.Background()
	_, err := c.Launch(ctx, ec2.Spec{Image: "ami-00000000deadbeef0", InstanceType: "t3.micro", Tags: tags(newRun(), "x-1")})
	var le *ec2.LaunchError
	if !errors.As(err, &le) || !strings.Contains(le.Reason, "bad image") {
		t.Fatalf("bad AMI: got %v", err)
	}
	if ec2.Ambiguous(err) {
		t.Fatal("an answered refusal must not count as ambiguous")
	}

	cases := []struct {
		code, want string
	}{
		{"UnauthorizedOperation", "not authorized"},
		{"AuthFailure", "not authorized"},
		{"InsufficientInstanceCapacity", "insufficient capacity"},
		{"InvalidKeyPair.NotFound", "bad key pair"},
		{"RequestLimitExceeded", "throttled"},
		{"InvalidAMIID.Malformed", "bad image"},
		{"SomethingNew", "ec2 refused (SomethingNew)"},
	}
	for _, tc := range cases {
		got := ec2.Reason(&smithy.GenericAPIError{Code: tc.code, Message: "m"})
		if !strings.Contains(got, tc.want) {
			t.Errorf("Reason(%s) = %q, want it to contain %q", tc.code, got, tc.want)
		}
	}
	if got := ec2.Reason(context.DeadlineExceeded); !strings.Contains(got, "timed out") {
		t.Errorf("Reason(deadline) = %q", got)
	}
}

// deniedAPI answers every launch as IAM would without permission.
type deniedAPI struct{ ec2.API }

func (deniedAPI) RunInstances(context.Context, *awsec2.RunInstancesInput, ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "UnauthorizedOperation", Message: "You are not authorized to perform this operation."}
}

func TestUnauthorizedLaunchIsAReason(t *testing.T) {
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	real, err := newSDK(u)
	if err != nil {
		t.Fatal(err)
	}
	c := ec2.NewWithAPI(deniedAPI{real}, nil)
	_, err = c.Launch(context.Background(), ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro", Tags: tags(newRun(), "x-2")})
	var le *ec2.LaunchError
	if !errors.As(err, &le) || !strings.Contains(le.Reason, "not authorized") {
		t.Fatalf("got %v", err)
	}
}

func TestSweepLeavesNothingLiveAndTerminateToleratesUnknownIDs(t *testing.T) {
	c, _ := ec2test.Client(t)
	ctx := context.Background()
	run, other := newRun(), newRun()
	var ids []string
	for i := 0; i < 3; i++ {
		inst, err := c.Launch(ctx, ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro", Tags: tags(run, fmt.Sprintf("w-%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	keep, err := c.Launch(ctx, ec2.Spec{Image: ec2test.Image, InstanceType: "t3.micro", Tags: tags(other, "w-0")})
	if err != nil {
		t.Fatal(err)
	}
	// One instance already gone behind our back, plus an id EC2 never had.
	if err := c.Terminate(ctx, []string{ids[0], "i-0123456789abcdef0"}); err != nil {
		t.Fatalf("terminate with an unknown id: %v", err)
	}
	would, _, err := c.Sweep(ctx, run, true)
	if err != nil || len(would) != 2 {
		t.Fatalf("dry run lists %v (err %v), want 2", would, err)
	}
	destroyed, remaining, err := c.Sweep(ctx, run, false)
	if err != nil || len(destroyed) != 2 || len(remaining) != 0 {
		t.Fatalf("sweep destroyed %v remaining %v err %v", destroyed, remaining, err)
	}
	if live, _ := c.Find(ctx, map[string]string{ec2.TagRun: run}, nil); len(live) != 0 {
		t.Fatalf("live after sweep: %v", live)
	}
	if live, _ := c.Find(ctx, map[string]string{ec2.TagRun: other}, nil); len(live) != 1 || live[0].ID != keep.ID {
		t.Fatalf("sweep touched another run: %v", live)
	}
	c.Terminate(ctx, []string{keep.ID})
}

func TestMapState(t *testing.T) {
	for in, want := range map[string]nightshift.InstanceState{
		"pending": nightshift.StatePending, "running": nightshift.StateRunning,
		"shutting-down": nightshift.StateTerminating, "stopped": nightshift.StateTerminating,
		"terminated": nightshift.StateTerminated, "weird": nightshift.StateFailed,
	} {
		if got := ec2.MapState(in); got != want {
			t.Errorf("MapState(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestWorkerUserDataQuotesEverything(t *testing.T) {
	s := ec2.WorkerUserData{Run: "r", Job: "j'; rm -rf / #", InstanceID: "i-1", BrokerURLParam: "/nightshift/r/workers/i-1/broker-url"}.Script()
	if !strings.Contains(s, `'j'\''; rm -rf / #'`) {
		t.Fatalf("job not quoted:\n%s", s)
	}
}

// TestWorkerUserDataNamesTheParameterOnly: the script hands the sitter the
// SSM parameter's name, region and endpoint; no broker URL appears.
func TestWorkerUserDataNamesTheParameterOnly(t *testing.T) {
	s := ec2.WorkerUserData{Run: "r", Job: "j", InstanceID: "i-1", BrokerURLParam: "/nightshift/r/workers/i-1/broker-url",
		SSMRegion: "eu-west-1", SSMEndpointURL: "http://127.0.0.1:5055"}.Script()
	for _, want := range []string{"'--amqp-url-ssm' '/nightshift/r/workers/i-1/broker-url'", "'--ssm-region' 'eu-west-1'", "'--ssm-endpoint-url' 'http://127.0.0.1:5055'"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	for _, bad := range []string{"amqp://", "amqps://", "broker-url-file", "--amqp-url-file"} {
		if strings.Contains(s, bad) {
			t.Errorf("script holds %q:\n%s", bad, s)
		}
	}
	if plain := (ec2.WorkerUserData{Run: "r", Job: "j", InstanceID: "i-1", BrokerURLParam: "/nightshift/r/x"}).Script(); strings.Contains(plain, "--ssm-") {
		t.Errorf("a script without region or endpoint names them:\n%s", plain)
	}
}

// TestWorkerUserDataWritesTheBrokerCA runs the script's own command that
// writes the CA, with the path moved to a temp dir, and checks the file
// holds the PEM byte for byte and the sitter is told to verify with it.
func TestWorkerUserDataWritesTheBrokerCA(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB'x\n-----END CERTIFICATE-----\n"
	s := ec2.WorkerUserData{Run: "r", Job: "j", InstanceID: "i-1", BrokerURLParam: "/nightshift/r/workers/i-1/broker-url", BrokerCA: pem}.Script()
	if !strings.Contains(s, "'--amqp-ca-file' '"+ec2.BrokerCAPath+"'") {
		t.Fatalf("sitter not given the CA:\n%s", s)
	}
	// The PEM spans lines inside its quotes: take the command from its
	// start to its redirection.
	i := strings.Index(s, "printf '%s' '-----BEGIN")
	j := strings.Index(s, "> "+ec2.BrokerCAPath)
	if i < 0 || j < i {
		t.Fatalf("no command writes the CA:\n%s", s)
	}
	line := s[i : j+len("> "+ec2.BrokerCAPath)]
	out := filepath.Join(t.TempDir(), "ca.pem")
	cmd := exec.Command("sh", "-c", strings.Replace(line, ec2.BrokerCAPath, out, 1))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != pem {
		t.Errorf("CA file = %q (%v), want %q", got, err, pem)
	}
	if plain := (ec2.WorkerUserData{Run: "r", Job: "j", InstanceID: "i-1", BrokerURLParam: "/nightshift/r/workers/i-1/broker-url"}).Script(); strings.Contains(plain, "amqp-ca-file") {
		t.Errorf("a CA-less script names a CA file:\n%s", plain)
	}
}
