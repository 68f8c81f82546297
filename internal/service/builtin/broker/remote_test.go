package broker

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/pki"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// hostDriver stands in for the ssh and ec2 drivers: it hands out a host and
// keeps each script it is asked to run instead of running it.
type hostDriver struct {
	scripts  []string
	released int
}

func (d *hostDriver) Acquire(context.Context, string, *launchplan.Service) (bootlevel.Host, error) {
	return bootlevel.Host{Hostname: "ec2-1-2-3-4.compute.example", InstanceID: "i-broker", Attrs: map[string]string{"private_ip": "10.0.0.9"}}, nil
}

func (d *hostDriver) Run(_ context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	data, err := os.ReadFile(req.Program.Path)
	if err != nil {
		return bootlevel.StepResult{}, err
	}
	d.scripts = append(d.scripts, string(data))
	return bootlevel.StepResult{}, nil
}

func (d *hostDriver) Release(context.Context, string, *launchplan.Service, bootlevel.Host) error {
	d.released++
	return nil
}

// TestRemoteBrokerInstallsThroughItsDriver: a private broker whose driver
// is not local is installed on the driver's host by a script the driver
// runs; it serves TLS with a certificate from the run's CA naming the
// run's broker name and the host's addresses, exports URLs on the host's
// address that verify against that CA, and keeps its password across a
// re-boot as a local node does.
func TestRemoteBrokerInstallsThroughItsDriver(t *testing.T) {
	home := t.TempDir()
	drv := &hostDriver{}
	ty := &Type{Log: slog.New(slog.DiscardHandler), Home: home, Drivers: map[string]bootlevel.Driver{launchplan.DriverEC2: drv}}
	svc := &launchplan.Service{Name: "broker", Type: "broker", Driver: launchplan.DriverEC2, TypeConfig: map[string]any{"tls": true}}
	host, err := ty.Acquire(context.Background(), "r1", svc)
	if err != nil || host.InstanceID != "i-broker" {
		t.Fatalf("acquire: %v %v", host, err)
	}
	req := bootlevel.StepRequest{Run: "r1", Service: svc, Step: bootlevel.StepBoot, Host: host,
		WorkDir: runlayout.Of(home, "r1").Work("broker"), LogPath: filepath.Join(home, "broker.log")}
	res, err := ty.Run(context.Background(), req)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("boot: %v %+v", err, res)
	}
	u, err := url.Parse(res.Outputs["url"])
	if err != nil || u.Scheme != "amqps" || u.Host != "ec2-1-2-3-4.compute.example:5671" || u.Query().Get("server_name_indication") != pki.BrokerName("r1") {
		t.Errorf("url %q (err %v)", res.Outputs["url"], err)
	}
	if m := res.Outputs["management_url"]; !strings.HasPrefix(m, "https://nightshift:") || !strings.HasSuffix(m, "@ec2-1-2-3-4.compute.example:15671") {
		t.Errorf("management_url %q", m)
	}
	if res.Outputs["ca_file"] != filepath.Join(runlayout.Of(home, "r1").PKI(), pki.CACertFile) || res.Outputs["unit"] != "rabbitmq-server.service" {
		t.Errorf("exports %v", res.Outputs)
	}
	if len(drv.scripts) != 1 {
		t.Fatalf("%d scripts, want 1", len(drv.scripts))
	}
	m := regexp.MustCompile(`put 0644 rabbitmq '/etc/rabbitmq/nightshift-tls/server.pem' '([^']+)'`).FindStringSubmatch(drv.scripts[0])
	if m == nil {
		t.Fatalf("no certificate in the script:\n%s", drv.scripts[0])
	}
	cert, _ := base64.StdEncoding.DecodeString(m[1])
	ca, err := pki.LoadOrCreateCA(runlayout.Of(home, "r1").PKI(), "r1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{pki.BrokerName("r1"), "ec2-1-2-3-4.compute.example", "10.0.0.9"} {
		if why := pki.CheckServer(cert, ca.Pool(), []string{name}, time.Now()); why != nil {
			t.Errorf("the broker's certificate does not verify for %s: %v", name, why)
		}
	}
	pass, _ := u.User.Password()
	if !strings.Contains(drv.scripts[0], "printf '%s' '"+pass+"' | $sudo rabbitmqctl add_user 'nightshift'") {
		t.Error("the script does not create the admin user with the exported password")
	}
	if _, _, watched := ty.Process(req.WorkDir, svc); watched {
		t.Error("a node on another host is watched here")
	}

	again, err := ty.Run(context.Background(), req)
	if err != nil || again.Outputs["url"] != res.Outputs["url"] || again.Outputs["mgmt_url"] != res.Outputs["mgmt_url"] {
		t.Errorf("a re-boot changed the URLs every client holds: %v -> %v (err %v)", res.Outputs, again.Outputs, err)
	}

	req.Step = bootlevel.StepTerminate
	if res, err := ty.Run(context.Background(), req); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate: %v %+v", err, res)
	}
	if last := drv.scripts[len(drv.scripts)-1]; !strings.Contains(last, "systemctl disable --now rabbitmq-server.service") {
		t.Errorf("terminate ran %q", last)
	}
	if err := ty.Release(context.Background(), "r1", svc, host); err != nil || drv.released != 1 {
		t.Errorf("release: %v, %d releases", err, drv.released)
	}
	for _, f := range []string{"install-broker.sh", "uninstall-broker.sh"} {
		if _, err := os.Stat(filepath.Join(req.WorkDir, "rabbit", f)); err == nil {
			t.Errorf("%s, which holds secrets, is left behind", f)
		}
	}
}

func TestRemoteBrokerRefusals(t *testing.T) {
	ty := &Type{Log: slog.New(slog.DiscardHandler), Drivers: map[string]bootlevel.Driver{launchplan.DriverEC2: &hostDriver{}}}
	ext := &launchplan.Service{Name: "b", Type: "broker", Driver: launchplan.DriverEC2, TypeConfig: map[string]any{"mode": "external", "url": "amqp://u:p@h/"}}
	if _, err := ty.Acquire(context.Background(), "r1", ext); err == nil || !strings.Contains(err.Error(), "takes no driver") {
		t.Errorf("external broker on ec2: %v", err)
	}
	ssh := &launchplan.Service{Name: "b", Type: "broker", Driver: launchplan.DriverSSH}
	if _, err := ty.Acquire(context.Background(), "r1", ssh); err == nil || !strings.Contains(err.Error(), `driver "ssh" is not available`) {
		t.Errorf("broker without its driver: %v", err)
	}
}
