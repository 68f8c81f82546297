//go:build !linux

package psutil

import (
	"syscall"
	"unsafe"
)

// openRaw opens the NUL-terminated path at p read-only. Only Linux has
// /proc as this package reads it; elsewhere this exists so the commands
// build (on macOS, for development), and every read fails as a missing
// file would.
func openRaw(p *byte) (uintptr, syscall.Errno) {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	fd, err := syscall.Open(string(unsafe.Slice(p, n)), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return 0, errno
		}
		return 0, syscall.EIO
	}
	return uintptr(fd), 0
}

// cpuClock has no per-process CPU clock to read outside Linux.
func cpuClock(pid int) (uint64, error) {
	return 0, syscall.ENOSYS
}
