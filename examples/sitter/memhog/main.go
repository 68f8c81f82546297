// Command memhog allocates memory step by step and then holds it, so the
// sitter's memory limit has something real to catch. It touches every page:
// untouched allocations would not count toward RSS.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	mb := flag.Int("mb", 200, "total MB to allocate")
	step := flag.Int("step", 8, "MB per step")
	every := flag.Duration("every", 20*time.Millisecond, "pause between steps")
	flag.Parse()
	var keep [][]byte
	for got := 0; got < *mb; got += *step {
		b := make([]byte, *step<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
		time.Sleep(*every)
	}
	fmt.Fprintf(os.Stdout, "holding %d MB\n", len(keep)**step)
	// Sleep rather than select{}: with no other goroutine the runtime
	// would call select{} a deadlock and exit.
	for {
		time.Sleep(time.Hour)
		runtime.KeepAlive(keep)
	}
}
