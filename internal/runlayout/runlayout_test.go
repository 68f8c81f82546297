package runlayout

import "testing"

// TestPaths pins the on-disk layout: these paths are read by other
// processes, older runs and operators, so a change here is a migration.
func TestPaths(t *testing.T) {
	r := Of("/h", "r1")
	cases := []struct{ name, got, want string }{
		{"db", DB("/h"), "/h/nightshift.db"},
		{"mgmt log", MgmtLog("/h"), "/h/mgmt.log"},
		{"runs", Runs("/h"), "/h/runs"},
		{"dir", r.Dir(), "/h/runs/r1"},
		{"secret", r.Secret(), "/h/runs/r1/secret"},
		{"lock", r.Lock(), "/h/runs/r1/run.lock"},
		{"launch log", r.LaunchLog(), "/h/runs/r1/launch.log"},
		{"logs", r.Logs(), "/h/runs/r1/logs"},
		{"step log", r.StepLog("mq.boot"), "/h/runs/r1/logs/mq.boot.log"},
		{"work", r.Work("mq"), "/h/runs/r1/work/mq"},
		{"instances", r.Instances(), "/h/runs/r1/instances"},
		{"instance", r.Instance("i-1"), "/h/runs/r1/instances/i-1"},
		{"pki", r.PKI(), "/h/runs/r1/pki"},
		{"redact values", r.RedactValues(), "/h/runs/r1/redact-values"},
		{"keeper", r.Keeper(), "/h/runs/r1/keeper"},
		{"provisioner db", r.ProvisionerDB(), "/h/runs/r1/provisioner.db"},
		{"relative home", Of("home", "r").Secret(), "home/runs/r/secret"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}
