package ec2worker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"nightshift"
	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/jobspec"
	"nightshift/internal/ssmparams"
	"nightshift/internal/store/provstore"
	"nightshift/internal/worker/ec2worker"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

const brokerURL = "amqp://worker:s3cr3t-pw@10.0.0.5:5672/"

func newRun() string { return "w" + uuid.NewString()[:8] }

func specJSON(image string) []byte {
	return []byte(`{"driver":"ec2","instance":{"image":"` + image + `","instance_type":"t3.micro","sitter_path":"/opt/ns/sitter"},` +
		`"worker":{"name":"sleeper","command":["/opt/ns/sleeper"]},"engine":{"site":"x"}}`)
}

// sdk is a raw SDK client on moto, for wrapping with faults and for acting
// behind Nightshift's back.
func sdk(t *testing.T) *awsec2.Client {
	t.Helper()
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithBaseEndpoint(u), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	return awsec2.NewFromConfig(cfg)
}

func newDriver(t *testing.T, api ec2.API, run string) (*ec2worker.Driver, *ec2.Client) {
	t.Helper()
	return newDriverWithKey(t, api, run, nil)
}

func newDriverWithKey(t *testing.T, api ec2.API, run string, key ed25519.PublicKey) (*ec2worker.Driver, *ec2.Client) {
	t.Helper()
	cl := ec2.NewWithAPI(api, nil)
	d, err := ec2worker.New(ec2worker.Config{Params: motoParams(t), Run: run, Client: cl, BrokerURL: brokerURL,
		WaitTimeout: 20 * time.Second, RetryDelay: time.Millisecond, CommandKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave nothing billing on the shared moto whatever the test did.
		if _, left, err := cl.Sweep(context.Background(), run, false); err != nil || len(left) > 0 {
			t.Errorf("cleanup sweep: left %v, err %v", left, err)
		}
	})
	return d, cl
}

