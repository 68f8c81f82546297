package broker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
)

// cluster is what the nodes of a private multi-node broker share: the
// list of peers each finds the others by, the Erlang cookie that lets them
// (and rabbitmqctl) talk, and the cluster's name. The zero cluster is a
// single node: no peers, no cookie of the run's (the node makes its own).
type cluster struct {
	name   string
	nodes  []node
	cookie string
	// live counts the nodes running so far in this boot, started or found.
	live int
}

// cookieFile is the run's Erlang cookie for a broker service, in its
// working directory (0600, the launcher's); each node gets a copy in its
// HOME, which is where Erlang looks.
const cookieFile = "erlang.cookie"

// newCluster loads the service's cookie, or makes it on the first boot.
// A re-boot must keep it: the running nodes only talk to nodes with the
// same one.
func (t *Type) newCluster(req bootlevel.StepRequest, nodes []node) (cluster, error) {
	path := filepath.Join(req.WorkDir, cookieFile)
	b, err := os.ReadFile(path)
	cookie := strings.TrimSpace(string(b))
	if errors.Is(err, os.ErrNotExist) || (err == nil && cookie == "") {
		if cookie, err = newCookie(); err != nil {
			return cluster{}, err
		}
		if err := os.MkdirAll(req.WorkDir, 0o700); err != nil {
			return cluster{}, err
		}
		if err = os.WriteFile(path, []byte(cookie+"\n"), 0o600); err != nil {
			return cluster{}, fmt.Errorf("write the cluster's Erlang cookie: %w", err)
		}
		// Whoever holds the cookie can run code on every node; it is never
		// printed, and the run's redactor hides it should it ever be.
		if home := t.home(); home != "" {
			_ = redact.Register(runlayout.Of(home, req.Run).RedactValues(), cookie)
		}
	} else if err != nil {
		return cluster{}, fmt.Errorf("read the cluster's Erlang cookie: %w", err)
	}
	return cluster{name: "ns-" + req.Run + "-" + req.Service.Name, nodes: nodes, cookie: cookie}, nil
}

// newCookie returns 32 random capital letters: an Erlang cookie is an
// atom, and letters need no quoting anywhere it is written.
func newCookie() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = 'A' + b[i]%26
	}
	return string(b), nil
}

// conf is what a cluster adds to each node's rabbitmq.conf. A blank node
// joins the first listed peer that answers (classic-config peer discovery:
// the list is the whole cluster, fixed by the plan). pause_minority makes
// the side of a partition without a majority stop serving, so clients
// fail over to the side that has one rather than two sides both accepting
// work.
func (c cluster) conf() string {
	if len(c.nodes) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster_name = %s\ncluster_partition_handling = pause_minority\n", c.name)
	b.WriteString("cluster_formation.peer_discovery_backend = classic_config\n")
	for i, n := range c.nodes {
		fmt.Fprintf(&b, "cluster_formation.classic_config.nodes.%d = %s\n", i+1, n.name)
	}
	return b.String()
}

// env is what a cluster adds to each node's environment: its Erlang
// distribution listens on loopback only, since every peer is on this host
// and the cookie is all that guards it.
func (c cluster) env() []string {
	if len(c.nodes) == 0 {
		return nil
	}
	return []string{"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"}
}

// install writes the cookie into a node's HOME (dir), readable by its
// owner alone, as Erlang insists.
func (c cluster) install(dir string) error {
	if c.cookie == "" {
		return nil
	}
	p := filepath.Join(dir, ".erlang.cookie")
	if err := os.WriteFile(p, []byte(c.cookie), 0o600); err != nil {
		return fmt.Errorf("install the Erlang cookie: %w", err)
	}
	return os.Chmod(p, 0o400)
}

// isBlank reports whether a node has no data yet: it will look for its
// peers rather than wait for the ones it knew.
func isBlank(dir string) bool {
	ents, err := os.ReadDir(filepath.Join(dir, "mnesia"))
	return err != nil || len(ents) == 0
}

// awaitNode waits until node n accepts connections on port, or its VM
// dies, or ctx ends.
func awaitNode(ctx context.Context, n node, port int, lg *stepLog) error {
	lg.printf("waiting for %s to run before its peers start", n.name)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if !nodeRunning(n.dir) {
			return fmt.Errorf("node %s stopped while starting (see %s)", n.name, filepath.Join(n.dir, "log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s did not accept connections on %s: %w", n.name, addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// clusterReady asks the management API (any node's: they share the
// cluster's view) whether want nodes run as one cluster.
func clusterReady(ctx context.Context, mgmtURL, caFile string, want int) error {
	client, err := pki.HTTPClient(caFile, "", 0)
	if err != nil {
		return err
	}
	u, err := url.Parse(mgmtURL)
	if err != nil {
		return fmt.Errorf("management url: %w", err)
	}
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/api/nodes?columns=name,running", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, pass)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("management api %s: %s", u.String(), redact.String(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management api %s/api/nodes: HTTP %d", u.String(), resp.StatusCode)
	}
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&nodes); err != nil {
		return fmt.Errorf("management api %s/api/nodes: %w", u.String(), err)
	}
	var running []string
	for _, n := range nodes {
		if n.Running {
			running = append(running, n.Name)
		}
	}
	if len(running) != want {
		return fmt.Errorf("cluster has %d running node(s) (%s), want %d", len(running), strings.Join(running, ", "), want)
	}
	return nil
}
