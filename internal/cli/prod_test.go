package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"nightshift/internal/busid"
	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/procscan"
	"nightshift/internal/testsupport"
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

// TestProdPlanOnMoto boots the whole of plans/prod.toml against moto: the
// three service instances are launched on EC2 (moto) in one region, their
// steps run here (NIGHTSHIFT_EC2_STEPS_LOCAL=1, NIGHTSHIFT_TEST_MODE=1), so
// the built-in types run their daemons here as for plans/local.toml (a
// private TLS broker node, the provisioner and controller fetched from
// release_url and started detached) instead of as systemd units; the
// provisioner runs with --driver ec2 and the controller's pools become
// worker instances in a second region (worker_region); `mgmt status` shows
// both pools with their workers, as for plans/local.toml; then `mgmt
// teardown` freezes the pools, terminates every worker through the
// provisioner and leaves no instance of the run live in either region and
// no daemon running.
func TestProdPlanOnMoto(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real daemons")
	}
	needRabbitNode(t)
	cl, moto := ec2test.Client(t) // also sets test AWS credentials and region
	wcl, err := ec2.New(context.Background(), ec2.Config{Region: workerRegion, EndpointURL: moto, RetryMaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	bin := buildDaemons(t)
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	t.Setenv("NIGHTSHIFT_EC2_STEPS_LOCAL", "1")
	t.Setenv("NIGHTSHIFT_TEST_MODE", "1")
	t.Setenv("AWS_ENDPOINT_URL", "") // only the plan's endpoint_url may point anywhere
	rb := make([]byte, 4)
	rand.Read(rb)
	runName := "prod-" + hex.EncodeToString(rb)
	ctx := context.Background()
	t.Cleanup(func() {
		procscan.Kill("", home, runName, 0)
		cl.Sweep(context.Background(), runName, false)
		wcl.Sweep(context.Background(), runName, false)
	})

	args := []string{"--home", home, "--plain", "--name", runName,
		"-g", "endpoint_url=" + moto, "-g", "ami=" + ec2test.Image,
		"-g", "security_group=" + defaultGroup(t, moto, "us-east-1"),
		"-g", "worker_region=" + workerRegion, "-g", "worker_security_group=" + defaultGroup(t, moto, workerRegion),
		// moto checks these against resources nobody created; EC2 would too.
		"-g", "key_name=", "-g", "provisioner_profile=", "-g", "worker_profile=",
		"-g", "release_url=file://" + bin,
		// Never fetched: moto runs no user data. The driver wants http(s).
		"-g", "sitter_url=http://127.0.0.1:9/sitter",
		"../../plans/prod.toml"}
	code, out, stderr := run(t, launch, args...)
	if code != 0 {
		t.Fatalf("launch exit %d\nstdout:\n%s\nstderr:\n%s\n%s", code, out, stderr, daemonLogs(home, runName))
	}
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
		workers, err = wcl.Find(ctx, map[string]string{ec2.TagRun: runName, ec2.TagOwner: "provisioner", ec2.TagJob: "sleeper"}, nil)
		if err != nil || len(workers) < 3 {
			return fmt.Errorf("sleeper workers %v (err %v), want 3", workers, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, daemonLogs(home, runName))
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
	code, out, stderr = run(t, mgmtc, "--home", home, "logs", "--lines", "5", runName, "controller")
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
	code, out, stderr = run(t, mgmtc, "--home", home, "teardown", runName)
	if code != 0 {
		t.Fatalf("teardown exit %d\n%s\n%s", code, out, stderr)
	}
	for _, fallback := range []string{"could not freeze", "terminate_all failed", "pools unreachable"} {
		if strings.Contains(out, fallback) {
			t.Errorf("teardown fell back (%q) instead of freezing and terminating through the bus:\n%s", fallback, out)
		}
	}
	for _, c := range []*ec2.Client{cl, wcl} {
		for _, state := range []string{"pending", "running", "stopping", "stopped", "shutting-down"} {
			left, err := c.Find(ctx, map[string]string{ec2.TagRun: runName}, []string{state})
			if err != nil || len(left) != 0 {
				t.Errorf("after teardown %d instances of the run are %s: %v (err %v)\n%s", len(left), state, left, err, out)
			}
		}
	}
	if left, _ := procscan.Find("", home, runName); len(left) != 0 {
		t.Errorf("daemons left after teardown: %v", left)
	}
	if st := status(t, home, runName); st.State != "terminated" {
		t.Errorf("after teardown the run is %q", st.State)
	}
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