func live(t *testing.T, cl *ec2.Client, run string) []ec2.Instance {
	t.Helper()
	got, err := cl.Find(context.Background(), map[string]string{ec2.TagRun: run}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLaunchTagsListTerminateSweep(t *testing.T) {
	run := newRun()
	d, cl := newDriver(t, sdk(t), run)
	ctx := context.Background()
	spec := provisioner.InstanceSpec{ID: "sleeper-aa-0", Job: "sleeper", LaunchID: "L1", Run: run, Spec: specJSON(ec2test.Image)}
	res, err := d.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Host, "i-") || res.Address == "" || res.State != nightshift.StateRunning {
		t.Fatalf("launch result %+v: want the EC2 id as Host, an address and running", res)
	}
	again, err := d.Launch(ctx, spec) // a retry after a crash must adopt
	if err != nil || again.Host != res.Host {
		t.Fatalf("second launch %+v (err %v), want the same instance %s", again, err, res.Host)
	}
	if _, err := d.Launch(ctx, provisioner.InstanceSpec{ID: "sleeper-aa-1", Job: "sleeper", LaunchID: "L1", Run: run, Spec: specJSON(ec2test.Image)}); err != nil {
		t.Fatal(err)
	}
	insts := live(t, cl, run)
	if len(insts) != 2 {
		t.Fatalf("%d live instances, want 2: %v", len(insts), insts)
	}
	for k, want := range map[string]string{ec2.TagRun: run, ec2.TagOwner: "provisioner", ec2.TagJob: "sleeper", ec2.TagLaunch: "L1"} {
		if insts[0].Tags[k] != want {
			t.Errorf("tag %s = %q, want %q", k, insts[0].Tags[k], want)
		}
	}
	owned, err := d.List(ctx)
	if err != nil || len(owned) != 2 || owned[0].InstanceID != "sleeper-aa-0" || owned[0].Host != res.Host || owned[0].Job != "sleeper" || owned[0].LaunchID != "L1" || owned[0].Run != run {
		t.Fatalf("List = %+v (err %v)", owned, err)
	}
	h, err := d.Health(ctx)
	if err != nil || h["sleeper-aa-0"] != "ok" {
		t.Fatalf("Health = %v (err %v)", h, err)
	}

	if err := d.Terminate(ctx, "sleeper-aa-0"); err != nil {
		t.Fatal(err)
	}
	if err := d.Terminate(ctx, "sleeper-aa-0"); err != nil {
		t.Fatalf("terminating an instance already gone: %v", err)
	}
	if err := d.Terminate(ctx, "never-launched-0"); err != nil {
		t.Fatalf("terminating an instance never launched: %v", err)
	}
	owned, err = d.List(ctx)
	if err != nil || len(owned) != 1 || owned[0].InstanceID != "sleeper-aa-1" {
		t.Fatalf("after terminate List = %+v (err %v)", owned, err)
	}
	destroyed, remaining, err := cl.Sweep(ctx, run, false)
	if err != nil || len(destroyed) != 1 || len(remaining) != 0 {
		t.Fatalf("sweep destroyed %v remaining %v err %v", destroyed, remaining, err)
	}
	if got := live(t, cl, run); len(got) != 0 {
		t.Fatalf("live after sweep: %v", got)
	}
	if owned, _ := d.List(ctx); len(owned) != 0 {
		t.Fatalf("List after sweep: %v", owned)
	}
}

// recordingAPI keeps the last RunInstances input so tests can read the user
// data the driver sent.
type recordingAPI struct {
	ec2.API
	last *awsec2.RunInstancesInput
}

func (r *recordingAPI) RunInstances(ctx context.Context, in *awsec2.RunInstancesInput, o ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error) {
	r.last = in
	return r.API.RunInstances(ctx, in, o...)
}

// TestUserDataHoldsNoSecret: the worker's broker URL (its own password)
// is stored as an SSM SecureString parameter under /nightshift/<run>/ and
// the user data EC2 keeps, read back with DescribeInstanceAttribute as
// anyone allowed to could, names the parameter and holds no password, nor
// the run's secret or private command key. Terminating the worker deletes
// its parameter, and teardown's sweep of the run's path leaves none.
func TestUserDataHoldsNoSecret(t *testing.T) {
	run := newRun()
	api := sdk(t)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := newDriverWithKey(t, api, run, key.Public().(ed25519.PublicKey))
	ctx := context.Background()
	params, err := motoParams(t)(ctx, "us-east-1", "")
	if err != nil {
		t.Fatal(err)
	}
	st := params.(*ssmparams.Store)
	t.Cleanup(func() { st.DeleteRun(context.Background(), run, false) })
	own := "amqp://ns." + run + ".worker.work-bb-0:own-pw-" + run + "@10.0.0.5:5672/"
	res, err := d.Launch(ctx, provisioner.InstanceSpec{ID: "work-bb-0", Job: "work", LaunchID: "L2", Run: run, Spec: specJSON(ec2test.Image), BrokerURL: own})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Launch(ctx, provisioner.InstanceSpec{ID: "work-bb-1", Job: "work", LaunchID: "L2", Run: run, Spec: specJSON(ec2test.Image)}); err != nil {
		t.Fatal(err)
	}
	attr, err := api.DescribeInstanceAttribute(ctx, &awsec2.DescribeInstanceAttributeInput{InstanceId: aws.String(res.Host), Attribute: types.InstanceAttributeNameUserData})
	if err != nil {
		t.Fatal(err)
	}
	if attr.UserData == nil {
		t.Fatal("no user data on the instance")
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(attr.UserData.Value))
	if err != nil {
		t.Fatal(err)
	}
	ud := string(raw)
	param := "/nightshift/" + run + "/workers/work-bb-0/broker-url"
	for _, want := range []string{"'/opt/ns/sitter' 'agent' '--run' '" + run + "' '--job' 'work' '--instance' 'work-bb-0'",
		"'--amqp-url-ssm' '" + param + "'", "'--ssm-region' 'us-east-1'",
		"'--spec' '/etc/nightshift/spec.json'", "umask 077", `"command":["/opt/ns/sleeper"]`,
		// The public half of the run's command key, to verify drain and control.
		"'--command-key' '" + hex.EncodeToString(key.Public().(ed25519.PublicKey)) + "'"} {
		if !strings.Contains(ud, want) {
			t.Errorf("user data lacks %q:\n%s", want, ud)
		}
	}
	// No broker password, neither the worker's own nor the run-wide one;
	// never the run's HMAC secret, with which it could sign terminate_all,
	// nor the private command key, with which it could sign a drain.
	for _, bad := range []string{"own-pw-", "s3cr3t-pw", "amqp://", "--amqp-url-file", "--secret-file", "/etc/nightshift/secret",
		hex.EncodeToString(key.Seed()), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key.Seed())} {
		if strings.Contains(ud, bad) {
			t.Errorf("user data holds %q:\n%s", bad, ud)
		}
	}
	if strings.Count(ud, "#!/bin/sh") != 1 {
		t.Errorf("want one script, got:\n%s", ud)
	}
	// The parameters exist, as SecureStrings, with the URLs.
	for name, want := range map[string]string{param: own, "/nightshift/" + run + "/workers/work-bb-1/broker-url": brokerURL} {
		got, err := st.Get(ctx, name)
		if err != nil || got != want {
			t.Errorf("parameter %s = %q (err %v), want %q", name, got, err, want)
		}
	}
	ssmAPI := ssm.NewFromConfig(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(ec2test.URL(t)),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	out, err := ssmAPI.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(param)})
	if err != nil || out.Parameter.Type != ssmtypes.ParameterTypeSecureString {
		t.Errorf("parameter %s: %+v (err %v), want a SecureString", param, out, err)
	}

	if err := d.Terminate(ctx, "work-bb-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, param); !errors.Is(err, ssmparams.ErrNotFound) {
		t.Errorf("parameter of a terminated worker: err %v, want it deleted", err)
	}
	// Teardown sweeps what is left under the run's path.
	if _, _, err := (ssmparams.Sweeper{Store: st}).Sweep(ctx, run, false); err != nil {
		t.Fatal(err)
	}
	if left, err := st.List(ctx, run); err != nil || len(left) != 0 {
		t.Fatalf("after the sweep: %v (err %v), want no parameter", left, err)
	}
}

