package pgdb

import (
	"strings"
	"testing"
)

func TestSchemaName(t *testing.T) {
	long := strings.Repeat("r", 80)
	for _, tc := range []struct {
		parts []string
		want  string // "" when only the properties below are checked
	}{
		{[]string{"ns", "run1", "provisioner"}, "ns_run1_provisioner"},
		{[]string{"ns", "My-Run", "controller"}, ""},
		{[]string{"ns", "my_run", "controller"}, "ns_my_run_controller"},
		{[]string{"9lives"}, ""},
		{[]string{"ns", long, "controller"}, ""},
		{[]string{"ns", `x"; DROP SCHEMA public; --`}, ""},
	} {
		got := SchemaName(tc.parts...)
		if tc.want != "" && got != tc.want {
			t.Errorf("SchemaName(%q) = %q, want %q", tc.parts, got, tc.want)
		}
		if len(got) > 63 || got == "" || unsafeIdent.MatchString(got) || (got[0] >= '0' && got[0] <= '9') {
			t.Errorf("SchemaName(%q) = %q: not a plain identifier of at most 63 bytes", tc.parts, got)
		}
	}
	// Names that sanitize alike stay apart.
	if a, b := SchemaName("ns", "a-b"), SchemaName("ns", "a.b"); a == b {
		t.Errorf("runs a-b and a.b share schema %q", a)
	}
	if a, b := SchemaName("ns", long+"1"), SchemaName("ns", long+"2"); a == b {
		t.Errorf("two long run names share schema %q", a)
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"postgres://u:p@h/db": true, "postgresql://h/db": true, "/var/lib/p.db": false, "": false, "Postgres://h": false,
	} {
		if IsURL(s) != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, !want, want)
		}
	}
}

// FuzzSchemaName: whatever a run is called, its schema name is a plain
// identifier PostgreSQL keeps whole (never quoted, never truncated), and
// a name the sanitizing changed carries a hash of the original.
func FuzzSchemaName(f *testing.F) {
	for _, s := range []string{"run1", "My-Run", "", "9", strings.Repeat("é", 40), `a"b`, "a_b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, run string) {
		got := SchemaName("ns", run, "controller")
		if len(got) > 63 || got == "" || unsafeIdent.MatchString(got) || (got[0] >= '0' && got[0] <= '9') {
			t.Fatalf("SchemaName(%q) = %q: not a plain identifier of at most 63 bytes", run, got)
		}
		if plain := "ns_" + run + "_controller"; got != plain && len(got) < 9 {
			t.Fatalf("SchemaName(%q) = %q changed the name without a hash", run, got)
		}
	})
}
