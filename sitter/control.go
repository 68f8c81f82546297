package sitter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// ControlRequest is one command on the control socket: one JSON object per
// connection, answered by one ControlResponse.
type ControlRequest struct {
	Op   string `json:"op"` // status, start, stop, restart, drain, remove, tail
	Task string `json:"task,omitempty"`
	N    int    `json:"n,omitempty"` // tail: lines
}

// ControlResponse answers a ControlRequest.
type ControlResponse struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error,omitempty"`
	Status *Status  `json:"status,omitempty"`
	Tail   *LogTail `json:"tail,omitempty"`
}

// DecodeControlRequest parses and checks a request, naming the field at
// fault.
func DecodeControlRequest(b []byte) (ControlRequest, error) {
	var req ControlRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return req, fmt.Errorf("control request: %w", err)
	}
	switch req.Op {
	case "status":
	case "start", "stop", "restart", "drain", "remove", "tail":
		if req.Task == "" {
			return req, fmt.Errorf("control request %s: field task is required", req.Op)
		}
		if req.N < 0 {
			return req, fmt.Errorf("control request %s: field n must be >= 0", req.Op)
		}
	default:
		return req, fmt.Errorf("control request: field op: unknown %q", req.Op)
	}
	return req, nil
}

// Handle executes one request against the sitter.
func (s *Sitter) Handle(ctx context.Context, req ControlRequest) ControlResponse {
	var err error
	resp := ControlResponse{}
	switch req.Op {
	case "status":
		st := s.Status()
		resp.Status = &st
	case "start":
		err = s.StartTask(ctx, req.Task)
	case "stop":
		err = s.StopTask(ctx, req.Task)
	case "restart":
		err = s.RestartTask(ctx, req.Task)
	case "drain":
		err = s.Drain(ctx, req.Task)
	case "remove":
		err = s.RemoveTask(ctx, req.Task)
	case "tail":
		n := req.N
		if n == 0 {
			n = 20
		}
		var lt LogTail
		lt, err = s.TailLog(req.Task, n)
		resp.Tail = &lt
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		return ControlResponse{Error: err.Error()}
	}
	resp.OK = true
	return resp
}

// ServeControl answers requests on a unix socket at path (mode 0600: only
// the sitter's user may command it) until ctx ends.
func (s *Sitter) ServeControl(ctx context.Context, path string) error {
	if !s.holdsLock() {
		return errors.New("control socket: the sitter was closed")
	}
	// A socket left by a sitter that was killed -9 would block Listen. It
	// is stale for sure: this sitter holds the state dir's lock, so no
	// other sitter is serving it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.Remove(path)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		go s.serveConn(ctx, conn)
	}
}

func (s *Sitter) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var raw json.RawMessage
	if err := json.NewDecoder(conn).Decode(&raw); err != nil {
		_ = json.NewEncoder(conn).Encode(ControlResponse{Error: "control request: " + err.Error()})
		return
	}
	req, err := DecodeControlRequest(raw)
	if err != nil {
		_ = json.NewEncoder(conn).Encode(ControlResponse{Error: err.Error()})
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	_ = json.NewEncoder(conn).Encode(s.Handle(ctx, req))
}

// Control sends one request to the sitter listening at path.
func Control(ctx context.Context, path string, req ControlRequest) (ControlResponse, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return ControlResponse{}, fmt.Errorf("control %s: is the sitter running? %w", req.Op, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return ControlResponse{}, fmt.Errorf("control %s: %w", req.Op, err)
	}
	var resp ControlResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return ControlResponse{}, fmt.Errorf("control %s: read response: %w", req.Op, err)
	}
	if !resp.OK {
		return resp, fmt.Errorf("control %s: %s", req.Op, resp.Error)
	}
	return resp, nil
}
