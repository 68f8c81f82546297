package controller_test

import (
	"strings"
	"testing"

	"nightshift/controller"
	"nightshift/decision"
)

func TestLoadJobs(t *testing.T) {
	jobs, err := controller.LoadJobs("testdata/jobs.toml", decision.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Name != "crunch" || jobs[1].Name != "web" {
		t.Fatalf("jobs %+v, want crunch and web", jobs)
	}
	c, w := jobs[0], jobs[1]
	if c.Driver != "ec2" || c.Queue.Name != "crunch.work" || c.Queue.VHost != "/" || c.Instance["instance_type"] != "t3.small" {
		t.Errorf("crunch = %+v", c)
	}
	if w.Health.MissingTimeout.String() != "5s" || w.Driver != "local" || w.Worker["name"] != "web" {
		t.Errorf("web = %+v", w)
	}
	if w.Where() != "jobs.toml:3" {
		t.Errorf("web defined at %q, want jobs.toml:3", w.Where())
	}
	js, err := controller.LoadJobs("testdata/jobs.json", decision.NewRegistry())
	if err != nil || len(js) != 1 || js[0].Policy["n"] == nil {
		t.Fatalf("json jobs %+v, err %v", js, err)
	}
}

func TestParseJobsErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"missing engine", "[jobs.web]\ndriver = \"local\"\n", []string{"jobs.toml:1", "job web: engine: required"}},
		{"unknown engine", "[jobs.web]\nengine = \"nope\"\n", []string{"jobs.toml:1", "job web", "unknown engine"}},
		{"bad policy value", "\n[jobs.web]\nengine = \"npreserving\"\n[jobs.web.policy]\nn = \"many\"\n", []string{"jobs.toml:2", "job web: policy: npreserving: n:"}},
		{"bad driver", "[jobs.web]\nengine = \"npreserving\"\ndriver = \"k8s\"\n", []string{"job web: driver:", "k8s"}},
		{"unknown key", "[jobs.web]\nengine = \"npreserving\"\nreplicas = 3\n", []string{"job web: replicas: unknown key"}},
		{"policy not a table", "[jobs.web]\nengine = \"npreserving\"\npolicy = 3\n", []string{"job web: policy: want a table"}},
		{"bad health", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.health]\nmissing_timeout = \"soon\"\n", []string{"job web: health: missing_timeout"}},
		{"missing below interval", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.health]\nheartbeat_interval = \"5s\"\nmissing_timeout = \"1s\"\n", []string{"missing_timeout", "below heartbeat_interval"}},
		{"mgmt without name", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.queue]\nmanagement_url = \"http://h:15672\"\n", []string{"job web: queue: name: required"}},
		{"mgmt not http", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.queue]\nname = \"q\"\nmanagement_url = \"amqp://h\"\n", []string{"job web: queue: management_url"}},
		{"mgmt list with one not http", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.queue]\nname = \"q\"\nmanagement_url = \"http://h:1,amqp://h:2\"\n", []string{"job web: queue: management_url"}},
		{"queue unknown key", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.queue]\nnmae = \"q\"\n", []string{"job web: queue: nmae: unknown key"}},
		{"bad job name", "[jobs.\"a b\"]\nengine = \"npreserving\"\n", []string{"job name", "a b"}},
		{"stray top-level key", "run = \"x\"\n", []string{"jobs.toml:1", "key run: unknown key"}},
		{"block_after_silent not a number", "[jobs.web]\nengine = \"npreserving\"\nblock_after_silent = \"3\"\n", []string{"jobs.toml:1", "job web: key block_after_silent: want an integer from 1 to 100, got a string"}},
		{"block_after_silent zero", "[jobs.web]\nengine = \"npreserving\"\nblock_after_silent = 0\n", []string{"job web: key block_after_silent: want an integer from 1 to 100, got 0"}},
		{"block_after_silent too big", "[jobs.web]\nengine = \"npreserving\"\nblock_after_silent = 1000\n", []string{"job web: key block_after_silent", "got 1000"}},
		{"toml syntax", "[jobs.web\n", []string{"jobs.toml"}},
		{"worker probe unknown key", "\n[jobs.web]\nengine = \"npreserving\"\n[jobs.web.worker]\nhealth = { http = \"http://127.0.0.1:${port}/\", period = \"1s\" }\n",
			[]string{"jobs.toml:2", "job web: key worker.health.period: unknown key"}},
		{"worker probe bad timeout", "[jobs.web]\nengine = \"npreserving\"\n[jobs.web.worker.health]\ncommand = [\"true\"]\ninterval = \"1s\"\ntimeout = \"5s\"\n",
			[]string{"jobs.toml:1", "job web: key worker.health.timeout: 5s must not exceed interval 1s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := controller.ParseJobs("jobs.toml", []byte(tc.doc), decision.NewRegistry())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseJobBlockAfterSilent(t *testing.T) {
	cases := []struct {
		name, file, doc string
		want            int
	}{
		{"default", "jobs.toml", "[jobs.web]\nengine = \"npreserving\"\n", 3},
		{"TOML", "jobs.toml", "[jobs.web]\nengine = \"npreserving\"\nblock_after_silent = 5\n", 5},
		{"JSON", "jobs.json", `{"jobs": {"web": {"engine": "npreserving", "block_after_silent": 1}}}`, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			jobs, err := controller.ParseJobs(tc.file, []byte(tc.doc), decision.NewRegistry())
			if err != nil || len(jobs) != 1 || jobs[0].BlockAfterSilent != tc.want {
				t.Fatalf("jobs %+v (err %v), want block_after_silent %d", jobs, err, tc.want)
			}
		})
	}
}

