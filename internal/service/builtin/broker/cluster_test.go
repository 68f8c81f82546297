package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/amqpbus"
	"nightshift/internal/brokerurl"
	"nightshift/internal/envelope"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/syncbuf"
	"nightshift/launchplan"
)

func TestParseConfigNodes(t *testing.T) {
	cases := []struct {
		in      map[string]any
		nodes   int
		wantErr string
	}{
		{nil, 1, ""},
		{map[string]any{"nodes": int64(3)}, 3, ""},
		{map[string]any{"nodes": int64(0)}, 0, "config.nodes: want 1 to 7"},
		{map[string]any{"nodes": int64(8)}, 0, "config.nodes: want 1 to 7"},
		{map[string]any{"nodes": "3"}, 0, "config.nodes: want a whole number"},
		{map[string]any{"nodes": float64(3)}, 3, ""}, // as the stored plan's JSON gives it
		{map[string]any{"nodes": 2.5}, 0, "config.nodes: want a whole number, got 2.5"},
		{map[string]any{"nodes": int64(3), "port": int64(65534)}, 0, "config.port: 3 nodes from port 65534"},
		{map[string]any{"mode": "external", "url": "amqp://u:p@h:1/", "nodes": int64(3)}, 0, "config.nodes: only for mode"},
		{map[string]any{"mode": "external", "url": "amqp://u:p@h:1/,amqp://u:p@h:2/"}, 1, ""},
		{map[string]any{"mode": "external", "url": "amqp://u:secret@h:1/,amqp://v:secret@h:2/"}, 0, "user differs"},
	}
	for _, c := range cases {
		cfg, err := ParseConfig(c.in)
		if c.wantErr == "" && (err != nil || cfg.Nodes != c.nodes) {
			t.Errorf("%v: %+v %v, want %d nodes", c.in, cfg, err, c.nodes)
		}
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%v: got %v, want %q", c.in, err, c.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks a password: %v", err)
		}
	}
}

func TestClusterConf(t *testing.T) {
	nodes := nodesOf("r", "mq", "/w", 3)
	if nodes[0].dir != "/w/rabbit" || nodes[2].dir != "/w/rabbit-3" || nodes[1].name != "ns-r-mq-b2@localhost" {
		t.Fatalf("nodes %+v", nodes)
	}
	if one := nodesOf("r", "mq", "/w", 1); len(one) != 1 || one[0].name != "ns-r-mq@localhost" || one[0].dir != "/w/rabbit" {
		t.Fatalf("a single node changed its name or directory: %+v", one)
	}
	conf := cluster{name: "ns-r-mq", nodes: nodes, cookie: "X"}.conf()
	for _, want := range []string{"cluster_formation.peer_discovery_backend = classic_config\n",
		"cluster_formation.classic_config.nodes.1 = ns-r-mq-b1@localhost\n", "cluster_formation.classic_config.nodes.3 = ns-r-mq-b3@localhost\n",
		"cluster_partition_handling = pause_minority\n", "cluster_name = ns-r-mq\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	if (cluster{}).conf() != "" || (cluster{}).env() != nil {
		t.Error("a single node got cluster settings")
	}
}

