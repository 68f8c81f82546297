package provisioner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"nightshift"
)

// Instance is the provisioner's record of one worker instance. It is a
// value: every change produces a new Instance with one more History entry.
type Instance struct {
	ID       string `json:"id"`
	Job      string `json:"job"`
	LaunchID string `json:"launch_id"`
	Index    int    `json:"index"`
	Driver   string `json:"driver"`
	Host     string `json:"host,omitempty"`
	Address  string `json:"address,omitempty"`
	PID      int    `json:"pid,omitempty"`
	// DNSName is the worker's DNS name when its job has a dns table: chosen
	// and recorded with the launch, before any record is written, so that
	// a restarted provisioner repairs records from the ledger.
	DNSName string `json:"dns_name,omitempty"`
	// DNSAddress is the IPv4 address the worker's record holds, from the
	// driver once it runs.
	DNSAddress string `json:"dns_address,omitempty"`
	// Health is the controller's last word on a running worker (SetHealth),
	// which decides its DNS records: "" until it is first judged healthy,
	// then HealthHealthy or HealthUnhealthy. Only the controller judges
	// health (from heartbeats and probes), over its signed command.
	Health string `json:"health,omitempty"`
	// WorkerUID is the Unix uid of the instance's own (UIDPicker), chosen
	// and recorded with its launch before anything starts; 0 for none.
	// The ledger lets no two live records hold one.
	WorkerUID uint32                   `json:"worker_uid,omitempty"`
	State     nightshift.InstanceState `json:"state"`
	Reason    string                   `json:"reason,omitempty"`
	Created   time.Time                `json:"created"`
	Updated   time.Time                `json:"updated"`
	History   []Change                 `json:"history,omitempty"`
}

// Instance.Health values.
const (
	// HealthHealthy: the controller judges the worker healthy; it is in
	// its job's pool record.
	HealthHealthy = "healthy"
	// HealthUnhealthy: healthy once, unhealthy now. It keeps its own
	// record (its name is how a person reaches it to see what is wrong,
	// and the controller replaces it anyway) but leaves the pool record,
	// which is for reaching a worker that works.
	HealthUnhealthy = "unhealthy"
)

// Change is one step of an Instance's history.
type Change struct {
	State  nightshift.InstanceState `json:"state"`
	Reason string                   `json:"reason,omitempty"`
	Time   time.Time                `json:"time"`
}

// Launch is a recorded launch request. LaunchID is the caller's idempotency
// key: a second request with the same key returns the first one's instances.
type Launch struct {
	LaunchID string          `json:"launch_id"`
	Job      string          `json:"job"`
	Count    int             `json:"count"`
	Spec     json.RawMessage `json:"spec,omitempty"`
	Created  time.Time       `json:"created"`
}

// Errors a Store reports; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict means the record changed since it was read, so the write
	// was refused rather than overwriting a newer state.
	ErrConflict = errors.New("record changed concurrently")
	// ErrInvalid marks requests refused for what they say; repeating them
	// cannot help, unlike a failing store.
	ErrInvalid = errors.New("invalid request")
)

// Limits on request fields. Instance ids become directory names and process
// environment values, so they are kept to a conservative alphabet.
const (
	MaxCount       = 10000
	MaxLaunchIDLen = 128
)

var (
	jobName  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	launchID = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// ValidJob reports whether a job name is acceptable; it must be usable in
// routing keys and paths.
func ValidJob(job string) error {
	if !jobName.MatchString(job) {
		return fmt.Errorf("job %q: want 1-63 characters of [a-zA-Z0-9_.-] starting with a letter or digit", job)
	}
	return nil
}

// ValidLaunchID reports whether an idempotency key is acceptable.
func ValidLaunchID(id string) error {
	if id == "" || len(id) > MaxLaunchIDLen || !launchID.MatchString(id) {
		return fmt.Errorf("launch_id %q: want 1-%d printable ASCII characters without spaces", id, MaxLaunchIDLen)
	}
	return nil
}

// InstanceID derives the id of instance i of a launch. It is deterministic so
// that a retried or recovered launch names the same instances, and a driver
// can use it as its own idempotency token.
func InstanceID(job, launchID string, i int) string {
	sum := sha256.Sum256([]byte(launchID))
	return fmt.Sprintf("%s-%s-%d", job, hex.EncodeToString(sum[:4]), i)
}
