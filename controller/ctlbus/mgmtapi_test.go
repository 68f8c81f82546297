package ctlbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/testsupport/amqptest"
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
		{"queue not declared", "", 404, `{"error":"Object Not Found","reason":"Not Found"}`, 0, "HTTP 404"},
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
				if missing := errors.Is(err, controller.ErrQueueMissing); missing != (tc.status == http.StatusNotFound) {
					t.Fatalf("err %v: ErrQueueMissing %v, want it only for a 404", err, missing)
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

// TestMgmtAPIClusterFailsOver: with a cluster's list of management APIs a
// node that does not answer is passed over, one that answers with an
// error is not (it is the cluster's answer), and no error shows a password.
func TestMgmtAPIClusterFailsOver(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadBase := strings.Replace(dead.URL, "http://", "http://ops:s3cret@", 1)
	dead.Close()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"messages_ready":2,"messages_unacknowledged":1}`))
	}))
	defer live.Close()
	liveBase := strings.Replace(live.URL, "http://", "http://ops:s3cret@", 1)
	got, err := ctlbus.MgmtAPI{}.QueueDepth(context.Background(), deadBase+","+liveBase, "/", "q")
	if err != nil || got != 3 {
		t.Fatalf("depth %d, err %v; want 3 from the node that answers", got, err)
	}
	_, err = ctlbus.MgmtAPI{}.QueueDepth(context.Background(), deadBase+","+deadBase, "/", "q")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err %v: want an error without the password", err)
	}
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer busy.Close()
	busyBase := strings.Replace(busy.URL, "http://", "http://ops:s3cret@", 1)
	if _, err := (ctlbus.MgmtAPI{}).QueueDepth(context.Background(), busyBase+","+liveBase, "/", "q"); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("err %v: want the answering node's HTTP 503", err)
	}
}

// TestMeterNamesAMissingQueue reads depths by passive declare on the real
// broker: a queue nobody declared is ErrQueueMissing (status then says
// "not declared yet"), and once declared its ready count is read.
func TestMeterNamesAMissingQueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := fmt.Sprintf("metertest%d", time.Now().UnixNano())
	b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "meter", Run: run, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	m := ctlbus.Meter{Bus: b}
	queue := run + ".work"
	if _, err := m.QueueDepth(ctx, queue); !errors.Is(err, controller.ErrQueueMissing) {
		t.Fatalf("depth of an undeclared queue: err %v, want ErrQueueMissing", err)
	}
	if err := b.DeclareQueue(ctx, queue); err != nil {
		t.Fatalf("declare: %v", err)
	}
	amqptest.DeleteAtEnd(t, amqptest.Topology{Queues: []string{queue}})
	if n, err := m.QueueDepth(ctx, queue); err != nil || n != 0 {
		t.Fatalf("depth of an empty declared queue: %d, %v; want 0", n, err)
	}
}
