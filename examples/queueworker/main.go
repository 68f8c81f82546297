// Command queueworker consumes work items from a RabbitMQ queue, one at a
// time, and acks each only after it is done, so a worker killed mid-item
// loses nothing: the broker redelivers it. It reports busy while it holds an
// item and idle otherwise, and on drain stops taking items, finishes the one
// it holds, and exits 0.
//
// It is idempotent the way docs/jobs.md asks a worker to be: delivery is
// at least once, so an item may come again after a worker died holding it
// (the delivery is then marked redelivered). With --record FILE it appends
// one JSON line per item started, finished or given back, which is how the
// end-to-end tests count that no item is lost or interrupted.
//
// When its sitter gives it a port (NIGHTSHIFT_PORT, for a health probe
// whose URL names ${port}), it serves GET /healthz there on loopback: 200
// while it consumes its queue, 503 while it has no broker connection.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
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
	work := flag.Duration("work", 200*time.Millisecond, "time spent on each item, unless its body says work=DURATION")
	maxWork := flag.Duration("max-work", time.Minute, "longest work=DURATION an item's body may ask for")
	recordFile := flag.String("record", os.Getenv("NIGHTSHIFT_WORK_RECORD"), "append a JSON line per item started, finished or given back to this file (default $NIGHTSHIFT_WORK_RECORD; empty: none)")
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
	// A cluster's nodes come as a comma-separated list: each connection
	// goes to the first that answers.
	if err := amqpbus.CheckURL(*urlFlag); err != nil {
		fmt.Fprintln(os.Stderr, "queueworker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st := workerkit.FromEnv()
	rec, err := openRecorder(*recordFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "queueworker: --record:", err)
		os.Exit(2)
	}
	defer rec.Close()
	var consuming atomic.Bool
	if port := os.Getenv("NIGHTSHIFT_PORT"); port != "" {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			fmt.Fprintln(os.Stderr, "queueworker: health endpoint:", err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: healthHandler(&consuming, *queue), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
	}
	for ctx.Err() == nil {
		err := consume(ctx, *urlFlag, roots, *queue, workTime{*work, *maxWork}, st, rec, &consuming, log)
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

// Record is one line of the --record file.
type Record struct {
	// Event is start (the item was received), finish (it was done and
	// acked), requeue (the worker was stopped holding it and gave it back)
	// or ack_failed (done, but the ack was lost with the connection: the
	// broker will deliver it again).
	Event       string    `json:"event"`
	Item        string    `json:"item"`
	Instance    string    `json:"instance"`
	PID         int       `json:"pid"`
	Redelivered bool      `json:"redelivered"`
	Time        time.Time `json:"time"`
}

// recorder appends Records to a file; a nil recorder records nothing.
type recorder struct {
	mu       sync.Mutex
	f        *os.File
	instance string
}

func openRecorder(path string) (*recorder, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f, instance: os.Getenv("NIGHTSHIFT_INSTANCE_ID")}, nil
}

// record writes one line with a single write on an O_APPEND file, so the
// lines of several workers sharing the file do not interleave.
func (r *recorder) record(event string, d amqp.Delivery, log *slog.Logger) {
	if r == nil {
		return
	}
	b, err := json.Marshal(Record{Event: event, Item: strings.TrimSpace(string(d.Body)), Instance: r.instance,
		PID: os.Getpid(), Redelivered: d.Redelivered, Time: time.Now().UTC()})
	if err == nil {
		r.mu.Lock()
		_, err = r.f.Write(append(b, '\n'))
		r.mu.Unlock()
	}
	if err != nil {
		log.Warn("record", "event", event, "err", err)
	}
}

func (r *recorder) Close() {
	if r != nil {
		r.f.Close()
	}
}

// workTime is how long an item takes: Default, or what the item's body asks
// for with a work=DURATION word (producer --work), at most Max.
type workTime struct{ Default, Max time.Duration }

func (w workTime) of(body []byte) time.Duration {
	for _, f := range strings.Fields(string(body)) {
		if v, ok := strings.CutPrefix(f, "work="); ok {
			if d, err := time.ParseDuration(v); err == nil && d >= 0 {
				return min(d, w.Max)
			}
		}
	}
	return w.Default
}

// healthHandler answers a health probe: the worker is healthy while it
// consumes its queue.
func healthHandler(consuming *atomic.Bool, queue string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !consuming.Load() {
			http.Error(w, "no broker connection", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "consuming %s\n", queue)
	})
	return mux
}

func consume(ctx context.Context, url string, roots *x509.CertPool, queue string, work workTime, st *workerkit.Status, rec *recorder, consuming *atomic.Bool, log *slog.Logger) error {
	conn, err := amqpbus.DialAny(url, roots, amqp.Config{Properties: amqp.Table{"connection_name": "queueworker " + os.Getenv("NIGHTSHIFT_INSTANCE_ID")}})
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
		// A quorum queue on a cluster, as the provisioner declares it.
		if _, err := ch.QueueDeclare(queue, true, false, false, false, amqpbus.QueueArgs(url)); err != nil {
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
	consuming.Store(true)
	defer consuming.Store(false)
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
			// A drain that came while idle wins over the item: give it
			// back unstarted, so that once the sitter has seen the drain
			// file an idle report stays true and the worker can go.
			if st.Draining() {
				d.Nack(false, true)
				return errDrained
			}
			st.Busy()
			rec.record("start", d, log)
			// Acking only after the work is done makes delivery at least
			// once: an item held by a worker that dies comes back. The work
			// must therefore be idempotent (this one only sleeps).
			select {
			case <-time.After(work.of(d.Body)):
			case <-ctx.Done():
				d.Nack(false, true) // give it back: another worker will do it
				rec.record("requeue", d, log)
				return nil
			}
			if err := d.Ack(false); err != nil {
				rec.record("ack_failed", d, log)
				return err
			}
			rec.record("finish", d, log)
			log.Info("done", "item", strings.TrimSpace(string(d.Body)))
			st.Idle()
			if st.Draining() {
				return errDrained
			}
		}
	}
}
