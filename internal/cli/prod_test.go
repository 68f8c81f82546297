package cli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"nightshift/controller"
	"nightshift/internal/busid"
	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/process"
	"nightshift/internal/procscan"
	"nightshift/internal/runlayout"
	"nightshift/internal/ssmparams"
	"nightshift/internal/store/provstore"
	"nightshift/internal/testsupport"
	"nightshift/mgmt"
	"nightshift/provisioner"
)

// needRabbitNode skips (fails under NIGHTSHIFT_TEST_STRICT=1) without
// RabbitMQ's programs: in test mode the prod plan's broker is a private node
// on this machine, as plans/local.toml's is.
func needRabbitNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"rabbitmq-server", "rabbitmqctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " not found: the prod plan's broker cannot start in test mode"
			if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// buildDaemons builds what the prod plan's daemon types fetch from
// release_url (a file:// URL in the test).
func buildDaemons(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "nightshift/cmd/provisioner", "nightshift/cmd/controller")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build daemons: %v\n%s", err, out)
	}
	return dir
}

// defaultGroup returns the id of the default VPC's security group on moto,
// which moto checks RunInstances' groups against as EC2 does.
func defaultGroup(t *testing.T, endpoint, region string) string {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithBaseEndpoint(endpoint), config.WithRetryMaxAttempts(2), config.WithRegion(region))
	if err != nil {
		t.Fatal(err)
	}
	out, err := awsec2.NewFromConfig(cfg).DescribeSecurityGroups(context.Background(), &awsec2.DescribeSecurityGroupsInput{GroupNames: []string{"default"}})
	if err != nil || len(out.SecurityGroups) == 0 {
		t.Fatalf("moto's default security group: %v", err)
	}
	return aws.ToString(out.SecurityGroups[0].GroupId)
}

// workerRegion is where the prod test runs the pools: not the services'
// region (us-east-1), so that everything regional is exercised.
const workerRegion = "us-west-2"

// prodRun is one launch of plans/prod.toml against moto in test mode, the
// pools in workerRegion.
type prodRun struct {
	t          *testing.T
	home, name string
	moto       string
	cl, wcl    *ec2.Client      // the services' region, worker_region
	ssm, wssm  *ssmparams.Store // the same two regions
}

