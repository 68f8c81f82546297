package daemonflag

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "store-url")
	if err := os.WriteFile(file, []byte("postgres://u:hunter2@db:5432/ns\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args    []string
		wantErr string
		wantPG  bool
		wantURL string
	}{
		{args: nil},
		{args: []string{"--store", "postgres://h/db"}, wantPG: true, wantURL: "postgres://h/db"},
		{args: []string{"--store", "postgresql://h/db", "--lease"}, wantPG: true, wantURL: "postgresql://h/db"},
		{args: []string{"--store-file", file, "--lease", "--lease-ttl", "3s"}, wantPG: true, wantURL: "postgres://u:hunter2@db:5432/ns"},
		{args: []string{"--store", "runs.db"}, wantErr: "want a postgres:// URL"},
		{args: []string{"--store", "mysql://u:hunter2@h/db"}, wantErr: "want a postgres:// URL"},
		{args: []string{"--store", "postgres://h/db", "--store-file", file}, wantErr: "not both"},
		{args: []string{"--store-file", filepath.Join(dir, "missing")}, wantErr: "--store-file"},
		{args: []string{"--store-file", empty}, wantErr: "empty"},
		{args: []string{"--lease"}, wantErr: "--lease needs a PostgreSQL --store"},
		{args: []string{"--store", "postgres://h/db", "--lease", "--lease-ttl", "10ms"}, wantErr: "--lease-ttl"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var s Store
		s.Register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := s.Resolve()
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.args, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%q: err = %v shows the password", tc.args, err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case s.PG() != tc.wantPG || s.URL != tc.wantURL:
			t.Errorf("%q: PG %v URL %q, want %v %q", tc.args, s.PG(), s.URL, tc.wantPG, tc.wantURL)
		}
	}
}
