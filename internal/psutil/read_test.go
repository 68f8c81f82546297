package psutil

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/testsupport"
)

// TestReadFDRegularSizes: readFD takes a read that leaves room in the
// buffer as the end of the file; around the buffer's size and its slack
// that must still return every byte.
func TestReadFDRegularSizes(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, 300, os.Getpagesize() - shortReadSlack - 1, os.Getpagesize() - shortReadSlack, os.Getpagesize() - shortReadSlack + 1,
		4095, 4096, 4097, 2*os.Getpagesize() - shortReadSlack, 8193, 20000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			want := bytes.Repeat([]byte("0123456789abcde\n"), size/16+1)[:size]
			p := filepath.Join(dir, strconv.Itoa(size))
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			r := newProcReader()
			r.path = append(r.path[:0], p...)
			// Twice: the second read reuses a buffer the first may have grown.
			for range 2 {
				got, err := r.read()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("read %d bytes, want %d", len(got), size)
				}
			}
		})
	}
}

// TestReadFDManyChildren: a children file longer than the first buffer is
// a seq_file of many records, which the kernel hands out in buffer-sized
// reads; every child must come back, through the kept-open fd too.
func TestReadFDManyChildren(t *testing.T) {
	// At least 4 bytes each ("123 "; pids wrap around to low numbers on
	// a busy machine, so 5-digit pids cannot be counted on): 1,500 are
	// more than one 4 KiB buffer whatever their numbers.
	const kids = 1500
	cmd := spawn(t, "i=0; while [ $i -lt "+strconv.Itoa(kids)+" ]; do sleep 60 & i=$((i+1)); done; wait", nil)
	pid := cmd.Process.Pid
	r := newProcReader()
	r.pidPath(pid, pid, "children")
	var n int
	// The check below judges the last count; a timeout only ends the wait.
	_ = testsupport.Poll(30*time.Second, func() error {
		b, err := r.read()
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendPIDs(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if n = len(got); n < kids {
			return fmt.Errorf("%d children", n)
		}
		return nil
	})
	if n != kids {
		t.Fatalf("read %d children, want %d", n, kids)
	}
	if len(r.buf) <= os.Getpagesize() {
		t.Fatalf("buffer never grew (%d bytes): the file was not longer than one buffer", len(r.buf))
	}
	fd, err := r.open()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	for range 3 {
		b, err := r.readFD(fd)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := appendPIDs(nil, b); len(got) != kids {
			t.Fatalf("kept-open fd read %d children, want %d", len(got), kids)
		}
	}
}