// TestClusterOfThree boots a private 3-node cluster and proves, on real
// RabbitMQ nodes: it reports 3 running nodes; a quorum command queue loses
// nothing when the node its clients are connected to (and where its
// leader was declared) is killed with SIGKILL while a publisher with
// confirms keeps publishing and a consumer with manual acks keeps
// consuming, both failing over to another node; a re-boot (what the keeper
// runs) restarts only the dead node and the cluster is whole again; and
// terminate stops every node and removes their data.
func TestClusterOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three RabbitMQ nodes (~30 s, ~450 MB)")
	}
	ty := needServer(t)
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	run := "cl" + strconv.Itoa(os.Getpid()%100000)
	dir := filepath.Join(home, "runs", run, "work", "mq")
	svc := &launchplan.Service{Name: "mq", Type: "broker", TypeConfig: map[string]any{"nodes": int64(3)}}
	ctx := context.Background()
	stepOf := func(st bootlevel.Step) bootlevel.StepRequest {
		return bootlevel.StepRequest{Run: run, Service: svc, Step: st, WorkDir: dir, LogPath: filepath.Join(dir, "broker.log")}
	}
	nodes := nodesOf(run, "mq", dir, 3)
	// Stop the nodes whatever happens: three VMs must not outlive the test.
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
	waitReady := func() {
		t.Helper()
		var res bootlevel.StepResult
		var err error
		for i := 0; i < 480; i++ {
			res, err = ty.Run(ctx, stepOf(bootlevel.StepReady))
			if err == nil && res.ExitCode == 0 {
				return
			}
			waitABit()
		}
		t.Fatalf("cluster never became ready: %v %v", res.Tail, err)
	}
	res, err := ty.Run(ctx, stepOf(bootlevel.StepBoot))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("boot: %+v %v", res, err)
	}
	out := res.Outputs
	svc.Attributes = out
	urls := brokerurl.Split(out["urls"])
	if len(urls) != 3 || out["url"] != urls[0] || out["nodes"] != "3" || len(brokerurl.Split(out["mgmt_url"])) != 3 {
		t.Fatalf("outputs: urls %d, url is the first %v, nodes %q", len(urls), out["url"] == urls[0], out["nodes"])
	}
	if ports := strings.Split(out["ports"], ","); len(ports) != 3 || ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		t.Fatalf("ports %q: want three distinct", out["ports"])
	}
	if st, err := os.Stat(filepath.Join(dir, cookieFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cookie file: %v %v, want mode 0600", st, err)
	}
	waitReady()
	if running := runningNodes(t, nodes[1]); !slices.Equal(running, []string{nodes[0].name, nodes[1].name, nodes[2].name}) {
		t.Fatalf("running nodes %q, want all three", running)
	}

	t.Run("quorum queue loses nothing when a node is killed", func(t *testing.T) {
		quorumSurvivesNodeLoss(t, run, out["urls"], "", nodes[0])
	})

	t.Run("repair restarts only the dead node and keeps the data", func(t *testing.T) {
		before := map[string]int{}
		for _, n := range nodes[1:] {
			before[n.name], _ = readPID(n.dir)
		}
		// As a repair and the keeper do it: terminate (marked Reboot),
		// then boot.
		term := stepOf(bootlevel.StepTerminate)
		term.Reboot = true
		if res, err := ty.Run(ctx, term); err != nil || res.ExitCode != 0 {
			t.Fatalf("terminate before re-boot: %+v %v", res, err)
		}
		res, err := ty.Run(ctx, stepOf(bootlevel.StepBoot))
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("re-boot: %+v %v", res, err)
		}
		for _, k := range []string{"url", "urls", "mgmt_url", "password", "management_url", "ports"} {
			if res.Outputs[k] != out[k] {
				t.Errorf("re-boot changed %s", k)
			}
		}
		for _, n := range nodes[1:] {
			if pid, _ := readPID(n.dir); pid != before[n.name] {
				t.Errorf("re-boot restarted the live node %s", n.name)
			}
		}
		waitReady()
		if running := runningNodes(t, nodes[0]); len(running) != 3 {
			t.Fatalf("running nodes after re-boot %q, want 3", running)
		}
		// The queue and its messages outlived the repair: consumed
		// everything before, so it is there and empty.
		if q := listQueues(t, nodes[0]); !strings.Contains(q, amqpbus.CommandQueue(run, "work")+"\tquorum\t") {
			t.Fatalf("the work queue did not survive the repair:\n%s", q)
		}
	})

	var pids []int
	for _, n := range nodes {
		pid, err := readPID(n.dir)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if res, err := ty.Run(ctx, stepOf(bootlevel.StepTerminate)); err != nil || res.ExitCode != 0 {
		t.Fatalf("terminate: %+v %v", res, err)
	}
	for i, n := range nodes {
		if isNode(pids[i], n.dir) {
			t.Errorf("node %s (pid %d) alive after terminate", n.name, pids[i])
		}
		if _, err := os.Stat(filepath.Join(n.dir, "mnesia")); !os.IsNotExist(err) {
			t.Errorf("node %s kept its data after terminate: %v", n.name, err)
		}
	}
}

