// Package httpprobe performs a sitter task's HTTP health probe: one GET on
// a fresh connection, a 2xx answer passing. It is the sitter's HTTP edge
// (sitter.HTTPChecker), kept out of the sitter's core.
package httpprobe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"nightshift/sitter"
)

// Checker is a sitter.HTTPChecker. Its zero value is ready to use.
type Checker struct{}

var _ sitter.HTTPChecker = Checker{}

// Check GETs u: no keep-alive, so every check is a fresh connection as a
// load balancer's is, no proxy, and no redirect followed.
func (Checker) Check(ctx context.Context, u string) sitter.ProbeResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return sitter.ProbeResult{Output: err.Error()}
	}
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return sitter.ProbeResult{Output: op.Error()}
		}
		return sitter.ProbeResult{Output: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, sitter.MaxProbeOutput))
	out := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if l := firstLine(body); l != "" {
		out += ": " + l
	}
	return sitter.ProbeResult{OK: resp.StatusCode >= 200 && resp.StatusCode < 300, Output: out}
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return string(b[:i])
		}
	}
	return string(b)
}
