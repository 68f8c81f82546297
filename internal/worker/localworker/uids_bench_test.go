package localworker_test

import (
	"context"
	"testing"

	"nightshift/internal/worker/localworker"
	"nightshift/internal/workeruser"
)

// BenchmarkPickUIDs200 is a burst of 200 launches of one instance each, as
// the provisioner makes them: every pick sees the uids of the earlier
// ones held by the ledger.
//
//	go test -run '^$' -bench PickUIDs200 -benchtime 5x ./internal/worker/localworker
func BenchmarkPickUIDs200(b *testing.B) {
	spec := workerSpec(&testing.T{}, "a", "", "true")
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		root := b.TempDir()
		r := localworker.DefaultUIDs
		d, err := localworker.New(localworker.Config{Home: b.TempDir(), Run: "bench", Command: []string{"true"},
			Isolation: &localworker.Isolation{Users: &workeruser.Users{}, Root: root, UIDs: &r}})
		if err != nil {
			b.Fatal(err)
		}
		held := map[uint32]bool{}
		heldBy := func() (map[uint32]bool, error) { return held, nil }
		b.StartTimer()
		for range 200 {
			got, err := d.PickUIDs(ctx, spec, 1, heldBy)
			if err != nil || len(got) != 1 {
				b.Fatalf("pick: %v, %v", got, err)
			}
			held[got[0]] = true
		}
	}
}
