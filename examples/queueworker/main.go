// Command queueworker consumes work items from a RabbitMQ queue, one at a
// time, and acks each only after it is done, so a worker killed mid-item
// loses nothing: the broker redelivers it. It reports busy while it holds an
// item and idle otherwise, and on drain stops taking items, finishes the one
// it holds, and exits 0.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/examples/workerkit"
	"nightshift/internal/amqpbus"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
)

func main() {
	urlFlag := flag.String("amqp-url", defaultURL(), "broker URL (default $NIGHTSHIFT_AMQP_URL, or the file named by $NIGHTSHIFT_AMQP_URL_FILE)")
	caFile := flag.String("amqp-ca-file", os.Getenv("NIGHTSHIFT_AMQP_CA_FILE"), "PEM CA an amqps:// broker must chain to (default $NIGHTSHIFT_AMQP_CA_FILE)")
	queue := flag.String("queue", os.Getenv("NIGHTSHIFT_WORK_QUEUE"), "queue to consume (default $NIGHTSHIFT_WORK_QUEUE)")
	work := flag.Duration("work", 200*time.Millisecond, "time spent on each item")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if *urlFlag == "" || *queue == "" {
		fmt.Fprintln(os.Stderr, "queueworker: --amqp-url and --queue (or NIGHTSHIFT_AMQP_URL and NIGHTSHIFT_WORK_QUEUE) are required")
		os.Exit(2)
	}
	var roots *x509.CertPool
	if *caFile != "" {
		var err error
		if roots, err = pki.LoadPool(*caFile); err != nil {
			fmt.Fprintln(os.Stderr, "queueworker: --amqp-ca-file:", err)
			os.Exit(2)
		}
	}
	tc, err := amqpbus.TLSConfig(*urlFlag, roots)
	if err != nil {
		fmt.Fprintln(os.Stderr, "queueworker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st := workerkit.FromEnv()
	for ctx.Err() == nil {
		err := consume(ctx, *urlFlag, tc, *queue, *work, st, log)
		if errors.Is(err, errDrained) {
			log.Info("drained: exiting")
			return
		}
		if ctx.Err() != nil {
			return
		}
		// The broker went away: keep the worker alive and try again, as a
		// real worker should rather than burn its restart budget.
		log.Warn("connection lost; retrying", "err", redact.String(fmt.Sprint(err)))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

var errDrained = errors.New("drained")

// defaultURL takes the broker URL from the environment a sitter gives its
// tasks; a file keeps the password out of the environment of every process.
func defaultURL() string {
	if u := os.Getenv("NIGHTSHIFT_AMQP_URL"); u != "" {
		return u
	}
	if f := os.Getenv("NIGHTSHIFT_AMQP_URL_FILE"); f != "" {
		if b, err := os.ReadFile(f); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

func consume(ctx context.Context, url string, tc *tls.Config, queue string, work time.Duration, st *workerkit.Status, log *slog.Logger) error {
	conn, err := amqp.DialConfig(url, amqp.Config{TLSClientConfig: tc, Properties: amqp.Table{"connection_name": "queueworker " + os.Getenv("NIGHTSHIFT_INSTANCE_ID")}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	// A worker's own broker user may read its job's queue but not declare
	// it (the provisioner did); declare it only when it does not exist.
	if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
		if ch, err = conn.Channel(); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
	}
	// One at a time: an item waiting in this worker's buffer is an item
	// another worker could be doing.
	if err := ch.Qos(1, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	st.Idle()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			return fmt.Errorf("connection closed: %v", e)
		case <-tick.C:
			if st.Draining() {
				return errDrained
			}
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			st.Busy()
			select {
			case <-time.After(work):
			case <-ctx.Done():
				d.Nack(false, true) // give it back: another worker will do it
				return nil
			}
			if err := d.Ack(false); err != nil {
				return err
			}
			log.Info("done", "item", strings.TrimSpace(string(d.Body)))
			st.Idle()
			if st.Draining() {
				return errDrained
			}
		}
	}
}
