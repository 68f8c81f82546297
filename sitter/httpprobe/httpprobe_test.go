package httpprobe_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"nightshift/sitter/httpprobe"
)

func TestCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("fine\nsecond line"))
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/down":
			http.Error(w, "db down", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cases := []struct {
		url    string
		ok     bool
		output string
	}{
		{srv.URL + "/ok", true, "HTTP 200: fine"},
		{srv.URL + "/moved", false, "HTTP 302"}, // a redirect is not followed: the endpoint moved
		{srv.URL + "/down", false, "HTTP 503: db down"},
		{srv.URL + "/nope", false, "HTTP 404: 404 page not found"},
		{closed.URL + "/ok", false, "connection refused"},
	}
	for _, tc := range cases {
		res := httpprobe.Checker{}.Check(context.Background(), tc.url)
		if res.OK != tc.ok || !strings.HasPrefix(res.Output, tc.output) && !strings.Contains(res.Output, tc.output) {
			t.Errorf("Check(%s) = %v %q, want %v %q", tc.url, res.OK, res.Output, tc.ok, tc.output)
		}
	}
}
