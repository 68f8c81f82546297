package controller

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"nightshift/decision"
	"nightshift/internal/brokerurl"
	"nightshift/internal/jobspec"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// Drivers a job may name.
const (
	DriverLocal = "local"
	DriverEC2   = "ec2"
	// DriverSim is the worker simulator (internal/worker/simworker), for
	// capacity planning: its heartbeats come from the run's simulator
	// identity, which the controller accepts for this job only.
	DriverSim = "sim"
)

// Job is one worker pool's definition, as read from a plan's [jobs.NAME]
// table.
type Job struct {
	Name string `json:"name"`
	// Engine is the registry name of the decision engine.
	Engine string `json:"engine"`
	// Policy is the engine's configuration table, passed to Configure.
	Policy map[string]any `json:"policy,omitempty"`
	// Driver is "local", "ec2" or "sim"; Instance is its spec table.
	Driver   string         `json:"driver"`
	Instance map[string]any `json:"instance,omitempty"`
	// Worker is the sitter task spec, forwarded opaquely in launch specs.
	Worker map[string]any        `json:"worker,omitempty"`
	Health decision.HealthConfig `json:"-"`
	// BlockAfterSilent is how many workers in a row may reach running
	// without a first heartbeat before the job stops launching
	// (block_after_silent, default jobspec.DefaultBlockAfterSilent).
	BlockAfterSilent int         `json:"block_after_silent,omitempty"`
	Queue            QueueConfig `json:"queue"`
	// DNS says the job has a dns table: its workers' records follow
	// their health, which the controller tells the provisioner.
	DNS    bool           `json:"-"`
	raw    map[string]any // the table as read, for storage
	where  string         // "file:line" of the table
	health map[string]any // the health table as read
}

// QueueConfig is the queue a job's depth is read from.
type QueueConfig struct {
	// Name is the full queue name on the broker.
	Name string `json:"name,omitempty"`
	// ManagementURL is the RabbitMQ management API base URL
	// (http://user:pass@host:15672); when set, depth counts ready plus
	// unacknowledged messages.
	ManagementURL string `json:"management_url,omitempty"`
	// VHost is the queue's virtual host for the management API (default "/").
	VHost string `json:"vhost,omitempty"`
}

// Where says where the job was defined ("jobs.toml:12").
func (j Job) Where() string { return j.where }

// Raw returns the job table as read, for storage and comparison.
func (j Job) Raw() map[string]any { return j.raw }

// LoadJobs reads a jobs file: TOML with [jobs.NAME] tables, or JSON
// {"jobs": {"NAME": {...}}} when the name ends in .json. Every job is
// validated, including its policy against its engine in reg.
func LoadJobs(path string, reg *decision.Registry) ([]Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	return ParseJobs(filepath.Base(path), data, reg)
}

// ParseJobs parses a jobs document; name is used in errors and picks the
// format (".json" means JSON, anything else TOML).
func ParseJobs(name string, data []byte, reg *decision.Registry) ([]Job, error) {
	doc, err := jobspec.DecodeDocument(name, data)
	if err != nil {
		return nil, err
	}
	for k := range doc {
		if k != "jobs" {
			return nil, fmt.Errorf("%s:%d: key %s: unknown key (want only [jobs.NAME] tables)", name, findLine(data, k), k)
		}
	}
	jobsRaw, ok := doc["jobs"]
	if !ok {
		return nil, nil
	}
	tables, ok := jobsRaw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s:%d: key jobs: want a table, got %T", name, findLine(data, "jobs"), jobsRaw)
	}
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	slices.Sort(names)
	jobs := make([]Job, 0, len(names))
	for _, n := range names {
		where := fmt.Sprintf("%s:%d", name, findLine(data, "jobs."+n))
		t, ok := tables[n].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: job %s: want a table, got %T", where, n, tables[n])
		}
		j, err := ParseJob(n, t, reg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		j.where = where
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// findLine finds the line of a table header or key for error messages; 0
// when not found (JSON documents name the key, which is enough).
func findLine(data []byte, key string) int {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	last := key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		last = key[i+1:]
	}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "["+key+"]") || strings.HasPrefix(line, "["+key+".") ||
			strings.HasPrefix(line, `"`+last+`"`) || strings.HasPrefix(line, last+" ") || strings.HasPrefix(line, last+"=") {
			return n
		}
	}
	return 0
}

