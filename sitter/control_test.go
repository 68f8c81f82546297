package sitter_test

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/sitter"
)

func TestControlSocket(t *testing.T) {
	h := start(t, sitter.Config{}, sitter.Task{Name: "svc", Shell: "echo ready; exec sleep 300", StopGrace: dur(time.Second)})
	sock := filepath.Join(h.dir, "sitter.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.ServeControl(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	})
	h.waitTask(t, "svc", 5*time.Second, "running", func(ts sitter.TaskStatus) bool { return ts.State == sitter.StateRunning })
	call := func(req sitter.ControlRequest) (sitter.ControlResponse, error) {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		var resp sitter.ControlResponse
		var err error
		// The listener may not be up yet; wait for it until cctx's
		// deadline, not for a fixed number of tries that a loaded machine
		// can use up.
		for {
			resp, err = sitter.Control(cctx, sock, req)
			if err == nil || !strings.Contains(err.Error(), "is the sitter running") || cctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return resp, err
	}
	resp, err := call(sitter.ControlRequest{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status == nil || len(resp.Status.Tasks) != 1 || resp.Status.Tasks[0].State != sitter.StateRunning || resp.Status.LimitMode != "polling" {
		t.Fatalf("status = %+v", resp.Status)
	}
	// Running means started, not that the shell has echoed yet: wait for
	// the line, so that the tail after the stop tests what the sitter
	// keeps, not how fast a loaded machine runs echo.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := call(sitter.ControlRequest{Op: "tail", Task: "svc", N: 1})
		if err == nil && resp.Tail != nil && len(resp.Tail.Stdout) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output from the task within 10s: %+v, %v", resp.Tail, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := call(sitter.ControlRequest{Op: "stop", Task: "svc"}); err != nil {
		t.Fatal(err)
	}
	if st := h.task(t, "svc"); st.State != sitter.StateStopped {
		t.Errorf("after stop over the socket: %s", st.State)
	}
	if _, err := call(sitter.ControlRequest{Op: "stop", Task: "nope"}); err == nil || !strings.Contains(err.Error(), "no such task") {
		t.Errorf("stop of unknown task: %v", err)
	}
	resp, err = call(sitter.ControlRequest{Op: "tail", Task: "svc", N: 1})
	if err != nil || resp.Tail == nil || len(resp.Tail.Stdout) != 1 || resp.Tail.Stdout[0] != "ready" {
		t.Errorf("tail = %+v, %v", resp.Tail, err)
	}
	// Malformed input gets a clear error naming the field.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(`{"op":"explode"}`))
	var bad sitter.ControlResponse
	if err := json.NewDecoder(conn).Decode(&bad); err != nil {
		t.Fatal(err)
	}
	if bad.OK || !strings.Contains(bad.Error, `field op: unknown "explode"`) {
		t.Errorf("bad request answered %+v", bad)
	}
}