func FuzzParseJobs(f *testing.F) {
	f.Add([]byte("[jobs.web]\nengine = \"npreserving\"\n[jobs.web.policy]\nn = 2\n"))
	f.Add([]byte("[jobs.q]\nengine = \"queuelen\"\n[jobs.q.policy]\nhigh_water = 5\nlow_water = 1\n[jobs.q.queue]\nname = \"x\"\n"))
	f.Add([]byte("[jobs.web]\nengine = \"npreserving\"\nblock_after_silent = 7\n"))
	reg := decision.NewRegistry()
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, err := controller.ParseJobs("jobs.toml", data, reg)
		if err != nil {
			return
		}
		for _, j := range jobs {
			if j.Name == "" || j.Engine == "" || (j.Driver != "local" && j.Driver != "ec2" && j.Driver != "sim") ||
				j.BlockAfterSilent < 1 || j.BlockAfterSilent > 100 {
				t.Fatalf("accepted an invalid job %+v", j)
			}
		}
	})
}

func TestJobErrorExampleInDocs(t *testing.T) {
	_, err := controller.ParseJobs("jobs.toml", []byte("\n\n[jobs.web]\nengine = \"npreserving\"\n[jobs.web.policy]\nn = \"many\"\n"), decision.NewRegistry())
	if err == nil || !strings.HasPrefix(err.Error(), "jobs.toml:3: job web: policy: npreserving: n: ") {
		t.Fatalf("error %v: want the documented shape", err)
	}
	t.Log(err)
}

// TestParseJobsRefusesWhatTheProvisionerRefuses: the controller reads the
// jobs file through the same decoder as the provisioner, so trailing data
// after the JSON object is an error for both, not a silent truncation.
func TestParseJobsRefusesWhatTheProvisionerRefuses(t *testing.T) {
	doc := []byte(`{"jobs": {"web": {"engine": "npreserving", "policy": {"n": 1}}}} {"jobs": {}}`)
	_, err := controller.ParseJobs("jobs.json", doc, decision.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "trailing data") {
		t.Fatalf("err = %v, want trailing data refused", err)
	}
}
