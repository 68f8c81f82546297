package jobspec

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDNSTableParsedAndKeptOutOfTheDigest(t *testing.T) {
	with := []byte(`[jobs.web]
engine = "npreserving"
driver = "ec2"
[jobs.web.worker]
command = ["/bin/w"]
[jobs.web.dns]
zone = "example.internal"
name = "${job}-${index}.${run}.example.internal"
pool = "${job}.${run}.example.internal"
ttl = 30
address = "public"
`)
	without := []byte(`[jobs.web]
engine = "npreserving"
driver = "ec2"
[jobs.web.worker]
command = ["/bin/w"]
`)
	a, err := Parse("jobs.toml", with)
	if err != nil {
		t.Fatal(err)
	}
	want := &DNS{Zone: "example.internal", Name: "${job}-${index}.${run}.example.internal", Pool: "${job}.${run}.example.internal", TTL: 30, Address: "public"}
	if !reflect.DeepEqual(a["web"].DNS, want) {
		t.Fatalf("dns = %+v, want %+v", a["web"].DNS, want)
	}
	// The controller digests driver, instance and worker only: a dns table
	// must not make every launch a spec mismatch.
	b, err := Parse("jobs.toml", without)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a["web"].Digest()
	db, _ := b["web"].Digest()
	if da != db {
		t.Errorf("a dns table changed the digest: %s vs %s", da, db)
	}
	ls, err := a["web"].LaunchSpec(nil)
	if err != nil || strings.Contains(string(ls), "dns") {
		t.Errorf("launch spec %s (%v) carries the dns table", ls, err)
	}
	// The provisioner gets it through the jobs file.
	path := filepath.Join(t.TempDir(), "jobs.json")
	if err := Write(path, a); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c["web"].DNS, want) {
		t.Errorf("after Write and Load dns = %+v, want %+v", c["web"].DNS, want)
	}
	// Defaults.
	d, err := Parse("jobs.json", []byte(`{"jobs": {"w": {"dns": {"zone": "Z123", "name": "w-${index}.example.internal"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := d["w"].DNS; got.TTL != DefaultDNSTTL || got.Address != AddressPriv || got.Pool != "" {
		t.Errorf("defaults: %+v", got)
	}
}

func TestDNSTableRefuses(t *testing.T) {
	cases := []struct{ name, dns, want string }{
		{"not a table", `"x"`, "key dns: want a table"},
		{"no zone", `{"name": "w-${index}.example.internal"}`, "key dns.zone: required"},
		{"no name", `{"zone": "Z1"}`, "key dns.name: required"},
		{"no index", `{"zone": "Z1", "name": "w.example.internal"}`, "key dns.name: \"w.example.internal\": want ${index}"},
		{"unknown placeholder", `{"zone": "Z1", "name": "${host}-${index}.example.internal"}`, "key dns.name: \"${host}-${index}.example.internal\": unknown placeholder ${host}"},
		{"bad label", `{"zone": "Z1", "name": "w_${index}.example.internal"}`, "key dns.name: dns name \"w_0.example.internal\": label \"w_0\""},
		{"one label", `{"zone": "Z1", "name": "w${index}"}`, "two labels"},
		{"pool with index", `{"zone": "Z1", "name": "w-${index}.x.y", "pool": "p-${index}.x.y"}`, "key dns.pool:"},
		{"bad address", `{"zone": "Z1", "name": "w-${index}.x.y", "address": "elastic"}`, "key dns.address: \"elastic\""},
		{"ttl zero", `{"zone": "Z1", "name": "w-${index}.x.y", "ttl": 0}`, "key dns.ttl: want seconds from 1"},
		{"ttl fraction", `{"zone": "Z1", "name": "w-${index}.x.y", "ttl": 1.5}`, "key dns.ttl"},
		{"ttl string", `{"zone": "Z1", "name": "w-${index}.x.y", "ttl": "60"}`, "key dns.ttl"},
		{"zone number", `{"zone": 5, "name": "w-${index}.x.y"}`, "key dns.zone: want a string"},
		{"unknown key", `{"zone": "Z1", "name": "w-${index}.x.y", "type": "AAAA"}`, "key dns.type: unknown key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("jobs.json", []byte(`{"jobs": {"web": {"dns": `+tc.dns+`}}}`))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "jobs.json: job web: ") {
				t.Fatalf("err = %v, want one naming jobs.json, job web and %q", err, tc.want)
			}
		})
	}
}

func TestRenderName(t *testing.T) {
	cases := []struct {
		tmpl, job, run string
		index          int
		want, err      string
	}{
		{"${job}-${index}.${run}.example.internal", "web", "prod", 2, "web-2.prod.example.internal", ""},
		{"${job}-${index}.${run}.Example.Internal.", "Web", "prod", 0, "web-0.prod.example.internal", ""},
		{"${job}-${index}.${run}.example.internal", "big_jobs", "run.1", 7, "big-jobs-7.run-1.example.internal", ""},
		{"${job}.${run}.example.internal", "web", "prod", 0, "web.prod.example.internal", ""},
		{"${job}-${index}.example.internal", "-web", "prod", 0, "", "label \"-web-0\""},
		{"${job}-${index}.example.internal", strings.Repeat("a", 63), "prod", 0, "", "want 1-63"},
		{"${job}-${index}.example.internal", "web", "prod", -1, "", "index -1"},
		{"${job}-${index}..example.internal", "web", "prod", 0, "", "label \"\""},
		{"${zone}.example.internal", "web", "prod", 0, "", "unknown placeholder ${zone}"},
	}
	for _, tc := range cases {
		got, err := RenderName(tc.tmpl, tc.job, tc.run, tc.index)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("RenderName(%q, %q, %q, %d) = %q, %v; want %q", tc.tmpl, tc.job, tc.run, tc.index, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("RenderName(%q, %q, %q, %d) = %q, %v; want an error with %q", tc.tmpl, tc.job, tc.run, tc.index, got, err, tc.err)
		}
	}
}

// A replacement takes over the index, and so the name, of the worker it
// replaces: the lowest index no live worker holds.
func TestNextIndex(t *testing.T) {
	cases := []struct {
		held []int
		want int
	}{
		{nil, 0},
		{[]int{0, 1, 2}, 3},
		{[]int{0, 2}, 1},       // worker 1 died: its replacement is 1
		{[]int{2, 0, 2, 1}, 3}, // any order, duplicates
		{[]int{1, 2, 3}, 0},    // worker 0 died
		{[]int{5}, 0},
	}
	for _, tc := range cases {
		if got := NextIndex(tc.held); got != tc.want {
			t.Errorf("NextIndex(%v) = %d, want %d", tc.held, got, tc.want)
		}
	}
	// Scale to 3, kill worker 1, replace it, scale in to 2: names stay put.
	live := []int{}
	for range 3 {
		live = append(live, NextIndex(live))
	}
	live = []int{live[0], live[2]}
	live = append(live, NextIndex(live))
	if !reflect.DeepEqual(live, []int{0, 2, 1}) {
		t.Errorf("after a replacement the indexes are %v, want [0 2 1]", live)
	}
}

func FuzzRenderName(f *testing.F) {
	for _, s := range []string{"${job}-${index}.${run}.example.internal", "${", "${}", "$${job}.x.y", "a.b", "${index}${index}.x"} {
		f.Add(s, "web", "prod", 3)
	}
	f.Fuzz(func(t *testing.T, tmpl, job, run string, index int) {
		name, err := RenderName(tmpl, job, run, index)
		if err != nil {
			return
		}
		if len(name) > 253 || strings.ToLower(name) != name || strings.HasSuffix(name, ".") || strings.Contains(name, "${") {
			t.Fatalf("RenderName(%q, %q, %q, %d) = %q: not a clean DNS name", tmpl, job, run, index, name)
		}
		for _, l := range strings.Split(name, ".") {
			if !label.MatchString(l) {
				t.Fatalf("label %q of %q", l, name)
			}
		}
	})
}
