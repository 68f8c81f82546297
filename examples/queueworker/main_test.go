package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// An item's body may ask for its own work time, within --max-work; a body
// without one, or with one that does not parse, gets --work.
func TestWorkTimeOf(t *testing.T) {
	w := workTime{Default: 2 * time.Second, Max: time.Minute}
	cases := []struct {
		body string
		want time.Duration
	}{
		{"item 1 of 3 at 2026-12-02T16:00:00Z", 2 * time.Second},
		{"item 1 of 3 at 2026-12-02T16:00:00Z work=8s", 8 * time.Second},
		{"work=500ms item 2", 500 * time.Millisecond},
		{"item 3 work=1h", time.Minute},
		{"item 4 work=-1s", 2 * time.Second},
		{"item 5 work=soon", 2 * time.Second},
		{"item 6 homework=9s", 2 * time.Second},
		{"", 2 * time.Second},
	}
	for _, tc := range cases {
		if got := w.of([]byte(tc.body)); got != tc.want {
			t.Errorf("work for %q = %s, want %s", tc.body, got, tc.want)
		}
	}
}

func TestHealthHandler(t *testing.T) {
	var consuming atomic.Bool
	h := healthHandler(&consuming, "q1")
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || body != "no broker connection\n" {
		t.Errorf("before consuming: %d %q, want 503", code, body)
	}
	consuming.Store(true)
	if code, body := get("/healthz"); code != http.StatusOK || body != "consuming q1\n" {
		t.Errorf("consuming: %d %q, want 200", code, body)
	}
	if code, _ := get("/other"); code != http.StatusNotFound {
		t.Errorf("another path: %d, want 404", code)
	}
}
