// Package ec2test gives tests a moto_server EC2 endpoint: the one .ci/run
// (or scripts/test-deps) started, named by NIGHTSHIFT_MOTO_URL, when it
// validates AMIs, or else a private one started for the test when
// moto_server is on the PATH.
package ec2test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"nightshift/internal/ec2"
	"nightshift/internal/nsenv"
)

// URL returns a reachable moto endpoint that validates AMIs, skipping the
// test when there is none (failing instead under NIGHTSHIFT_TEST_STRICT=1).
// A moto given by NIGHTSHIFT_MOTO_URL that launches any image id (started
// without MOTO_ENABLE_AMI_VALIDATION) is not used: the bad-AMI tests would
// fail against it as if the product were broken. A private one, which
// validates, is started instead.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(nsenv.MotoURL); u != "" && up(u) {
		err := validatesAMIs(context.Background(), u)
		if err == nil {
			return u
		}
		t.Logf("ec2test: %s=%s: %v; starting a private moto_server", nsenv.MotoURL, u, err)
	}
	u := start(t, true)
	if u != "" {
		// Later calls in the same test (a raw SDK client and a driver,
		// say) must reach the same moto, not start another.
		t.Setenv(nsenv.MotoURL, u)
	}
	return u
}

// start starts a private moto_server on a free port, stopped at cleanup;
// validate sets MOTO_ENABLE_AMI_VALIDATION (only the helper's own test
// starts one without it).
func start(t testing.TB, validate bool) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		missing(t, "moto_server not found and NIGHTSHIFT_MOTO_URL not set or not validating AMIs")
		return ""
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	// Without the variable moto launches any image id, and bad-AMI handling
	// goes untested. Moto reads any non-empty value as true, so "off" is
	// its absence.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOTO_ENABLE_AMI_VALIDATION=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if validate {
		cmd.Env = append(cmd.Env, "MOTO_ENABLE_AMI_VALIDATION=true")
	}
	if err := cmd.Start(); err != nil {
		missing(t, "start moto_server: "+err.Error())
		return ""
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; i < 100 && !up(u); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if !up(u) {
		t.Fatalf("moto_server on %s did not come up", u)
	}
	return u
}

// Client returns an adapter pointed at moto with test credentials. Tests
// share one moto, so each must use its own run tag rather than reset it.
func Client(t testing.TB) (*ec2.Client, string) {
	t.Helper()
	u := URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c, err := ec2.New(context.Background(), ec2.Config{EndpointURL: u, RetryMaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return c, u
}

// Image is an AMI moto preloads.
const Image = "ami-12c6146b"

// BogusImage is an AMI id no moto knows: RunInstances with it fails with
// InvalidAMIID.NotFound when moto validates AMIs.
const BogusImage = "ami-0000000000deadbee"

// validatesAMIs returns nil when the moto at u refuses to launch an image
// it does not know. An instance it launches anyway is terminated.
func validatesAMIs(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := awsec2.New(awsec2.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(u),
		Credentials:      credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		RetryMaxAttempts: 1,
	})
	out, err := c.RunInstances(ctx, &awsec2.RunInstancesInput{ImageId: aws.String(BogusImage), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	var api smithy.APIError
	switch {
	case errors.As(err, &api) && strings.HasPrefix(api.ErrorCode(), "InvalidAMIID"):
		return nil
	case err != nil:
		return fmt.Errorf("probe RunInstances %s: want InvalidAMIID, got: %w", BogusImage, err)
	}
	ids := make([]string, 0, len(out.Instances))
	for _, in := range out.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	if len(ids) > 0 {
		// Best effort: the probe's instance is no test's, and teardown
		// tests count instances only under their own run tag.
		c.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: ids})
	}
	return errors.New("it launched unknown image " + BogusImage + " (moto_server started without MOTO_ENABLE_AMI_VALIDATION=true)")
}

func up(u string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(u + "/moto-api/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 500
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(nsenv.TestStrict) == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}
