// Command sleeper is the "Sleeper Must Awaken" worker of the n-preserving
// demo: it sleeps, wakes, does a little work, and says so. It is idle while
// it sleeps and busy while it works, exits when drained, and stops at once
// on SIGTERM. Kill it (or its sitter) and the pool replaces it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"nightshift/examples/workerkit"
)

func main() {
	sleep := flag.Duration("sleep", 3*time.Second, "how long to sleep between wake-ups")
	work := flag.Duration("work", 500*time.Millisecond, "how long each wake-up works")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st := workerkit.FromEnv()
	id := os.Getenv("NIGHTSHIFT_INSTANCE_ID")
	for n := 1; ; n++ {
		st.Idle()
		if st.Draining() {
			log.Info("drained: exiting", "instance", id)
			return
		}
		select {
		case <-ctx.Done():
			log.Info("stopping", "instance", id)
			return
		case <-time.After(*sleep):
		}
		st.Busy()
		log.Info(fmt.Sprintf("awake (%d): working", n), "instance", id)
		select {
		case <-ctx.Done():
			return
		case <-time.After(*work):
		}
	}
}
