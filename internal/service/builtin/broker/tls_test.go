package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/bootlevel"
	"nightshift/internal/amqpbus"
	"nightshift/internal/brokerurl"
	"nightshift/internal/pki"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

func TestParseConfigTLS(t *testing.T) {
	cases := []struct {
		in      map[string]any
		wantErr string
		tls     bool
	}{
		{map[string]any{"tls": true}, "", true},
		{map[string]any{"tls": false}, "", false},
		{map[string]any{"tls": "yes"}, "config.tls: want true or false", false},
		{map[string]any{"mode": "external", "url": "amqp://u:p@h/", "tls": true}, "config.tls: only for mode", false},
		{map[string]any{"mode": "external", "url": "amqps://u:p@h/", "ca_file": "/ca.pem"}, "", false},
		{map[string]any{"mode": "external", "url": "amqp://u:p@h/", "ca_file": "/ca.pem"}, "only with an amqps:// url", false},
		{map[string]any{"ca_file": "/ca.pem"}, "config.ca_file: only for mode", false},
	}
	for _, c := range cases {
		cfg, err := ParseConfig(c.in)
		if c.wantErr == "" && (err != nil || cfg.TLS != c.tls) {
			t.Errorf("%v: %+v %v", c.in, cfg, err)
		}
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%v: got %v, want %q", c.in, err, c.wantErr)
		}
	}
}

func TestNodeConfTLSTurnsPlainListenersOff(t *testing.T) {
	conf := nodeConf([]int{1, 2, 3}, "u", "p", &serverFiles{ca: "/d/ca.pem", cert: "/d/s.pem", key: "/d/s.key"})
	for _, want := range []string{"listeners.tcp = none\n", "listeners.ssl.default = 127.0.0.1:1\n", "management.ssl.port = 2\n",
		"management.ssl.ip = 127.0.0.1\n", "ssl_options.keyfile = /d/s.key\n", "management.ssl.certfile = /d/s.pem\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "management.tcp") || strings.Contains(conf, "listeners.tcp.default") {
		t.Errorf("TLS conf keeps a plain listener:\n%s", conf)
	}
}

