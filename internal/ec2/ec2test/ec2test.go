// Package ec2test gives tests a moto_server EC2 endpoint: the one .ci/run
// (or scripts/test-deps) started, named by NIGHTSHIFT_MOTO_URL, or a private
// one started for the test when moto_server is on the PATH.
package ec2test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"nightshift/internal/ec2"
	"nightshift/internal/nsenv"
)

// URL returns a reachable moto endpoint, skipping the test when there is
// none (failing instead under NIGHTSHIFT_TEST_STRICT=1).
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(nsenv.MotoURL); u != "" && up(u) {
		return u
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		missing(t, "moto_server not found and NIGHTSHIFT_MOTO_URL not set")
		return ""
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	// Without this moto launches any image id, and bad-AMI handling goes untested.
	cmd.Env = append(os.Environ(), "MOTO_ENABLE_AMI_VALIDATION=true")
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