// deniedAPI answers every launch as EC2 does without IAM permission.
type deniedAPI struct{ ec2.API }

func (deniedAPI) RunInstances(context.Context, *awsec2.RunInstancesInput, ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "UnauthorizedOperation", Message: "You are not authorized to perform this operation."}
}

// lossyAPI launches for real but reports a dropped connection, drops times.
type lossyAPI struct {
	ec2.API
	drops, calls int
}

func (l *lossyAPI) RunInstances(ctx context.Context, in *awsec2.RunInstancesInput, o ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error) {
	l.calls++
	out, err := l.API.RunInstances(ctx, in, o...)
	if err == nil && l.drops > 0 {
		l.drops--
		return nil, errors.New("read tcp: connection reset by peer")
	}
	return out, err
}

func TestAmbiguousLaunchErrorIsRetriedWithoutDoubling(t *testing.T) {
	run := newRun()
	lossy := &lossyAPI{API: sdk(t), drops: 1}
	d, cl := newDriver(t, lossy, run)
	res, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: "w-cc-0", Job: "w", LaunchID: "L3", Run: run, Spec: specJSON(ec2test.Image)})
	if err != nil {
		t.Fatal(err)
	}
	got := live(t, cl, run)
	if lossy.calls != 1 || len(got) != 1 || got[0].ID != res.Host {
		t.Fatalf("RunInstances called %d times, live %v; want one call and the adopted %s", lossy.calls, got, res.Host)
	}
}

