package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestReadPIDFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		content string
		want    int
		wantErr string
	}{
		{"4242\n", 4242, ""},
		{"  77 ", 77, ""},
		{"1\n", 0, `holds "1\n"`},
		{"0", 0, `holds "0"`},
		{"-5", 0, `holds "-5"`},
		{"12 13", 0, `holds "12 13"`},
		{"", 0, `holds ""`},
	}
	for i, c := range cases {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadPIDFile(p)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), p) {
				t.Errorf("ReadPIDFile(%q) = %d, %v; want an error naming the file and %s", c.content, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ReadPIDFile(%q) = %d, %v; want %d", c.content, got, err, c.want)
		}
	}
	if _, err := ReadPIDFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadPIDFile(missing) = %v, want not-exist", err)
	}
}

func TestStopPIDFile(t *testing.T) {
	write := func(t *testing.T, content string) string {
		p := filepath.Join(t.TempDir(), "pid")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()

	t.Run("no file: nothing to stop", func(t *testing.T) {
		err := StopPIDFile(ctx, filepath.Join(t.TempDir(), "pid"), time.Second,
			func(int) bool { t.Error("same asked without a pid"); return false }, nil, nil)
		if err != nil {
			t.Errorf("StopPIDFile = %v", err)
		}
	})
	t.Run("bad file is an error and stays", func(t *testing.T) {
		p := write(t, "not a pid")
		if err := StopPIDFile(ctx, p, time.Second, func(int) bool { return true }, nil, nil); err == nil {
			t.Error("StopPIDFile accepted a bad pid file")
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("bad pid file removed: %v", err)
		}
	})
	t.Run("stale file is removed without a signal", func(t *testing.T) {
		cmd, same := start(t, "exec sleep 30")
		p := write(t, strconv.Itoa(cmd.Process.Pid))
		stopped := false
		if err := StopPIDFile(ctx, p, time.Second, func(int) bool { return false }, func(int) { stopped = true }, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("stale pid file kept: %v", err)
		}
		if stopped || !same() {
			t.Error("a process the caller disowned was stopped")
		}
	})
	t.Run("live process is stopped and its file removed", func(t *testing.T) {
		cmd, same := start(t, "exec sleep 30")
		p := write(t, strconv.Itoa(cmd.Process.Pid)+"\n")
		var stopped int
		err := StopPIDFile(ctx, p, 10*time.Second, func(int) bool { return same() }, func(pid int) { stopped = pid }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if stopped != cmd.Process.Pid || same() {
			t.Errorf("onStop heard pid %d (want %d); process still there: %v", stopped, cmd.Process.Pid, same())
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("pid file kept after the stop: %v", err)
		}
	})
}
