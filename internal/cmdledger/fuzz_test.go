package cmdledger

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeEntry: the Dir ledger's decoder never panics, and what it
// accepts survives a round trip.
func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte(`{"id":"c1","type":"x","sig":"ab","state":"done","attempts":1,"reply":{"ok":true},"started":"2026-12-02T15:00:00Z","updated":"2026-12-02T15:00:01Z"}`))
	f.Add([]byte(`{"id":"c1","state":"started","attempts":2}`))
	f.Add([]byte(`{"id":"","state":"done","attempts":1}`))
	f.Add([]byte(`{"id":"c1","state":"later","attempts":1}`))
	f.Add([]byte(`{"id":"c1","state":"done","attempts":1,"extra":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEntry(data)
		if err != nil {
			return
		}
		if e.ID == "" || (e.State != StateDone && e.State != StateStarted) || e.Attempts < 1 {
			t.Fatalf("accepted an invalid entry %+v", e)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := DecodeEntry(again)
		if err != nil || e2.ID != e.ID || e2.State != e.State || e2.Attempts != e.Attempts {
			t.Fatalf("round trip: %+v, %v (from %+v)", e2, err, e)
		}
	})
}
