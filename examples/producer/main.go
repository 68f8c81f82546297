// Command producer publishes N work items to a run's work queue, to watch a
// queue-length pool grow and then shrink. It finds the broker of a run by
// itself (the exported url and ca_file of the run's broker service), or
// takes a URL, and a CA file for an amqps:// broker.
package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/amqpbus"
	"nightshift/internal/app"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
)

func main() {
	count := flag.Int("count", 100, "how many work items to publish")
	run := flag.String("run", "local", "run whose broker to use")
	home := flag.String("home", "", "home directory (default $NIGHTSHIFT_HOME or ~/.nightshift)")
	urlFlag := flag.String("amqp-url", "", "broker URL (default: the run's broker)")
	caFlag := flag.String("amqp-ca-file", "", "PEM CA of an amqps:// --amqp-url (default: the run's broker's ca_file)")
	queue := flag.String("queue", "", "queue name (default: nightshift.RUN.work)")
	work := flag.Duration("work", 0, "ask the worker to spend this long on each item (work=DURATION in the body; 0: the worker's own --work)")
	flag.Parse()
	if err := produce(*count, *run, *home, *urlFlag, *caFlag, *queue, *work); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", redact.String(err.Error()))
		os.Exit(1)
	}
}

func produce(count int, run, home, url, caFile, queue string, work time.Duration) error {
	if count < 1 {
		return fmt.Errorf("--count must be at least 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if queue == "" {
		queue = "nightshift." + run + ".work"
	}
	if url == "" {
		var err error
		if url, caFile, err = brokerURL(ctx, run, home); err != nil {
			return err
		}
	}
	var roots *x509.CertPool
	if caFile != "" {
		var err error
		if roots, err = pki.LoadPool(caFile); err != nil {
			return err
		}
	}
	// A cluster's URL list: the first node that answers.
	conn, err := amqpbus.DialAny(url, roots, amqp.Config{})
	if err != nil {
		return fmt.Errorf("connect %s: %w", redact.URL(url), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	// A quorum queue on a cluster, as the provisioner declares it.
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqpbus.QueueArgs(url)); err != nil {
		return fmt.Errorf("declare %s: %w", queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	for i := 1; i <= count; i++ {
		body := fmt.Sprintf("item %d of %d at %s", i, count, time.Now().UTC().Format(time.RFC3339Nano))
		if work > 0 {
			body += " work=" + work.String()
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "text/plain", Body: []byte(body),
		})
		if err != nil {
			return fmt.Errorf("publish item %d: %w", i, err)
		}
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			return fmt.Errorf("broker did not confirm item %d (%v)", i, err)
		}
	}
	fmt.Printf("published %d items to %s on %s\n", count, queue, redact.URL(url))
	return nil
}

// brokerURL reads the url and ca_file exported by the run's broker service.
func brokerURL(ctx context.Context, run, homeFlag string) (url, caFile string, err error) {
	home, err := app.ResolveHome(homeFlag)
	if err != nil {
		return "", "", err
	}
	a, err := app.Open(ctx, home, nil)
	if err != nil {
		return "", "", err
	}
	defer a.Close()
	recs, err := a.Store.Services(ctx, run)
	if err != nil {
		return "", "", err
	}
	for _, s := range recs {
		if u := s.Attributes["url"]; strings.HasPrefix(u, "amqp") && s.Attributes["mode"] != "" {
			if us := s.Attributes["urls"]; us != "" {
				u = us // every node of a cluster
			}
			return u, s.Attributes["ca_file"], nil
		}
	}
	return "", "", fmt.Errorf("run %s in %s has no broker service with an exported url; pass --amqp-url", run, home)
}