// TestPrivateNodeTLS starts a private node with tls = true and proves: the
// node serves AMQPS and HTTPS only, clients that trust the run's CA get in,
// a client trusting another CA and a plain AMQP client are refused, the CA's
// key stays in the run's pki dir (0600), and a re-boot after the node died
// keeps the CA and the node's certificate.
func TestPrivateNodeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a RabbitMQ node twice")
	}
	ty := needServer(t)
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	run := "tls" + strconv.Itoa(os.Getpid()%100000)
	dir := filepath.Join(home, "runs", run, "work", "mq")
	svc := &launchplan.Service{Name: "mq", Type: "broker", TypeConfig: map[string]any{"tls": true}}
	ctx := context.Background()
	stepOf := func(st bootlevel.Step) bootlevel.StepRequest {
		r := step(svc, st, dir)
		r.Run = run
		return r
	}
	t.Cleanup(func() { ty.Run(context.Background(), stepOf(bootlevel.StepTerminate)) })
	waitReady := func() {
		t.Helper()
		var res bootlevel.StepResult
		var err error
		for i := 0; i < 160; i++ {
			if res, err = ty.Run(ctx, stepOf(bootlevel.StepReady)); err == nil && res.ExitCode == 0 {
				return
			}
			waitABit()
		}
		t.Fatalf("node never became ready: %+v %v", res, err)
	}
	first, err := ty.Run(ctx, stepOf(bootlevel.StepBoot))
	if err != nil || first.ExitCode != 0 {
		t.Fatalf("boot: %+v %v", first, err)
	}
	out := first.Outputs
	caFile := filepath.Join(runlayout.Of(home, run).PKI(), pki.CACertFile)
	if !strings.HasPrefix(out["url"], "amqps://nightshift:") || !strings.HasPrefix(out["management_url"], "https://") || out["ca_file"] != caFile {
		t.Fatalf("outputs %v", out)
	}
	svc.Attributes = out
	waitReady()

	// The CA's key: 0600, in the run's pki dir, nowhere in the node's dir.
	st, err := os.Stat(filepath.Join(runlayout.Of(home, run).PKI(), pki.CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("CA key: %v mode %v", err, st)
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Size() < 1<<20 {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("BEGIN PRIVATE KEY")) {
				t.Errorf("%s holds a PKCS#8 key: the CA key left its dir", p)
			}
		}
		return nil
	})
	if st, err := os.Stat(filepath.Join(dir, "rabbit", "tls", "server.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("server key: %v %v", err, st)
	}

	// The run's CA: in. Another CA: refused.
	dial := func(cfg amqpbus.Config) error {
		cfg.Run, cfg.Log = run, slog.New(slog.DiscardHandler)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		b, err := amqpbus.Dial(dctx, cfg)
		if err == nil {
			b.Close()
		}
		return err
	}
	if err := dial(amqpbus.Config{URL: out["url"], CAFile: caFile}); err != nil {
		t.Fatalf("client with the run's CA: %v", err)
	}
	otherDir := t.TempDir()
	if _, err := pki.LoadOrCreateCA(otherDir, "other", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := dial(amqpbus.Config{URL: out["url"], CAFile: filepath.Join(otherDir, pki.CACertFile)}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("client with another CA: %v, want a certificate refusal", err)
	}

	// Plain AMQP: refused on the node's port, and the node lists no plain
	// AMQP or HTTP listener at all.
	plain := strings.Replace(out["url"], "amqps://", "amqp://", 1)
	if c, err := amqp.DialConfig(plain, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)}); err == nil {
		c.Close()
		t.Error("plain AMQP connected to a TLS node")
	}
	protocols := listenerProtocols(t, out["management_url"], caFile)
	for _, p := range protocols {
		if p == "amqp" || p == "http" {
			t.Errorf("node listens with plain %s (listeners %v)", p, protocols)
		}
	}
	if !strings.Contains(strings.Join(protocols, ","), "amqp/ssl") || !strings.Contains(strings.Join(protocols, ","), "https") {
		t.Errorf("listeners %v: want amqp/ssl and https", protocols)
	}

	// Re-boot after the node died: same CA, same certificate, same URL.
	caBefore, _ := os.ReadFile(caFile)
	certBefore, _ := os.ReadFile(filepath.Join(dir, "rabbit", "tls", "server.pem"))
	pidData, _ := os.ReadFile(filepath.Join(dir, "rabbit", "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && isNode(pid, filepath.Join(dir, "rabbit")); i++ {
		waitABit()
	}
	second, err := ty.Run(ctx, stepOf(bootlevel.StepBoot))
	if err != nil || second.ExitCode != 0 {
		t.Fatalf("re-boot: %+v %v", second, err)
	}
	for _, k := range []string{"url", "management_url", "ca_file", "password"} {
		if second.Outputs[k] != out[k] {
			t.Errorf("re-boot changed %s", k)
		}
	}
	caAfter, _ := os.ReadFile(caFile)
	certAfter, _ := os.ReadFile(filepath.Join(dir, "rabbit", "tls", "server.pem"))
	if !bytes.Equal(caBefore, caAfter) || !bytes.Equal(certBefore, certAfter) || len(certAfter) == 0 {
		t.Error("re-boot replaced the CA or the node's certificate")
	}
	svc.Attributes = second.Outputs
	waitReady()
}

