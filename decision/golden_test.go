package decision

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenCase is one testdata/golden/*.json file: an engine, its config and
// a snapshot. The expected decision is in the matching .golden file.
// Regenerate with NIGHTSHIFT_UPDATE_GOLDEN=1 go test ./decision/ -run Golden.
type goldenCase struct {
	Engine   string         `json:"engine"`
	Config   map[string]any `json:"config"`
	Snapshot Snapshot       `json:"snapshot"`
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	update := os.Getenv("NIGHTSHIFT_UPDATE_GOLDEN") == "1"
	reg := NewRegistry()
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var gc goldenCase
			if err := json.Unmarshal(raw, &gc); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			e, err := reg.New(gc.Engine)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Configure(gc.Config); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(e.Decide(gc.Snapshot)); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with NIGHTSHIFT_UPDATE_GOLDEN=1 to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decision differs from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}
