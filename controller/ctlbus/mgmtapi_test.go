package ctlbus_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"nightshift/controller/ctlbus"
)

func TestMgmtAPIQueueDepth(t *testing.T) {
	cases := []struct {
		name    string
		vhost   string
		status  int
		body    string
		want    int
		wantErr string
	}{
		{"ready plus unacked", "", 200, `{"messages_ready":4,"messages_unacknowledged":3}`, 7, ""},
		{"a named vhost is escaped", "prod/a", 200, `{"messages_ready":0,"messages_unacknowledged":0}`, 0, ""},
		{"stats not collected yet", "", 200, `{"name":"q"}`, 0, "stats not collected yet"},
		{"an HTTP error", "", 503, `busy`, 0, "HTTP 503"},
		{"not JSON", "", 200, `<html>`, 0, "decode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var path, user, pass string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.EscapedPath()
				user, pass, _ = r.BasicAuth()
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			base := strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1)
			got, err := ctlbus.MgmtAPI{}.QueueDepth(context.Background(), base, tc.vhost, "work.q")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q shows the password", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("depth %d, err %v; want %d", got, err, tc.want)
			}
			wantPath := "/api/queues/%2F/work.q"
			if tc.vhost != "" {
				wantPath = "/api/queues/prod%2Fa/work.q"
			}
			if path != wantPath || user != "ops" || pass != "s3cret" {
				t.Fatalf("request %s as %s:%s, want %s as ops:s3cret", path, user, pass, wantPath)
			}
		})
	}
}

func TestMgmtAPIUnreachableHidesPassword(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1)
	srv.Close() // nothing listens there any more
	_, err := ctlbus.MgmtAPI{}.QueueDepth(context.Background(), base, "/", "q")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err %v: want an error without the password", err)
	}
}
