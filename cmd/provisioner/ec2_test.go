package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/amqpbus"
	"nightshift/internal/ec2"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provisionertest"
)

// TestEC2DriverAgainstMoto runs the real binary with --driver ec2 on moto:
// launches over the bus become tagged EC2 instances, terminate_all removes
// them, and neither the AWS secret key nor the broker password reach the log.
func TestEC2DriverAgainstMoto(t *testing.T) {
	amqptest.NeedBroker(t)
	moto := ec2test.URL(t)
	const awsSecret = "nsTestSecretKeyDoNotLog42"
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIANSTESTKEY0000001")
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsSecret)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	bin := filepath.Join(t.TempDir(), "provisioner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	home := t.TempDir()
	run := amqptest.UniqueName(t, "provec2")
	deleteTopology(t, run)
	secret, err := envelope.LoadOrCreateSecret(filepath.Join(home, "runs", run, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ec2.New(context.Background(), ec2.Config{EndpointURL: moto, RetryMaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Sweep(context.Background(), run, false) })

	urlFile := filepath.Join(home, "amqp-url")
	if err := os.WriteFile(urlFile, []byte(amqptest.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]jobspec.Spec{"crunch": {Driver: "ec2",
		Instance: map[string]any{"image": ec2test.Image, "instance_type": "t3.micro"}, Worker: map[string]any{"name": "w"}}}
	jobsFile := filepath.Join(home, "jobs.json")
	if err := jobspec.Write(jobsFile, jobs); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	cmd := exec.Command(bin, "--run", run, "--home", home, "--amqp-url-file", urlFile, "--driver", "ec2", "--jobs", jobsFile,
		"--ec2-endpoint-url", moto, "--reconcile-every", "1s", "--log-level", "debug")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "ec2-e2e-client", Run: run, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	c := client.New(bus, &envelope.Signer{Secret: secret}, "e2e", nil)
	var st provisioner.Status
	for {
		// Resending the same launch id is safe; it also covers the window
		// before the provisioner consumes its queue.
		_, lerr := c.Launch(ctx, provisionertest.Launch(jobs, "L1", "crunch", 2))
		st, err = c.Describe(ctx, provisioner.DescribeBody{Job: "crunch"})
		if lerr == nil && err == nil && countState(st, nightshift.StateRunning) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never ran 2 instances: %+v launch err %v describe err %v\nlogs:\n%s", st, lerr, err, logs)
		case <-time.After(200 * time.Millisecond):
		}
	}
	found, err := cl.Find(ctx, map[string]string{ec2.TagRun: run, ec2.TagOwner: "provisioner", ec2.TagJob: "crunch"}, nil)
	if err != nil || len(found) != 2 {
		t.Fatalf("EC2 holds %v (err %v), want the 2 instances", found, err)
	}
	for _, in := range st.Instances {
		if !strings.HasPrefix(in.Host, "i-") {
			t.Errorf("record %s host %q, want its EC2 id", in.ID, in.Host)
		}
	}
	for live := -1; live != 0; {
		if live, err = c.TerminateAll(ctx); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("terminate_all never finished\nlogs:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not an assertion
	}
	if left, _ := cl.Find(ctx, map[string]string{ec2.TagRun: run}, nil); len(left) != 0 {
		t.Fatalf("instances left after terminate_all: %v", left)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if !strings.Contains(logs.String(), "ec2 worker running") {
		t.Fatalf("the log does not show the launches, so the secret check below proves nothing:\n%s", logs)
	}
	for _, secret := range []string{awsSecret, "guest:guest"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds a secret %q:\n%s", secret, logs)
		}
	}
}
