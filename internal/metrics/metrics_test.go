package metrics

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestServeScrapes: the endpoint serves the registry's metrics in the
// text format a Prometheus server parses, on loopback, until ctx ends.
func TestServeScrapes(t *testing.T) {
	reg := NewRegistry()
	c := NewController(reg, "r1")
	c.Decided("web", []string{"launch"})
	srv, err := Listen("", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") || !strings.HasSuffix(srv.URL, "/metrics") {
		t.Fatalf("URL %s, want http://127.0.0.1:PORT/metrics", srv.URL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	f := fams["nightshift_decisions_total"]
	if f == nil || len(f.Metric) != 1 || f.Metric[0].GetCounter().GetValue() != 1 {
		t.Errorf("nightshift_decisions_total = %v, want one series at 1", f)
	}
	if fams["go_goroutines"] == nil || fams["process_start_time_seconds"] == nil {
		t.Error("the runtime and process collectors are missing")
	}
	if r, err := http.Post(srv.URL, "text/plain", nil); err == nil {
		if r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /metrics: %s, want 405", r.Status)
		}
		r.Body.Close()
	}
	file := filepath.Join(t.TempDir(), "metrics-url")
	if err := srv.WriteURLFile(file); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadURLFile(file); err != nil || got != srv.URL {
		t.Errorf("ReadURLFile = %q, %v; want %q", got, err, srv.URL)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(srv.URL); err == nil {
		t.Error("the endpoint still answers after Serve returned")
	}
	if _, err := Listen("127.0.0.1:99999", reg, nil); err == nil {
		t.Error("a bad address was accepted")
	}
}
