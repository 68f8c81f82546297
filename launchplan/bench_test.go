package launchplan

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// benchPlan is 5 levels x 20 services, each service after the first level
// referencing a service of the level before, as a large real plan would.
func benchPlan() string {
	var b strings.Builder
	b.WriteString("name = \"bench\"\n[globals]\ng = \"1\"\n[defaults]\nready_interval = \"500ms\"\n")
	for l := 1; l <= 5; l++ {
		b.WriteString("\n[[level]]\nparallelism = 4\n")
		for s := 0; s < 20; s++ {
			fmt.Fprintf(&b, "[level.service.s%d-%d]\n", l, s)
			b.WriteString("boot = [\"./run.sh\", \"--g\", \"${global.g}\"]\n")
			b.WriteString("ready = { program = \"sleep\", args = [\"${.url}\"] }\n")
			b.WriteString("attributes = { url = \"http://${.hostname}:${.port}\" }\nexports = [\"port\"]\n")
			if l > 1 {
				fmt.Fprintf(&b, "env = { UP = \"${s%d-%d.url}\" }\n", l-1, s)
			}
		}
	}
	return b.String()
}

func BenchmarkLoad(b *testing.B) {
	dir := writeTree(b, map[string]string{"bench.toml": benchPlan(), "run.sh": "#!/bin/sh\n"})
	path := filepath.Join(dir, "bench.toml")
	opts := testOptions()
	plan, err := Load(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	if n := len(plan.Levels) * len(plan.Levels[0].Services); n != 100 {
		b.Fatalf("plan has %d services", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(path, opts); err != nil {
			b.Fatal(err)
		}
	}
}