// listenerProtocols asks the node's management API (over HTTPS, verified)
// which listeners it runs.
func listenerProtocols(t *testing.T, mgmtURL, caFile string) []string {
	t.Helper()
	client, err := pki.HTTPClient(caFile, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(mgmtURL)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	req, _ := http.NewRequest(http.MethodGet, u.String()+"/api/overview", nil)
	req.SetBasicAuth(user, pass)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("management API over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ov struct {
		Listeners []struct {
			Protocol string `json:"protocol"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal(body, &ov); err != nil {
		t.Fatalf("overview: %v: %.200s", err, body)
	}
	var out []string
	for _, l := range ov.Listeners {
		out = append(out, l.Protocol)
	}
	return out
}

// TestTLSClusterOfThree is tls = true with nodes = 3: every node serves
// AMQPS and HTTPS only, with a certificate from the run's one CA; the
// exported urls and management_urls are all amqps:// and https://; the
// cluster forms (Erlang distribution stays on loopback, unencrypted, as
// for a plain cluster); and clients that verify the run's CA fail over
// between the nodes with nothing lost when one is killed.
func TestTLSClusterOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three RabbitMQ nodes")
	}
	ty := needServer(t)
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	run := "tc" + strconv.Itoa(os.Getpid()%100000)
	dir := filepath.Join(home, "runs", run, "work", "mq")
	svc := &launchplan.Service{Name: "mq", Type: "broker", TypeConfig: map[string]any{"nodes": int64(3), "tls": true}}
	ctx := context.Background()
	stepOf := func(st bootlevel.Step) bootlevel.StepRequest {
		return bootlevel.StepRequest{Run: run, Service: svc, Step: st, WorkDir: dir, LogPath: filepath.Join(dir, "broker.log")}
	}
	nodes := nodesOf(run, "mq", dir, 3)
	t.Cleanup(func() {
		ty.Run(context.Background(), stepOf(bootlevel.StepTerminate))
		for _, n := range nodes {
			if pid, err := readPID(n.dir); err == nil && isNode(pid, n.dir) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "broker.log")); err == nil {
				t.Logf("broker.log:\n%s", b)
			}
		}
	})
	res, err := ty.Run(ctx, stepOf(bootlevel.StepBoot))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("boot: %+v %v", res, err)
	}
	out := res.Outputs
	svc.Attributes = out
	caFile := filepath.Join(runlayout.Of(home, run).PKI(), pki.CACertFile)
	urls, mgmtURLs := brokerurl.Split(out["urls"]), brokerurl.Split(out["management_urls"])
	if len(urls) != 3 || len(mgmtURLs) != 3 || out["ca_file"] != caFile {
		t.Fatalf("outputs: %d urls, %d management urls, ca_file %q", len(urls), len(mgmtURLs), out["ca_file"])
	}
	for i := range urls {
		if !strings.HasPrefix(urls[i], "amqps://") || !strings.HasPrefix(mgmtURLs[i], "https://") {
			t.Fatalf("node %d: %s, %s: want amqps and https", i+1, amqpbus.Redacted(urls[i]), amqpbus.Redacted(mgmtURLs[i]))
		}
	}
	for i := 0; ; i++ {
		r, err := ty.Run(ctx, stepOf(bootlevel.StepReady))
		if err == nil && r.ExitCode == 0 {
			break
		}
		if i == 480 {
			t.Fatalf("cluster never became ready: %v %v", r.Tail, err)
		}
		waitABit()
	}
	if running := runningNodes(t, nodes[1]); len(running) != 3 {
		t.Fatalf("running nodes %q, want all three", running)
	}
	for i, u := range mgmtURLs {
		protocols := strings.Join(listenerProtocols(t, u, caFile), ",")
		if !strings.Contains(protocols, "amqp/ssl") || !strings.Contains(protocols, "https") ||
			slices.Contains(strings.Split(protocols, ","), "amqp") || slices.Contains(strings.Split(protocols, ","), "http") {
			t.Errorf("node %d listens with %s: want amqp/ssl and https only", i+1, protocols)
		}
		plain := strings.Replace(urls[i], "amqps://", "amqp://", 1)
		if c, err := amqp.DialConfig(plain, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)}); err == nil {
			c.Close()
			t.Errorf("plain AMQP connected to TLS node %d", i+1)
		}
	}
	quorumSurvivesNodeLoss(t, run, out["urls"], caFile, nodes[0])
}
