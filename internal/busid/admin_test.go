package busid_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"nightshift/internal/busid"
)

// TestAdminFailsOverToAnsweringNode: with a cluster's management APIs
// listed, a node that does not answer is passed over, so users can be
// made while one node is lost; an error answer is final; no error shows a
// password.
func TestAdminFailsOverToAnsweringNode(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := strings.Replace(dead.URL, "http://", "http://admin:s3cret@", 1)
	dead.Close()
	var puts atomic.Int32
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "admin" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		puts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer live.Close()
	liveURL := strings.Replace(live.URL, "http://", "http://admin:s3cret@", 1)

	a := busid.Admin{URL: deadURL + "," + liveURL}
	if err := a.EnsureUser(context.Background(), "ns.r.mgmt", "pw", busid.MgmtPermissions("r")); err != nil {
		t.Fatalf("EnsureUser past a lost node: %v", err)
	}
	if puts.Load() == 0 {
		t.Fatal("the answering node was never asked")
	}
	err := busid.Admin{URL: deadURL + "," + deadURL}.DeleteUser(context.Background(), "ns.r.mgmt")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("no node answers: err %v, want an error without the password", err)
	}
	wrong := strings.Replace(liveURL, "s3cret", "wrong", 1)
	if err := (busid.Admin{URL: wrong + "," + liveURL}).DeleteUser(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("a refusal must be final, not passed over: %v", err)
	}
}
