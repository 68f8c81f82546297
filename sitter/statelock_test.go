package sitter_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/psutil"
	"nightshift/sitter"
)

func TestStateDirIsHeldFromNewToClose(t *testing.T) {
	dir := t.TempDir()
	first, err := sitter.New(sitter.Config{StateDir: dir, Sampler: psutil.New()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sitter.New(sitter.Config{StateDir: dir, Sampler: psutil.New()})
	if !errors.Is(err, sitter.ErrStateDirBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second New on the dir: %v, want ErrStateDirBusy naming pid %d", err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.ServeControl(context.Background(), filepath.Join(dir, "sitter.sock")); err == nil {
		t.Error("ServeControl after Close: want an error, not a socket on a dir it no longer holds")
	}
	if err := first.Serve(context.Background()); err == nil {
		t.Error("Serve after Close accepted")
	}
	again, err := sitter.New(sitter.Config{StateDir: dir, Sampler: psutil.New()})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	_ = again.Close()
}
