package psutil

import (
	"syscall"
	"unsafe"
)

// atFDCWD is AT_FDCWD (-100) as the uintptr openat expects.
const atFDCWD = ^uintptr(99)

// openRaw opens the NUL-terminated path at p read-only, without the
// allocation os.Open and syscall.Open make for the name: the sitter reads
// /proc files at every sample.
func openRaw(p *byte) (uintptr, syscall.Errno) {
	fd, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(p)),
		syscall.O_RDONLY|syscall.O_CLOEXEC, 0, 0, 0)
	return fd, errno
}

// cpuClock returns the CPU time, in nanoseconds, that every thread of
// process pid has run: clock_gettime on the process's CPUCLOCK_SCHED
// clock, the id clock_getcpuclockid(3) makes. (A thread's own clock would
// be cheaper, but Linux gives those only to the thread's own process.)
func cpuClock(pid int) (uint64, error) {
	id := (^pid << 3) | 2 // CPUCLOCK_SCHED, process-wide
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(id), uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, errno
	}
	return uint64(ts.Nano()), nil
}