// ParseJob validates one job table. Errors name the job and key.
func ParseJob(name string, t map[string]any, reg *decision.Registry) (Job, error) {
	j := Job{Name: name, raw: t}
	if err := provisioner.ValidJob(name); err != nil {
		return j, fmt.Errorf("job name: %w", err)
	}
	f := decision.NewFields("job "+name, t)
	var err error
	if j.Engine, err = f.String("engine", ""); err != nil {
		return j, err
	}
	if j.Engine == "" {
		return j, f.Errorf("engine", "required (one of %v)", reg.Names())
	}
	if j.Policy, err = table(f, t, "policy"); err != nil {
		return j, err
	}
	if j.Driver, err = f.String("driver", DriverLocal); err != nil {
		return j, err
	}
	if j.Driver != DriverLocal && j.Driver != DriverEC2 && j.Driver != DriverSim {
		return j, f.Errorf("driver", "%q: want %q, %q or %q", j.Driver, DriverLocal, DriverEC2, DriverSim)
	}
	if j.Instance, err = table(f, t, "instance"); err != nil {
		return j, err
	}
	if j.Worker, err = table(f, t, "worker"); err != nil {
		return j, err
	}
	// The worker's probe is the sitter's to run, but a bad one is refused
	// here, with the jobs file's line, rather than on every worker.
	if h, ok := j.Worker["health"]; ok {
		if _, err := sitter.ProbeFromTable("worker.", h); err != nil {
			return j, fmt.Errorf("job %s: %w", name, err)
		}
	}
	linked, _ := j.Worker["linked"].(map[string]any)
	for _, ln := range slices.Sorted(maps.Keys(linked)) {
		lt, _ := linked[ln].(map[string]any)
		if h, ok := lt["health"]; ok {
			if _, err := sitter.ProbeFromTable("worker.linked."+ln+".", h); err != nil {
				return j, fmt.Errorf("job %s: %w", name, err)
			}
		}
	}
	if j.health, err = table(f, t, "health"); err != nil {
		return j, err
	}
	if j.Health, err = decision.ParseHealthConfig(j.health); err != nil {
		return j, fmt.Errorf("job %s: %w", name, err)
	}
	f.Has(jobspec.BlockAfterSilentKey) // read below; marked known here
	// The dns table is the provisioner's (jobspec checks it); the
	// controller only tells it, for such a job, which workers are healthy.
	j.DNS = f.Has(jobspec.DNSKey)
	if j.BlockAfterSilent, err = jobspec.BlockAfterSilent(t); err != nil {
		return j, fmt.Errorf("job %s: %w", name, err)
	}
	q, err := table(f, t, "queue")
	if err != nil {
		return j, err
	}
	if j.Queue, err = parseQueue(name, q); err != nil {
		return j, err
	}
	if err := f.Unknown(); err != nil {
		return j, err
	}
	e, err := reg.New(j.Engine)
	if err != nil {
		return j, fmt.Errorf("job %s: engine: %w", name, err)
	}
	if err := e.Configure(j.Policy); err != nil {
		return j, fmt.Errorf("job %s: policy: %w", name, err)
	}
	return j, nil
}

func table(f *decision.Fields, t map[string]any, key string) (map[string]any, error) {
	if !f.Has(key) {
		return map[string]any{}, nil
	}
	m, ok := t[key].(map[string]any)
	if !ok {
		return nil, f.Errorf(key, "want a table, got %T", t[key])
	}
	return m, nil
}

func parseQueue(job string, q map[string]any) (QueueConfig, error) {
	f := decision.NewFields("job "+job+": queue", q)
	var qc QueueConfig
	var err error
	if qc.Name, err = f.String("name", ""); err != nil {
		return qc, err
	}
	if qc.ManagementURL, err = f.String("management_url", ""); err != nil {
		return qc, err
	}
	if qc.VHost, err = f.String("vhost", "/"); err != nil {
		return qc, err
	}
	if qc.ManagementURL != "" {
		// A cluster's nodes' APIs may come as a comma-separated list.
		for _, one := range brokerurl.Split(qc.ManagementURL) {
			u, err := url.Parse(one)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return qc, f.Errorf("management_url", "want an http(s) URL with a host (or a cluster's, comma-separated)")
			}
		}
		if qc.Name == "" {
			return qc, f.Errorf("name", "required when queue.management_url is set")
		}
	}
	if err := f.Unknown(); err != nil {
		return qc, err
	}
	return qc, nil
}
