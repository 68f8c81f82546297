package builtin

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/pki"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// TestRunEnvServesTheRunsTLS: a remote broker gets a certificate and key
// from the run's CA for the name its clients verify; clients get the CA;
// both are stable across calls (a resumed launch re-serves the same pair);
// the CA's key is never served; another run gets another CA.
func TestRunEnvServesTheRunsTLS(t *testing.T) {
	home := t.TempDir()
	env := RunEnv(home)
	get := func(run, name string) string {
		t.Helper()
		v, ok := env(run, name)
		if !ok || v == "" {
			t.Fatalf("%s for run %s not served", name, run)
		}
		return v
	}
	caPEM := get("r1", launchplan.EnvTLSCA)
	cert, key := get("r1", launchplan.EnvTLSBrokerCert), get("r1", launchplan.EnvTLSBrokerKey)
	name := get("r1", launchplan.EnvTLSBrokerName)
	if name != pki.BrokerName("r1") {
		t.Errorf("broker name %q", name)
	}
	pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
	if err != nil {
		t.Fatalf("served certificate and key do not pair: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("served CA is not PEM")
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
		t.Errorf("broker certificate does not verify for %s against the served CA: %v", name, err)
	}
	if again := get("r1", launchplan.EnvTLSBrokerCert); again != cert {
		t.Error("a second call issued another certificate: a re-booted broker would change it")
	}
	caKey, err := os.ReadFile(filepath.Join(runlayout.Of(home, "r1").PKI(), pki.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{launchplan.EnvTLSCA, launchplan.EnvTLSBrokerCert, launchplan.EnvTLSBrokerKey, launchplan.EnvTLSBrokerName} {
		if v, _ := env("r1", n); strings.Contains(v, strings.TrimSpace(string(caKey))) {
			t.Errorf("%s serves the CA's key", n)
		}
	}
	if other := get("r2", launchplan.EnvTLSCA); other == caPEM {
		t.Error("two runs share a CA")
	}
	if _, ok := env("r1", "HOME"); ok {
		t.Error("RunEnv served an ordinary variable")
	}
	if !launchplan.IsRunEnv(launchplan.EnvTLSCA) || launchplan.IsRunEnv("PATH") {
		t.Error("IsRunEnv")
	}
}

// TestCheckConfigWorkerIdentity: a provisioner that would hand its own
// broker credentials to its workers is refused at plan load, unless the
// plan says it accepts that; sim provisioners and controllers need no
// management API.
func TestCheckConfigWorkerIdentity(t *testing.T) {
	cases := []struct {
		name, typ string
		cfg       map[string]any
		wantErr   string
	}{
		{"local without management api", "provisioner", map[string]any{"amqp_url": "${broker.url}", "driver": "local"}, "config.management_url: required"},
		{"ec2 without management api", "provisioner", map[string]any{"amqp_url": "${broker.url}", "driver": "ec2"}, "config.management_url: required"},
		{"driver unset without management api", "provisioner", map[string]any{"amqp_url": "${broker.url}"}, "config.management_url: required"},
		{"with management api", "provisioner", map[string]any{"amqp_url": "${broker.url}", "management_url": "${broker.management_url}"}, ""},
		{"shared accepted", "provisioner", map[string]any{"amqp_url": "${broker.url}", "shared_worker_user": true}, ""},
		{"shared false is no escape", "provisioner", map[string]any{"amqp_url": "${broker.url}", "shared_worker_user": false}, "config.management_url: required"},
		{"shared not a bool", "provisioner", map[string]any{"amqp_url": "${broker.url}", "shared_worker_user": "yes"}, "config.shared_worker_user: want true or false"},
		{"sim needs none", "provisioner", map[string]any{"amqp_url": "${broker.url}", "driver": "sim"}, ""},
		{"controller needs none", "controller", map[string]any{"amqp_url": "${broker.url}"}, ""},
		{"broker has no such check", "broker", map[string]any{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckConfig(tc.typ, tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckConfig: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckConfig: %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}