// launchProd launches plans/prod.toml as a new run in a fresh home, with
// the test mode's switch (NIGHTSHIFT_EC2_STEPS_LOCAL=1) set for the launch
// only: launch records it in the run, so every later mgmt command of the
// test runs without it, as a user's would.
func launchProd(t *testing.T, bin string, globals ...string) *prodRun {
	t.Helper()
	cl, moto := ec2test.Client(t) // also sets test AWS credentials and region
	ctx := context.Background()
	wcl, err := ec2.New(ctx, ec2.Config{Region: workerRegion, EndpointURL: moto, RetryMaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	t.Setenv("NIGHTSHIFT_TEST_MODE", "1")
	t.Setenv("AWS_ENDPOINT_URL", "") // only the plan's endpoint_url may point anywhere
	rb := make([]byte, 4)
	rand.Read(rb)
	r := &prodRun{t: t, home: home, name: "prod-" + hex.EncodeToString(rb), moto: moto, cl: cl, wcl: wcl}
	for _, reg := range []struct {
		region string
		dst    **ssmparams.Store
	}{{"us-east-1", &r.ssm}, {workerRegion, &r.wssm}} {
		if *reg.dst, err = ssmparams.New(ctx, ssmparams.Config{Region: reg.region, EndpointURL: moto}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		procscan.Kill("", home, r.name, 0)
		cl.Sweep(context.Background(), r.name, false)
		wcl.Sweep(context.Background(), r.name, false)
		r.ssm.DeleteRun(context.Background(), r.name, false)
		r.wssm.DeleteRun(context.Background(), r.name, false)
	})
	args := []string{"--home", home, "--plain", "--name", r.name,
		"-g", "endpoint_url=" + moto, "-g", "ami=" + ec2test.Image,
		"-g", "security_group=" + defaultGroup(t, moto, "us-east-1"),
		"-g", "worker_region=" + workerRegion, "-g", "worker_security_group=" + defaultGroup(t, moto, workerRegion),
		// moto checks these against resources nobody created; EC2 would too.
		"-g", "key_name=", "-g", "provisioner_profile=", "-g", "worker_profile=",
		"-g", "release_url=file://" + bin,
		// Never fetched: moto runs no user data. The driver wants http(s).
		"-g", "sitter_url=http://127.0.0.1:9/sitter"}
	for _, g := range globals {
		args = append(args, "-g", g)
	}
	args = append(args, "../../plans/prod.toml")
	t.Setenv("NIGHTSHIFT_EC2_STEPS_LOCAL", "1")
	code, out, stderr := run(t, launch, args...)
	// From here on as a user would: without the switch.
	t.Setenv("NIGHTSHIFT_EC2_STEPS_LOCAL", "")
	if code != 0 {
		t.Fatalf("launch exit %d\nstdout:\n%s\nstderr:\n%s\n%s", code, out, stderr, daemonLogs(home, r.name))
	}
	return r
}

// liveWorkers lists the run's live worker instances of job in worker_region.
func (r *prodRun) liveWorkers(job string) ([]ec2.Instance, error) {
	return r.wcl.Find(context.Background(), map[string]string{ec2.TagRun: r.name, ec2.TagOwner: "provisioner", ec2.TagJob: job}, nil)
}

// ledger reads the provisioner's records of job (every instance it ever
// launched for it, live or not) from its SQLite ledger, as the daemon
// keeps it in test mode.
func (r *prodRun) ledger(job string) []provisioner.Instance {
	r.t.Helper()
	st, err := provstore.Open(context.Background(), runlayout.Of(r.home, r.name).ProvisionerDB())
	if err != nil {
		r.t.Fatalf("open the provisioner's ledger: %v", err)
	}
	defer st.Close()
	recs, err := st.Instances(context.Background(), provisioner.Filter{Job: job})
	if err != nil {
		r.t.Fatalf("read the provisioner's ledger: %v", err)
	}
	return recs
}

// service returns a service's status.
func (r *prodRun) service(name string) mgmt.ServiceStatus {
	r.t.Helper()
	for _, l := range status(r.t, r.home, r.name).Levels {
		for _, s := range l.Services {
			if s.Name == name {
				return s
			}
		}
	}
	r.t.Fatalf("no service %s in the run's status", name)
	return mgmt.ServiceStatus{}
}

// killProvisioner kill -9s the provisioner's daemon and waits until it is
// gone.
func (r *prodRun) killProvisioner() {
	r.t.Helper()
	pid, err := strconv.Atoi(r.service("provisioner").Attributes["pid"])
	if err != nil || pid <= 0 {
		r.t.Fatalf("provisioner pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		r.t.Fatalf("kill -9 the provisioner: %v", err)
	}
	testsupport.Eventually(r.t, 10*time.Second, func() error {
		if process.Alive(pid) {
			return fmt.Errorf("provisioner %d still alive after kill -9", pid)
		}
		return nil
	})
}

// teardown runs `mgmt teardown` and checks that nothing of the run is left
// anywhere it went: no live instance tagged with the run in either region,
// no SSM parameter under /nightshift/<run>/ in either, no daemon.
func (r *prodRun) teardown() string {
	r.t.Helper()
	ctx := context.Background()
	code, out, stderr := run(r.t, mgmtc, "--home", r.home, "teardown", r.name)
	if code != 0 {
		r.t.Errorf("teardown exit %d\n%s\n%s", code, out, stderr)
	}
	for _, c := range []*ec2.Client{r.cl, r.wcl} {
		for _, state := range []string{"pending", "running", "stopping", "stopped", "shutting-down"} {
			left, err := c.Find(ctx, map[string]string{ec2.TagRun: r.name}, []string{state})
			if err != nil || len(left) != 0 {
				r.t.Errorf("after teardown %d instances of the run are %s: %v (err %v)\n%s", len(left), state, left, err, out)
			}
		}
	}
	for _, st := range []*ssmparams.Store{r.ssm, r.wssm} {
		if names, err := st.List(ctx, r.name); err != nil || len(names) != 0 {
			r.t.Errorf("after teardown SSM parameters of the run in %s: %v (err %v)\n%s", st.Region(), names, err, out)
		}
	}
	if left, _ := procscan.Find("", r.home, r.name); len(left) != 0 {
		r.t.Errorf("daemons left after teardown: %v", left)
	}
	if st := status(r.t, r.home, r.name); st.State != "terminated" {
		r.t.Errorf("after teardown the run is %q", st.State)
	}
	return out
}

// TestProdPlanOnMoto boots the whole of plans/prod.toml against moto: the
// three service instances are launched on EC2 (moto) in one region, their
// steps run here (NIGHTSHIFT_EC2_STEPS_LOCAL=1, NIGHTSHIFT_TEST_MODE=1), so
// the built-in types run their daemons here as for plans/local.toml (a
// private TLS broker node, the provisioner and controller fetched from
// release_url and started detached) instead of as systemd units; the
// provisioner runs with --driver ec2 and the controller's pools become
// worker instances in a second region (worker_region), each with the
// workers' instance profile; `mgmt status` shows both pools with their
// workers, as for plans/local.toml. Then the provisioner is killed -9 and
// repaired: no worker is declared disappeared, none is launched twice; a
// worker terminated behind Nightshift's back is replaced; and `mgmt
// teardown`, with the provisioner alive, freezes the pools, terminates
// every worker through the provisioner and leaves no instance and no SSM
// parameter of the run in either region and no daemon running. Every mgmt
// command runs without the test mode's switch: the run recorded it.
func TestProdPlanOnMoto(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real daemons")
	}
	needRabbitNode(t)
	bin := buildDaemons(t)
	_, moto := ec2test.Client(t)
	profile := "nightshift-worker-" + strings.ToLower(rand.Text()[:8])
	createInstanceProfile(t, moto, profile)
	// reconcile_every: two reconciles (the disappeared rule) in seconds.
	r := launchProd(t, bin, "worker_profile="+profile, "reconcile_every=1s")
	runName, home := r.name, r.home
	cl, wcl := r.cl, r.wcl
	ctx := context.Background()

	st := status(t, home, runName)
	if st.State != "ready" || len(st.Levels) != 3 {
		t.Fatalf("run %q with %d levels, want ready with 3", st.State, len(st.Levels))
	}
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if !strings.HasPrefix(s.InstanceID, "i-") {
				t.Errorf("service %s on %q, want an EC2 instance", s.Name, s.InstanceID)
			}
			if v := s.Attributes["run_secret"]; v != "" && len(v) == 64 {
				t.Errorf("status shows the run secret of %s unredacted", s.Name)
			}
		}
	}
	// The same types as plans/local.toml, so the same records: each daemon
	// names its component, has a broker user of its own and serves metrics;
	// the broker speaks TLS only.
	for _, l := range st.Levels {
		for _, s := range l.Services {
			a := s.Attributes
			switch s.Name {
			case "broker":
				if !strings.HasPrefix(a["url"], "amqps://") || a["ca_file"] == "" || a["mgmt_url"] == "" {
					t.Errorf("broker exports url %q, ca_file %q, mgmt_url set %v; want a TLS broker with mgmt's own user", a["url"], a["ca_file"], a["mgmt_url"] != "")
				}
			case "provisioner", "controller":
				if a["component"] != s.Name || !strings.HasPrefix(a["metrics_url"], "http://127.0.0.1:") || a["pid"] == "" || a["log"] == "" {
					t.Errorf("%s exports %v; want component, metrics_url, pid and log as a local daemon's", s.Name, a)
				}
				if want := busid.ComponentUser(runName, s.Name, s.Name); a["broker_user"] != want {
					t.Errorf("%s connects as %q, want its own user %s", s.Name, a["broker_user"], want)
				}
			}
		}
	}
	services, err := cl.Find(ctx, map[string]string{ec2.TagRun: runName, ec2.TagOwner: "launch"}, nil)
	if err != nil || len(services) != 3 {
		t.Fatalf("service instances %v (err %v), want 3", services, err)
	}
	// The controller asks the provisioner for the sleeper pool (n = 3); the
	// provisioner's ec2 driver launches them in worker_region. Polling, not
	// a timing assertion.
	var workers []ec2.Instance
	if err := testsupport.PollEvery(60*time.Second, 250*time.Millisecond, func() error {
		workers, err = r.liveWorkers("sleeper")
		if err != nil || len(workers) < 3 {
			return fmt.Errorf("sleeper workers %v (err %v), want 3", workers, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, daemonLogs(home, runName))
	}
	// Each worker has the workers' instance profile, which lets its
	// sitter read its broker URL from SSM.
	for _, w := range workers {
		if got := instanceProfile(t, moto, w.ID); !strings.HasSuffix(got, "/"+profile) {
			t.Errorf("worker %s has instance profile %q, want %s (global worker_profile)", w.ID, got, profile)
		}
	}

	if stray, err := cl.Find(ctx, map[string]string{ec2.TagRun: runName, ec2.TagOwner: "provisioner"}, nil); err != nil || len(stray) != 0 {
		t.Errorf("workers in the services' region %v (err %v), want all in %s", stray, err, workerRegion)
	}
	// Status shows the pools as it does for plans/local.toml: found by what
	// the run's services recorded, asked of the controller over the bus.
	if err := testsupport.PollEvery(30*time.Second, 250*time.Millisecond, func() error {
		st := status(t, home, runName)
		pools := map[string]int{}
		for _, j := range st.Jobs {
			pools[j.Name] = len(j.Workers)
		}
		if pools["sleeper"] < 3 || pools["work"] < 1 {
			return fmt.Errorf("status pools %v (notes %q), want sleeper with 3 workers and work with at least 1", pools, st.Notes)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, daemonLogs(home, runName))
	}

	// A daemon's own log, as for a local run.
	code, out, stderr := run(t, mgmtc, "--home", home, "logs", "--lines", "5", runName, "controller")
	if code != 0 || len(strings.TrimSpace(out)) == 0 {
		t.Errorf("mgmt logs controller exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = run(t, mgmtc, "--home", home, "decisions", runName, "sleeper")
	if code != 0 || len(strings.TrimSpace(out)) == 0 {
		t.Errorf("mgmt decisions exit %d, want the sleeper pool's decisions\n%s\n%s", code, out, stderr)
	}
	// The daemons verify what mgmt signs here: they were handed this
	// machine's run secret, not one made on the broker.
	code, out, stderr = run(t, mgmtc, "--home", home, "reconfigure", runName, "sleeper", "n=3")
	if code != 0 {
		t.Fatalf("signed reconfigure exit %d\n%s\n%s\n%s", code, out, stderr, daemonLogs(home, runName))
	}

	// kill -9 of the provisioner, then its restart (mgmt repair re-boots
	// it; no keeper runs here). The restarted provisioner must find the
	// workers in worker_region, which its ledger names, before it judges
	// any: none may become disappeared, and none is launched again.
	r.killProvisioner()
	code, out, stderr = run(t, mgmtc, "--home", home, "repair", runName)
	if code != 0 {
		t.Fatalf("repair after kill -9 of the provisioner: exit %d\n%s\n%s\n%s", code, out, stderr, daemonLogs(home, runName))
	}
	// A worker terminated behind Nightshift's back (in the console, say)
	// is replaced: the restarted provisioner records it disappeared once
	// two reconciles a reconcile interval apart miss it, which also gives
	// the restart's own reconciles time to (wrongly) judge the others.
	victim := workers[0]
	if err := wcl.Terminate(ctx, []string{victim.ID}); err != nil {
		t.Fatal(err)
	}
	victimID := victim.Tags[ec2.TagInstance]
	if err := testsupport.PollEvery(90*time.Second, 250*time.Millisecond, func() error {
		live, err := r.liveWorkers("sleeper")
		if err != nil {
			return err
		}
		for _, w := range live {
			if w.ID == victim.ID {
				return fmt.Errorf("terminated worker %s still live", victim.ID)
			}
		}
		if len(live) < 3 {
			return fmt.Errorf("%d live sleeper workers, want 3 with a replacement for %s", len(live), victimID)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, daemonLogs(home, runName))
	}
	for _, job := range []string{"sleeper", "work"} {
		recs := r.ledger(job)
		live := 0
		for _, rec := range recs {
			if rec.Reason == "disappeared" && rec.ID != victimID {
				t.Errorf("job %s: worker %s declared disappeared (only %s was terminated behind the run's back)", job, rec.ID, victimID)
			}
			if rec.State.Live() {
				live++
			}
		}
		if job == "sleeper" && (len(recs) != 4 || live != 3) {
			t.Errorf("sleeper ledger: %d records, %d live; want 4 (3, and one replacement) with 3 live: %+v", len(recs), live, recs)
		}
	}
	if live, err := r.liveWorkers("sleeper"); err != nil || len(live) != 3 {
		t.Errorf("live sleeper workers %v (err %v), want exactly 3 (n = 3)", live, err)
	}
	if t.Failed() {
		t.Logf("after the provisioner's restart:\n%s", daemonLogs(home, runName))
	}
	for _, j := range status(t, home, runName).Jobs {
		for _, w := range j.Workers {
			if strings.Contains(w.State, "disappeared") || strings.Contains(w.Health, "disappeared") {
				t.Errorf("status shows worker %s of %s %s/%s", w.ID, j.Name, w.State, w.Health)
			}
		}
	}

	// Something to delete, or the zero after teardown proves nothing.
	if names, err := r.wssm.List(ctx, runName); err != nil || len(names) < 3 {
		t.Errorf("before teardown the workers' region holds SSM parameters %v (err %v), want each worker's broker URL", names, err)
	}
	out = r.teardown()
	for _, fallback := range []string{"could not freeze", "terminate_all failed", "pools unreachable"} {
		if strings.Contains(out, fallback) {
			t.Errorf("teardown fell back (%q) instead of freezing and terminating through the bus:\n%s", fallback, out)
		}
	}
}

// TestProdPlanOnMotoSilentPoolAndDeadProvisioner: a second launch of
// plans/prod.toml in test mode, whose workers never heartbeat (moto runs
// no user data, so no sitter ever starts) with a short boot_timeout:
// each pool ends blocked after block_after_silent (3) silent workers, not
// a replacement every boot_timeout forever. Then the provisioner is
// killed -9 and stays dead, and teardown still leaves no instance and no
// SSM parameter of the run in either region.
func TestProdPlanOnMotoSilentPoolAndDeadProvisioner(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real daemons")
	}
	needRabbitNode(t)
	r := launchProd(t, buildDaemons(t), "worker_boot_timeout=2s")
	blocked := map[string]*controller.Blocked{}
	if err := testsupport.PollEvery(90*time.Second, 250*time.Millisecond, func() error {
		for _, j := range status(t, r.home, r.name).Jobs {
			if j.Blocked != nil {
				blocked[j.Name] = j.Blocked
			}
		}
		if blocked["sleeper"] == nil || blocked["work"] == nil {
			return fmt.Errorf("blocked pools %v, want sleeper and work", blocked)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, daemonLogs(r.home, r.name))
	}
	for _, job := range []string{"sleeper", "work"} {
		// Launches first, then the probes the status counts by then (a
		// probe is counted before it is launched): every launch is one of
		// the three silent ones or a probe.
		launched := len(r.ledger(job))
		var b *controller.Blocked
		for _, j := range status(t, r.home, r.name).Jobs {
			if j.Name == job {
				b = j.Blocked
			}
		}
		if b == nil || b.Cause != controller.BlockedNoHeartbeat || b.FailedLaunches < 3 || !strings.Contains(b.LastCause, "no heartbeat") {
			t.Errorf("job %s blocked as %+v, want no_heartbeat after 3 silent workers", job, b)
			continue
		}
		if launched > 3+b.Probes {
			t.Errorf("job %s launched %d workers, want 3 silent ones and at most %d probes", job, launched, b.Probes)
		}
		if !strings.Contains(b.Check, "sitter") {
			t.Errorf("job %s: the block says to check %q, want the sitter URL among what to look at", job, b.Check)
		}
	}
	if _, err := r.liveWorkers("sleeper"); err != nil {
		t.Fatal(err)
	}
	// Teardown with the provisioner dead (and nothing to restart it):
	// terminate_all cannot be asked, so the sweeps do it in both regions.
	r.killProvisioner()
	r.teardown()
}

// createInstanceProfile creates an IAM instance profile in moto, which
// checks that RunInstances' profile exists as EC2 does. The repository has
// no IAM client, so this is IAM's query API signed by hand.
func createInstanceProfile(t *testing.T, endpoint, name string) {
	t.Helper()
	body := url.Values{"Action": {"CreateInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}.Encode()
	req, err := http.NewRequest(http.MethodPost, endpoint+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("create instance profile %s in moto: %s\n%s", name, resp.Status, msg)
	}
}

// instanceProfile returns the ARN of the instance profile EC2 (moto)
// associated with an instance in worker_region.
func instanceProfile(t *testing.T, endpoint, ec2ID string) string {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithBaseEndpoint(endpoint), config.WithRetryMaxAttempts(2), config.WithRegion(workerRegion))
	if err != nil {
		t.Fatal(err)
	}
	out, err := awsec2.NewFromConfig(cfg).DescribeIamInstanceProfileAssociations(context.Background(), &awsec2.DescribeIamInstanceProfileAssociationsInput{
		Filters: []types.Filter{{Name: aws.String("instance-id"), Values: []string{ec2ID}}},
	})
	if err != nil {
		t.Fatalf("instance profile of %s: %v", ec2ID, err)
	}
	for _, a := range out.IamInstanceProfileAssociations {
		if a.IamInstanceProfile != nil {
			return aws.ToString(a.IamInstanceProfile.Arn)
		}
	}
	return ""
}

// daemonLogs returns the test-mode daemons' logs for failure messages.
func daemonLogs(home, run string) string {
	var b strings.Builder
	for _, d := range []string{"provisioner", "controller"} {
		data, _ := os.ReadFile(filepath.Join(home, "runs", run, "work", d, d, "daemon.log"))
		fmt.Fprintf(&b, "--- %s log:\n%s\n", d, data)
	}
	return b.String()
}