// quorumSurvivesNodeLoss publishes with confirms and consumes with manual
// acks through two buses given every node's URL, both connected to victim
// (the first node), kills victim's VM mid-stream, and checks that every
// confirmed message is consumed and both buses moved to another node.
func quorumSurvivesNodeLoss(t *testing.T, run, urls, caFile string, victim node) {
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bus logs:\n%s", logs.String())
		}
	})
	dial := func(name string) *amqpbus.Bus {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := amqpbus.Dial(dctx, amqpbus.Config{URL: urls, CAFile: caFile, Run: run, Name: name, Log: log, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	pub, sub := dial("publisher"), dial("consumer")
	// On failure, what the surviving node says about the queue and itself.
	t.Cleanup(func() {
		if t.Failed() {
			n := node{name: strings.Replace(victim.name, "-b1@", "-b2@", 1), dir: victim.dir + "-2"}
			if logs, _ := filepath.Glob(filepath.Join(n.dir, "log", "*.log")); len(logs) > 0 {
				for _, l := range logs {
					b, _ := os.ReadFile(l)
					if len(b) > 6000 {
						b = b[len(b)-6000:]
					}
					t.Logf("%s:\n%s", l, b)
				}
			}
			for _, args := range [][]string{{"list_queues", "name", "type", "leader", "members", "online", "messages"}, {"list_channels", "name", "confirm", "messages_unconfirmed"}} {
				cmd := exec.Command("/usr/lib/rabbitmq/bin/rabbitmqctl", append([]string{"-n", n.name}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+n.dir)
				b, err := cmd.CombinedOutput()
				t.Logf("%v: %v\n%s", args, err, b)
			}
		}
	})
	first := amqpbus.Redacted(brokerurl.First(urls))
	if pub.Node() != first || sub.Node() != first {
		t.Fatalf("buses connected to %s and %s, want the first node %s", pub.Node(), sub.Node(), first)
	}

	var mu sync.Mutex
	got := map[string]int{}
	consumed := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps(got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = sub.Consume(ctx, "work", func(_ context.Context, d amqpbus.Delivery) error {
			mu.Lock()
			got[d.MessageID]++
			mu.Unlock()
			return nil // acked after it is counted
		})
	}()
	// The consumer declares the queue; publish once it is in place.
	testsupport.Eventually(t, 30*time.Second, func() error {
		_, err := sub.QueueDepth(ctx, amqpbus.CommandQueue(run, "work"))
		return err
	})

	var sentMu sync.Mutex
	var sent []string
	confirmed := func() int {
		sentMu.Lock()
		defer sentMu.Unlock()
		return len(sent)
	}
	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				pubDone <- nil
				return
			default:
			}
			env, err := envelope.NewEnvelope("item", 1, run, "test", map[string]int{"n": i}, time.Now())
			if err != nil {
				pubDone <- err
				return
			}
			sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
			err = pub.SendCommand(sctx, "work", env) // nil only once confirmed
			scancel()
			if err != nil {
				pubDone <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			sentMu.Lock()
			sent = append(sent, env.ID)
			sentMu.Unlock()
		}
	}()
	testsupport.Eventually(t, 30*time.Second, func() error {
		if c, n := confirmed(), len(consumed()); c < 100 || n < 50 {
			return fmt.Errorf("before the kill: %d confirmed, %d consumed; want 100 and 50", c, n)
		}
		return nil
	})
	pid, err := readPID(victim.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	atKill := confirmed()
	testsupport.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-pubDone:
			t.Fatalf("publisher stopped: %v", err)
		default:
		}
		if c := confirmed(); c < atKill+200 {
			return fmt.Errorf("%d confirmed since the kill, want 200", c-atKill)
		}
		return nil
	})
	close(stop)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	sentMu.Lock()
	all := slices.Clone(sent)
	sentMu.Unlock()
	var lost []string
	testsupport.Eventually(t, 60*time.Second, func() error {
		c := consumed()
		lost = lost[:0]
		for _, id := range all {
			if c[id] == 0 {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			return fmt.Errorf("%d of %d confirmed messages not consumed (first %s)", len(lost), len(all), lost[0])
		}
		return nil
	})
	dups := 0
	for _, n := range consumed() {
		dups += n - 1
	}
	t.Logf("%d confirmed, 0 lost, %d redelivered after the kill (at-least-once)", len(all), dups)
	if pub.Node() == first || sub.Node() == first {
		t.Errorf("after the kill the buses are on %s and %s; want another node than %s", pub.Node(), sub.Node(), first)
	}
}

// listQueues asks node n for the vhost's queues: name, type, messages.
func listQueues(t *testing.T, n node) string {
	t.Helper()
	cmd := exec.Command("/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", n.name, "-q", "list_queues", "name", "type", "messages")
	cmd.Env = append(os.Environ(), "HOME="+n.dir)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v", err)
	}
	return string(b)
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func readPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// runningNodes asks node n (with the cluster's cookie, in its HOME) which
// nodes of its cluster run.
func runningNodes(t *testing.T, n node) []string {
	t.Helper()
	cmd := exec.Command("/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", n.name, "cluster_status", "--formatter", "json")
	cmd.Env = append(os.Environ(), "HOME="+n.dir)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("rabbitmqctl cluster_status: %v", err)
	}
	var st struct {
		Running []string `json:"running_nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("cluster_status: %v\n%s", err, b)
	}
	slices.Sort(st.Running)
	return st.Running
}
