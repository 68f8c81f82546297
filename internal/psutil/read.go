package psutil

import (
	"errors"
	"os"
	"strconv"
	"syscall"
)

// procReader reads small /proc files into one reused buffer. It calls
// openat/read/close directly with a reused NUL-terminated path because
// os.ReadFile costs an *os.File, a poller registration and two allocations
// per file, and the sampler reads a few hundred files per second.
// Not safe for concurrent use.
type procReader struct {
	path []byte
	buf  []byte
	page int
}

func newProcReader() *procReader {
	page := os.Getpagesize()
	return &procReader{path: make([]byte, 0, 64), buf: make([]byte, page), page: page}
}

// pidPath sets r.path to /proc/<pid>/<file> or, with tid > 0, to
// /proc/<pid>/task/<tid>/<file>.
func (r *procReader) pidPath(pid, tid int, file string) {
	p := append(r.path[:0], "/proc/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	if tid > 0 {
		p = append(p, "/task/"...)
		p = strconv.AppendInt(p, int64(tid), 10)
	}
	p = append(p, '/')
	p = append(p, file...)
	r.path = p
}

// open opens the file named by r.path.
func (r *procReader) open() (int, error) {
	r.path = append(r.path, 0)
	name := r.path[:len(r.path)-1]
	var fd uintptr
	var errno syscall.Errno
	for {
		fd, errno = openRaw(&r.path[0])
		if errno != syscall.EINTR {
			break
		}
	}
	r.path = name
	if errno != 0 {
		return -1, &pathError{path: string(name), err: errno}
	}
	return int(fd), nil
}

// shortReadSlack tells the end of a /proc file from a pause in it. A
// seq_file read stops short of what was asked at the end of the file, or
// when the kernel's own buffer (a page, unless one record needed more) has
// no room for the next record. The files read here are one short record
// (stat, cgroup counters) or many tiny ones (children: a pid and a space),
// so a read that stops more than this short of a page stopped at the end.
const shortReadSlack = 512

// readFD reads fd from offset 0 to the end. The result aliases r.buf and is
// valid until the next read. pread from 0 makes the kernel generate the
// file afresh, so an fd can be kept open and read again next sample.
//
// A read that returns less than asked and less than a page minus
// shortReadSlack is taken as the end: the usual loop until read returns 0
// costs a second syscall per file, and on the sitter's hot path (a stat and
// a children read per supervised process every second) that second call
// was a third of the sampling cost.
func (r *procReader) readFD(fd int) ([]byte, error) {
	n := 0
	for {
		if n == len(r.buf) {
			// /proc files report size 0, so grow until read returns 0.
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		asked := len(r.buf) - n
		m, err := syscall.Pread(fd, r.buf[n:], int64(n))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return r.buf[:n], nil
		}
		n += m
		if m < asked && m < r.page-shortReadSlack {
			return r.buf[:n], nil
		}
	}
}

// read opens, reads and closes the file named by r.path.
func (r *procReader) read() ([]byte, error) {
	fd, err := r.open()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	b, err := r.readFD(fd)
	if err != nil {
		return nil, &pathError{path: string(r.path), err: err}
	}
	return b, nil
}

// pathError is fs.PathError without the Op noise.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return "read " + e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// gone reports whether err means the process (or thread) no longer exists,
// which is normal between listing a pid and reading it.
func gone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
}
