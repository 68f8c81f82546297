package launchplan

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPlaceholders(t *testing.T) {
	const plan = `name = "p"
[globals]
ami = "ami-CHANGE-ME"
sg = "sg-CHANGE-ME"
region = "us-east-1"

[[level]]
[level.service.a]
boot = "true"
env = { KEY = "${global.ami}", OTHER = "x-CHANGE-ME-y" }
`
	dir := t.TempDir()
	path := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(path, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	gfile := filepath.Join(dir, "site.toml")
	if err := os.WriteFile(gfile, []byte("[globals]\n\nsg = \"sg-CHANGE-ME-too\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		globals map[string]string
		files   []string
		want    []string // pos key
	}{
		{"as shipped", nil, nil, []string{"p.toml:10 level[1].service.a.env.OTHER", "p.toml:3 globals.ami", "p.toml:4 globals.sg"}},
		{"-g replaces", map[string]string{"ami": "ami-1", "sg": "sg-1"}, nil, []string{"p.toml:10 level[1].service.a.env.OTHER"}},
		{"-g still a placeholder", map[string]string{"ami": "CHANGE-ME", "sg": "sg-1"}, nil, []string{"-g globals.ami", "p.toml:10 level[1].service.a.env.OTHER"}},
		{"-G file", map[string]string{"ami": "ami-1"}, []string{gfile}, []string{"p.toml:10 level[1].service.a.env.OTHER", "site.toml:3 globals.sg"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			opts.Globals, opts.GlobalFiles = tc.globals, tc.files
			p, err := Load(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ph := range p.Placeholders {
				got = append(got, Pos{File: filepath.Base(ph.Pos.File), Line: ph.Pos.Line}.String()+" "+ph.Key)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("placeholders %q, want %q", got, tc.want)
			}
			perr := p.PlaceholderError()
			var list *ErrorList
			if !errors.As(perr, &list) || len(*list) != len(tc.want) {
				t.Errorf("PlaceholderError() = %v, want %d plan errors", perr, len(tc.want))
			}
		})
	}
}

func TestNoPlaceholders(t *testing.T) {
	p, err := Parse("ok.toml", []byte("[[level]]\n[level.service.a]\nboot = \"true\"\n"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PlaceholderError(); err != nil || len(p.Placeholders) != 0 {
		t.Errorf("a plan without placeholders: %v, %v", p.Placeholders, err)
	}
}

func TestGlobalsReferToGlobals(t *testing.T) {
	const plan = `name = "p"
[globals]
region = "us-east-1"
worker_region = "${global.region}"
sg = "sg-1"
worker_sg = "${global.sg}"
both = "${global.worker_region}/${global.worker_sg}"
env_kept = "${env.HOME}"
escaped = "$${global.region}"

[[level]]
[level.service.a]
boot = "true"
`
	for _, tc := range []struct {
		name    string
		globals map[string]string
		want    map[string]string
	}{
		{"defaults", nil, map[string]string{"worker_region": "us-east-1", "worker_sg": "sg-1", "both": "us-east-1/sg-1", "env_kept": "${env.HOME}", "escaped": "${global.region}"}},
		{"-g moves the default", map[string]string{"region": "eu-west-1"}, map[string]string{"worker_region": "eu-west-1", "both": "eu-west-1/sg-1"}},
		{"-g sets its own", map[string]string{"region": "eu-west-1", "worker_region": "ap-south-1"}, map[string]string{"worker_region": "ap-south-1", "both": "ap-south-1/sg-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			opts.Globals = tc.globals
			p, err := Parse("p.toml", []byte(plan), opts)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if p.Globals[k] != v {
					t.Errorf("global %s = %q, want %q", k, p.Globals[k], v)
				}
			}
		})
	}
	for _, bad := range []struct{ name, globals, want string }{
		{"cycle", "a = \"${global.b}\"\nb = \"${global.a}\"\n", "refers to itself"},
		{"unknown", "a = \"${global.nope}\"\n", "unknown global"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := Parse("p.toml", []byte("[globals]\n"+bad.globals+"[[level]]\n[level.service.a]\nboot = \"true\"\n"), testOptions())
			if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "p.toml:") {
				t.Errorf("error %v, want file:line and %q", err, bad.want)
			}
		})
	}
}