func openStore(t *testing.T, dir string) *provstore.Store {
	t.Helper()
	st, err := provstore.Open(context.Background(), filepath.Join(dir, "prov.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// ec2Jobs defines the jobs the tests launch, as a plan would: specJSON's
// spec (without the engine labels a launch adds) for each.
func ec2Jobs(t *testing.T, image string) map[string]jobspec.Spec {
	t.Helper()
	var s jobspec.Spec
	if err := json.Unmarshal(specJSON(image), &s); err != nil {
		t.Fatal(err)
	}
	return map[string]jobspec.Spec{"sleeper": s, "work": s, "w": s}
}

// newProvisioner runs the test jobs (ec2Jobs of the moto image) unless
// given others.
func newProvisioner(t *testing.T, d provisioner.Driver, st provisioner.Store, run string, jobs ...map[string]jobspec.Spec) *provisioner.Provisioner {
	t.Helper()
	js := ec2Jobs(t, ec2test.Image)
	if len(jobs) > 0 {
		js = jobs[0]
	}
	p, err := provisioner.New(provisioner.Config{Run: run, Driver: d, Store: st, ReconcileEvery: -1, CallTimeout: 30 * time.Second, Jobs: js})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runUntilIdle runs p until its queues drain.
func runUntilIdle(t *testing.T, p *provisioner.Provisioner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-p.Ready():
	case <-ctx.Done():
		t.Fatal("provisioner never became ready")
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func record(t *testing.T, st provisioner.Store, id string) provisioner.Instance {
	t.Helper()
	r, err := st.Instance(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func states(r provisioner.Instance) string {
	var s []string
	for _, c := range r.History {
		s = append(s, string(c.State))
	}
	return strings.Join(s, ">")
}

func TestCrashRecoveryThroughTheProvisioner(t *testing.T) {
	api := sdk(t)
	req := provisionertest.Launch(ec2Jobs(t, ec2test.Image), "L-crash", "sleeper", 1)
	id := provisioner.InstanceID("sleeper", "L-crash", 0)

	t.Run("before the driver call", func(t *testing.T) {
		run := newRun()
		d, cl := newDriver(t, api, run)
		st := openStore(t, t.TempDir())
		// The first provisioner records the launch and "crashes" before Run
		// ever calls the driver.
		if _, err := newProvisioner(t, d, st, run).Launch(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if got := live(t, cl, run); len(got) != 0 {
			t.Fatalf("nothing should be launched yet: %v", got)
		}
		runUntilIdle(t, newProvisioner(t, d, st, run))
		runUntilIdle(t, newProvisioner(t, d, st, run)) // and a second restart changes nothing
		got := live(t, cl, run)
		r := record(t, st, id)
		if len(got) != 1 || r.State != nightshift.StateRunning || r.Host != got[0].ID {
			t.Fatalf("live %v, record %s host %s; want one instance, running, recorded", got, r.State, r.Host)
		}
	})

	t.Run("just after the driver call", func(t *testing.T) {
		run := newRun()
		d, cl := newDriver(t, api, run)
		st := openStore(t, t.TempDir())
		if _, err := newProvisioner(t, d, st, run).Launch(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		// The driver call went through, then the process died before
		// recording it.
		res, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: id, Job: "sleeper", LaunchID: "L-crash", Run: run, Spec: specJSON(ec2test.Image)})
		if err != nil {
			t.Fatal(err)
		}
		if r := record(t, st, id); r.State != nightshift.StateRequested {
			t.Fatalf("record is %s before recovery", r.State)
		}
		p := newProvisioner(t, d, st, run)
		if err := p.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		r := record(t, st, id)
		if r.State != nightshift.StateRunning || !strings.Contains(r.Reason, "adopted") || states(r) != "requested>running" || r.Host != res.Host {
			t.Fatalf("record %s (%q, history %s, host %s), want requested>running adopted on %s", r.State, r.Reason, states(r), r.Host, res.Host)
		}
		runUntilIdle(t, p)
		if got := live(t, cl, run); len(got) != 1 || got[0].ID != res.Host {
			t.Fatalf("live %v, want only %s", got, res.Host)
		}
	})
}

func TestRefusedLaunchesBecomeFailedWithAReason(t *testing.T) {
	api := sdk(t)
	cases := []struct {
		name   string
		api    ec2.API
		image  string
		reason string
	}{
		{"bad AMI", api, "ami-00000000deadbeef0", "bad image (InvalidAMIID"},
		{"unauthorized", deniedAPI{api}, ec2test.Image, "not authorized (UnauthorizedOperation)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := newRun()
			d, cl := newDriver(t, c.api, run)
			st := openStore(t, t.TempDir())
			jobs := ec2Jobs(t, c.image)
			p := newProvisioner(t, d, st, run, jobs)
			insts, err := p.Launch(context.Background(), provisionertest.Launch(jobs, "L-bad", "w", 1))
			if err != nil {
				t.Fatal(err)
			}
			runUntilIdle(t, p)
			r := record(t, st, insts[0].ID)
			if r.State != nightshift.StateFailed || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("record %s %q, want failed with %q", r.State, r.Reason, c.reason)
			}
			if got := live(t, cl, run); len(got) != 0 {
				t.Fatalf("a refused launch left instances: %v", got)
			}
		})
	}
}

func TestBadSpecFieldsBecomeFailedNamingTheField(t *testing.T) {
	run := newRun()
	d, _ := newDriver(t, sdk(t), run)
	st := openStore(t, t.TempDir())
	jobs := map[string]jobspec.Spec{"w": {Driver: "ec2", Instance: map[string]any{"image": ec2test.Image, "instance_typo": "t3.micro"}}}
	p := newProvisioner(t, d, st, run, jobs)
	insts, err := p.Launch(context.Background(), provisionertest.Launch(jobs, "L-f", "w", 1))
	if err != nil {
		t.Fatal(err)
	}
	runUntilIdle(t, p)
	if r := record(t, st, insts[0].ID); r.State != nightshift.StateFailed || !strings.Contains(r.Reason, "instance_typo") {
		t.Fatalf("record %s %q, want failed naming instance_typo", r.State, r.Reason)
	}
}

// TestKilledInstanceIsRecordedDisappeared is the provisioner half of
// "killing an instance gets it replaced": an instance terminated behind
// Nightshift's back is failed "disappeared" at the next reconcile (the
// controller then launches a replacement), and its sibling is untouched.
func TestKilledInstanceIsRecordedDisappeared(t *testing.T) {
	run := newRun()
	d, cl := newDriver(t, sdk(t), run)
	st := openStore(t, t.TempDir())
	clock := clockwork.NewFakeClock()
	p, err := provisioner.New(provisioner.Config{Run: run, Driver: d, Store: st, ReconcileEvery: -1, CallTimeout: 30 * time.Second,
		Jobs: ec2Jobs(t, ec2test.Image), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	insts, err := p.Launch(context.Background(), provisionertest.Launch(ec2Jobs(t, ec2test.Image), "L-kill", "sleeper", 2))
	if err != nil {
		t.Fatal(err)
	}
	runUntilIdle(t, p)
	victim, sibling := record(t, st, insts[0].ID), record(t, st, insts[1].ID)
	if victim.State != nightshift.StateRunning || sibling.State != nightshift.StateRunning {
		t.Fatalf("before the kill: %s %s", victim.State, sibling.State)
	}
	if err := cl.Terminate(context.Background(), []string{victim.Host}); err != nil {
		t.Fatal(err)
	}
	// One list that misses it is no proof on EC2 (eventually consistent):
	// the second, a reconcile interval later, is.
	if err := p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := record(t, st, victim.ID); r.State != nightshift.StateRunning {
		t.Fatalf("after one missing list the victim is %s %q, want still running", r.State, r.Reason)
	}
	clock.Advance(30 * time.Second)
	if err := p.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := record(t, st, victim.ID); r.State != nightshift.StateFailed || r.Reason != "disappeared" {
		t.Fatalf("killed instance recorded %s %q, want failed disappeared", r.State, r.Reason)
	}
	if r := record(t, st, sibling.ID); r.State != nightshift.StateRunning {
		t.Fatalf("sibling became %s", r.State)
	}
	if got := live(t, cl, run); len(got) != 1 || got[0].ID != sibling.Host {
		t.Fatalf("live %v, want only the sibling %s", got, sibling.Host)
	}
}

func TestNewChecksConfig(t *testing.T) {
	cl := ec2.NewWithAPI(nil, nil)
	for _, c := range []struct {
		cfg  ec2worker.Config
		want string
	}{
		{ec2worker.Config{Client: cl, BrokerURL: "amqp://h/"}, "Run"},
		{ec2worker.Config{Run: "r", BrokerURL: "amqp://h/"}, "Client"},
		{ec2worker.Config{Run: "r", Client: cl}, "BrokerURL"},
	} {
		if _, err := ec2worker.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

// TestSpecEndpointGetsItsOwnClient: a job naming another endpoint (or
// region) is launched through a client built for it, and List, Terminate
// and Health look there too.
func TestSpecEndpointGetsItsOwnClient(t *testing.T) {
	api := sdk(t)
	moto := ec2test.URL(t)
	other := strings.Replace(moto, "127.0.0.1", "localhost", 1)
	if other == moto {
		t.Skip("moto URL has no 127.0.0.1 to rewrite: " + moto)
	}
	run := newRun()
	cl := ec2.NewWithAPI(api, nil)
	t.Cleanup(func() { cl.Sweep(context.Background(), run, false) })
	var built []string
	d, err := ec2worker.New(ec2worker.Config{Params: motoParams(t), Run: run, Client: cl, Region: "us-east-1", EndpointURL: moto, BrokerURL: brokerURL,
		NewClient: func(ctx context.Context, c ec2.Config) (*ec2.Client, error) {
			built = append(built, c.Region+" "+c.EndpointURL)
			return ec2.New(ctx, c)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := []byte(`{"instance":{"image":"` + ec2test.Image + `","endpoint_url":"` + other + `"}}`)
	if _, err := d.Launch(ctx, provisioner.InstanceSpec{ID: "far-dd-0", Job: "far", LaunchID: "L4", Run: run, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Launch(ctx, provisioner.InstanceSpec{ID: "far-dd-1", Job: "far", LaunchID: "L4", Run: run, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || built[0] != "us-east-1 "+other {
		t.Fatalf("clients built %q, want one for %s", built, other)
	}
	// Both clients see the same moto: each instance must be listed once.
	owned, err := d.List(ctx)
	if err != nil || len(owned) != 2 {
		t.Fatalf("List = %+v (err %v), want the 2 instances once each", owned, err)
	}
	if err := d.Terminate(ctx, "far-dd-0"); err != nil {
		t.Fatal(err)
	}
	if got := live(t, cl, run); len(got) != 1 || got[0].Tags[ec2.TagInstance] != "far-dd-1" {
		t.Fatalf("after terminate live %v, want far-dd-1 only", got)
	}
}

func TestUserDataHandsTheWorkerTheBrokerCA(t *testing.T) {
	run := newRun()
	rec := &recordingAPI{API: sdk(t)}
	cl := ec2.NewWithAPI(rec, nil)
	ca := "-----BEGIN CERTIFICATE-----\nMIIBrunCA\n-----END CERTIFICATE-----\n"
	d, err := ec2worker.New(ec2worker.Config{Params: motoParams(t), Run: run, Client: cl, BrokerURL: "amqps://u:s3cr3t-pw@10.0.0.5:5671/", BrokerCA: []byte(ca),
		WaitTimeout: 20 * time.Second, RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, left, err := cl.Sweep(context.Background(), run, false); err != nil || len(left) > 0 {
			t.Errorf("cleanup sweep: left %v, err %v", left, err)
		}
	})
	if _, err := d.Launch(context.Background(), provisioner.InstanceSpec{ID: "work-ca-0", Job: "work", LaunchID: "L3", Run: run, Spec: specJSON(ec2test.Image)}); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(rec.last.UserData))
	if err != nil {
		t.Fatal(err)
	}
	ud := string(raw)
	for _, want := range []string{"'" + ca + "' > " + ec2.BrokerCAPath, "'--amqp-ca-file' '" + ec2.BrokerCAPath + "'"} {
		if !strings.Contains(ud, want) {
			t.Errorf("user data lacks %q:\n%s", want, ud)
		}
	}
}

// TestRestartListsEveryRegionOfTheLedger: a provisioner restarted with a
// fresh driver, which knows only the default region, finds the workers it
// launched in another region through its ledger before it judges anything:
// none is declared disappeared, none replaced or killed. One killed there
// behind Nightshift's back is declared disappeared only by the second list.
func TestRestartListsEveryRegionOfTheLedger(t *testing.T) {
	api := sdk(t)
	moto := ec2test.URL(t)
	run := newRun()
	ctx := context.Background()
	west, err := ec2.New(ctx, ec2.Config{Region: "us-west-2", EndpointURL: moto})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, left, err := west.Sweep(context.Background(), run, false); err != nil || len(left) > 0 {
			t.Errorf("cleanup sweep us-west-2: left %v, err %v", left, err)
		}
	})
	var js jobspec.Spec
	spec := `{"driver":"ec2","instance":{"image":"` + ec2test.Image + `","region":"us-west-2","endpoint_url":"` + moto + `"},"worker":{"name":"s","command":["/bin/true"]}}`
	if err := json.Unmarshal([]byte(spec), &js); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]jobspec.Spec{"far": js}
	st := openStore(t, t.TempDir())
	start := func(jobs map[string]jobspec.Spec) (*provisioner.Provisioner, *clockwork.FakeClock) {
		d, err := ec2worker.New(ec2worker.Config{Params: motoParams(t), Run: run, Client: ec2.NewWithAPI(api, nil), Region: "us-east-1", EndpointURL: moto,
			BrokerURL: brokerURL, WaitTimeout: 20 * time.Second, RetryDelay: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		clock := clockwork.NewFakeClock()
		p, err := provisioner.New(provisioner.Config{Run: run, Driver: d, Store: st, ReconcileEvery: -1, CallTimeout: 30 * time.Second, Jobs: jobs, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return p, clock
	}
	p, _ := start(jobs)
	insts, err := p.Launch(ctx, provisionertest.Launch(jobs, "L-west", "far", 3))
	if err != nil {
		t.Fatal(err)
	}
	runUntilIdle(t, p)
	before, err := west.Find(ctx, map[string]string{ec2.TagRun: run}, nil)
	if err != nil || len(before) != 3 {
		t.Fatalf("us-west-2 holds %d instances (%v), want 3", len(before), err)
	}

	// The restarted provisioner holds no job definitions: the ledger alone
	// must lead it to us-west-2.
	p, clock := start(nil)
	for range 2 {
		if err := p.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Second)
	}
	for _, in := range insts {
		if r := record(t, st, in.ID); r.State != nightshift.StateRunning {
			t.Errorf("after the restart %s is %s %q, want running", in.ID, r.State, r.Reason)
		}
	}
	after, err := west.Find(ctx, map[string]string{ec2.TagRun: run}, nil)
	if err != nil || len(after) != 3 {
		t.Fatalf("after the restart us-west-2 holds %d instances (%v), want the same 3", len(after), err)
	}
	for i := range after {
		if after[i].ID != before[i].ID {
			t.Fatalf("instances changed: %v, then %v", before, after)
		}
	}

	victim := record(t, st, insts[0].ID)
	if err := west.Terminate(ctx, []string{victim.Host}); err != nil {
		t.Fatal(err)
	}
	if err := p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if r := record(t, st, victim.ID); r.State != nightshift.StateRunning {
		t.Fatalf("after one missing list %s is %s, want still running", victim.ID, r.State)
	}
	clock.Advance(30 * time.Second)
	if err := p.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if r := record(t, st, victim.ID); r.State != nightshift.StateFailed || r.Reason != "disappeared" {
		t.Fatalf("after two missing lists %s is %s %q, want failed disappeared", victim.ID, r.State, r.Reason)
	}
}

// motoParams is Config.Params on the test's moto: a spec's own endpoint
// where it names one, moto otherwise.
func motoParams(t *testing.T) func(ctx context.Context, region, endpoint string) (ec2worker.ParamStore, error) {
	t.Helper()
	u := ec2test.URL(t)
	return func(ctx context.Context, region, endpoint string) (ec2worker.ParamStore, error) {
		if endpoint == "" {
			endpoint = u
		}
		if region == "" {
			region = "us-east-1"
		}
		return ssmparams.New(ctx, ssmparams.Config{Region: region, EndpointURL: endpoint})
	}
}
