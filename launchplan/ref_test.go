package launchplan

import (
	"reflect"
	"strings"
	"testing"
)

func TestReferences(t *testing.T) {
	cases := []struct {
		tmpl    string
		want    []Ref
		wantErr string
	}{
		{tmpl: "plain text"},
		{tmpl: ""},
		{tmpl: "${db.port}", want: []Ref{{RefService, "db", "port"}}},
		{tmpl: "${.port}", want: []Ref{{Kind: RefSelf, Name: "port"}}},
		{tmpl: "${global.greeting}", want: []Ref{{Kind: RefGlobal, Name: "greeting"}}},
		{tmpl: "${env.HOME}", want: []Ref{{Kind: RefEnv, Name: "HOME"}}},
		{tmpl: "http://${web-0.hostname}:${.port}/x", want: []Ref{{RefService, "web-0", "hostname"}, {Kind: RefSelf, Name: "port"}}},
		{tmpl: "$${db.port}", want: nil},
		{tmpl: "$$$${db.port}", want: nil},
		{tmpl: "$$${db.port}", want: []Ref{{RefService, "db", "port"}}},
		{tmpl: "costs $5 and $", want: nil},
		{tmpl: "${", wantErr: "unterminated ${"},
		{tmpl: "a ${db.port", wantErr: "unterminated ${ at offset 2"},
		{tmpl: "${a}", wantErr: "want ${service.attr}"},
		{tmpl: "${a.}", wantErr: "empty attribute name"},
		{tmpl: "${.}", wantErr: "empty attribute name"},
		{tmpl: "${}", wantErr: "want ${service.attr}"},
		{tmpl: "${a.b c}", wantErr: "attribute name \"b c\""},
		{tmpl: "${a b.c}", wantErr: "service name \"a b\""},
		{tmpl: "${a.${b.c}}", wantErr: "cannot be nested"},
		{tmpl: "${a.b.c}", wantErr: "attribute name \"b.c\""},
	}
	for _, c := range cases {
		t.Run(c.tmpl, func(t *testing.T) {
			got, err := References(c.tmpl)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("References(%q) error = %v, want containing %q", c.tmpl, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("References(%q): %v", c.tmpl, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("References(%q) = %v, want %v", c.tmpl, got, c.want)
			}
		})
	}
}

func TestRefString(t *testing.T) {
	for _, tmpl := range []string{"${db.port}", "${.port}", "${global.g}", "${env.HOME}"} {
		refs, err := References(tmpl)
		if err != nil || len(refs) != 1 {
			t.Fatalf("References(%q) = %v, %v", tmpl, refs, err)
		}
		if got := refs[0].String(); got != tmpl {
			t.Errorf("String() = %q, want %q", got, tmpl)
		}
	}
}

func testScope() Scope {
	services := map[string]map[string]string{
		"db": {"hostname": "db.local", "port": "5432", "tricky": "${db.port}"},
	}
	return Scope{
		Self:    map[string]string{"hostname": "me.local", "port": "80"},
		Globals: map[string]string{"greeting": "hi"},
		Service: func(svc, attr string) (string, bool) {
			v, ok := services[svc][attr]
			return v, ok
		},
		Getenv: func(k string) (string, bool) {
			if k == "HOME" {
				return "/home/x", true
			}
			return "", false
		},
	}
}

func TestExpand(t *testing.T) {
	cases := []struct {
		tmpl, want, wantErr string
	}{
		{tmpl: "plain", want: "plain"},
		{tmpl: "${db.hostname}:${db.port}", want: "db.local:5432"},
		{tmpl: "http://${.hostname}:${.port}/", want: "http://me.local:80/"},
		{tmpl: "${global.greeting}, ${env.HOME}", want: "hi, /home/x"},
		{tmpl: "$${db.port} costs $$5 or $5", want: "${db.port} costs $5 or $5"},
		// A value that looks like a reference is inserted as-is, never rescanned.
		{tmpl: "${db.tricky}", want: "${db.port}"},
		{tmpl: "${db.nope} and ${.nope} and ${global.nope} and ${env.NOPE} and ${cache.x}",
			wantErr: "unresolved reference ${db.nope}, ${.nope}, ${global.nope}, ${env.NOPE}, ${cache.x}"},
		{tmpl: "${db", wantErr: "unterminated"},
	}
	s := testScope()
	for _, c := range cases {
		t.Run(c.tmpl, func(t *testing.T) {
			got, err := s.Expand(c.tmpl)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Expand(%q) = %q, %v; want error containing %q", c.tmpl, got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Expand(%q) = %q, %v; want %q", c.tmpl, got, err, c.want)
			}
		})
	}
}

func TestExpandNilFuncs(t *testing.T) {
	t.Setenv("NIGHTSHIFT_LAUNCHPLAN_TEST", "yes")
	got, err := Scope{}.Expand("${env.NIGHTSHIFT_LAUNCHPLAN_TEST}")
	if err != nil || got != "yes" {
		t.Fatalf("nil Getenv should read the process environment: %q, %v", got, err)
	}
	if _, err := (Scope{}).Expand("${db.port}"); err == nil {
		t.Fatal("nil Service func must leave service references unresolved")
	}
}

