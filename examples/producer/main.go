// Command producer publishes N work items to a run's work queue, to watch a
// queue-length pool grow and then shrink. It finds the broker of a run by
// itself (the exported url and ca_file of the run's broker service), or
// takes a URL, and a CA file for an amqps:// broker.
package main

import (
	"context"
	"crypto/x509"
	"errors"
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
	// Every item is confirmed before the next is sent. A nack (a quorum
	// queue electing a leader after losing a node) or a lost connection
	// (the node itself) sends the item again on a new channel or a new
	// connection, to the first node of a cluster's list that answers: at
	// least once, like the daemons' commands.
	var conn *amqp.Connection
	var ch *amqp.Channel
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	open := func() error {
		if conn == nil || conn.IsClosed() {
			if conn != nil {
				conn.Close()
			}
			c, err := amqpbus.DialAny(url, roots, amqp.Config{})
			if err != nil {
				return fmt.Errorf("connect %s: %w", redact.URL(url), err)
			}
			conn = c
		}
		if ch != nil {
			_ = ch.Close()
		}
		var err error
		if ch, err = conn.Channel(); err != nil {
			return err
		}
		// A quorum queue on a cluster, as the provisioner declares it.
		if _, err := ch.QueueDeclare(queue, true, false, false, false, amqpbus.QueueArgs(url)); err != nil {
			return fmt.Errorf("declare %s: %w", queue, err)
		}
		return ch.Confirm(false)
	}
	const attempts = 20
	for i := 1; i <= count; i++ {
		body := fmt.Sprintf("item %d of %d at %s", i, count, time.Now().UTC().Format(time.RFC3339Nano))
		if work > 0 {
			body += " work=" + work.String()
		}
		var last error
		for attempt := 1; ; attempt++ {
			if attempt > 1 {
				if attempt > attempts {
					return fmt.Errorf("item %d not confirmed after %d attempts: %w", i, attempts, last)
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("item %d: %w (last: %v)", i, ctx.Err(), last)
				case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
				}
			}
			if ch == nil || ch.IsClosed() || last != nil {
				if err := open(); err != nil {
					last = err
					continue
				}
			}
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent, ContentType: "text/plain", Body: []byte(body),
			})
			if err != nil {
				last = fmt.Errorf("publish: %w", err)
				continue
			}
			ok, err := dc.WaitContext(ctx)
			switch {
			case err != nil:
				last = fmt.Errorf("confirm: %w", err)
			case !ok:
				last = errors.New("nacked by the broker")
			default:
				last = nil
			}
			if last == nil {
				break
			}
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
