package provisionertest

import (
	"nightshift/internal/jobspec"
	"nightshift/provisioner"
)

// Jobs returns a definition for each named job: a local sitter task
// that sleeps, which the in-memory driver never runs.
func Jobs(names ...string) map[string]jobspec.Spec {
	out := make(map[string]jobspec.Spec, len(names))
	for _, n := range names {
		out[n] = jobspec.Spec{Driver: jobspec.DriverLocal, Worker: map[string]any{"command": []any{"sleep", "3600"}}}
	}
	return out
}

// Launch is a launch request for count instances of job as defined in
// jobs, its spec digest filled in.
func Launch(jobs map[string]jobspec.Spec, launchID, job string, count int) provisioner.LaunchRequest {
	return provisioner.LaunchRequest{LaunchID: launchID, Job: job, Count: count, SpecDigest: Digest(jobs[job])}
}

// Digest is s.Digest, or "" (which no provisioner accepts) for a spec
// that does not encode.
func Digest(s jobspec.Spec) string {
	d, _ := s.Digest()
	return d
}