func TestExpandService(t *testing.T) {
	svc := &Service{
		Name:       "web",
		Attributes: map[string]string{"url": "http://${.hostname}:${.port}", "banner": "${global.greeting} ${.url}"},
		Env:        map[string]string{"DB": "${db.hostname}:${db.port}", "URL": "${.url}"},
		WorkDir:    "/tmp/${.hostname}",
		Boot:       &Program{Path: "/bin/x", Args: []string{"--url", "${.url}", "$${.literal}"}},
		Ready:      &Program{Path: "/bin/y", Args: []string{"${.banner}"}},
		SSH:        &SSH{Host: "${db.hostname}", User: "${env.HOME}", Port: 22},
		TypeConfig: map[string]any{"nested": map[string]any{"list": []any{"${db.port}", int64(3)}}, "n": int64(1)},
		EC2:        map[string]any{"tags": []map[string]any{{"Name": "${.hostname}"}}},
	}
	got, err := ExpandService(svc, testScope())
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"attributes.url":    {got.Attributes["url"], "http://me.local:80"},
		"attributes.banner": {got.Attributes["banner"], "hi http://me.local:80"},
		"env.DB":            {got.Env["DB"], "db.local:5432"},
		"env.URL":           {got.Env["URL"], "http://me.local:80"},
		"workdir":           {got.WorkDir, "/tmp/me.local"},
		"boot.args[1]":      {got.Boot.Args[1], "http://me.local:80"},
		"boot.args[2]":      {got.Boot.Args[2], "${.literal}"},
		"ready.args[0]":     {got.Ready.Args[0], "hi http://me.local:80"},
		"ssh.host":          {got.SSH.Host, "db.local"},
		"ssh.user":          {got.SSH.User, "/home/x"},
		"config list":       {got.TypeConfig["nested"].(map[string]any)["list"].([]any)[0].(string), "5432"},
		"ec2 tags":          {got.EC2["tags"].([]map[string]any)[0]["Name"].(string), "me.local"},
	}
	for field, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", field, c[0], c[1])
		}
	}
	// The input must be untouched: the plan is shared by every boot.
	if svc.Attributes["url"] != "http://${.hostname}:${.port}" || svc.Boot.Args[1] != "${.url}" ||
		svc.SSH.Host != "${db.hostname}" || svc.Env["DB"] != "${db.hostname}:${db.port}" ||
		svc.TypeConfig["nested"].(map[string]any)["list"].([]any)[0] != "${db.port}" ||
		svc.EC2["tags"].([]map[string]any)[0]["Name"] != "${.hostname}" {
		t.Errorf("ExpandService modified its input: %+v", svc)
	}
}

func TestExpandServiceErrors(t *testing.T) {
	cases := []struct {
		name    string
		svc     Service
		wantErr string
	}{
		{"cycle", Service{Name: "a", Attributes: map[string]string{"x": "${.y}", "y": "${.x}"}}, "attribute cycle: x -> y -> x"},
		{"self cycle", Service{Name: "a", Attributes: map[string]string{"x": "${.x}"}}, "attribute cycle: x -> x"},
		{"unresolved attr", Service{Name: "a", Attributes: map[string]string{"x": "${db.nope}"}}, "expand service a: attributes.x: unresolved reference ${db.nope}"},
		{"unresolved arg", Service{Name: "a", Boot: &Program{Args: []string{"ok", "${.nope}"}}}, "boot.args[1]: unresolved reference ${.nope}"},
		{"unresolved env", Service{Name: "a", Env: map[string]string{"K": "${env.NOPE}"}}, "env.K: unresolved reference ${env.NOPE}"},
		{"syntax", Service{Name: "a", WorkDir: "${"}, "workdir: unterminated"},
		{"config", Service{Name: "a", TypeConfig: map[string]any{"a": []any{"${x}"}}}, "config.a[0]: reference ${x}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ExpandService(&c.svc, testScope())
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, c.wantErr)
			}
		})
	}
	if _, err := ExpandService(nil, Scope{}); err == nil {
		t.Fatal("nil service must be an error, not a panic")
	}
}

func TestExpandServiceSelfStartsFromScope(t *testing.T) {
	// Exports written by the boot program arrive through scope.Self; declared
	// attributes build on them, and the caller's map is not modified.
	self := map[string]string{"port": "9000"}
	svc := &Service{Name: "a", Attributes: map[string]string{"url": ":${.port}"}}
	got, err := ExpandService(svc, Scope{Self: self})
	if err != nil {
		t.Fatal(err)
	}
	if got.Attributes["url"] != ":9000" {
		t.Fatalf("url = %q", got.Attributes["url"])
	}
	if _, leaked := self["url"]; leaked {
		t.Fatal("ExpandService wrote into scope.Self")
	}
}
