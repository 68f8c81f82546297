package ctlbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"nightshift/controller"
	"nightshift/internal/amqpbus"
	"nightshift/internal/brokerurl"
	"nightshift/internal/redact"
)

// MgmtAPI reads queue depths from the RabbitMQ management API; it
// implements controller.QueueStats.
type MgmtAPI struct {
	// HTTP makes the requests; nil means a client with a 5s timeout.
	HTTP *http.Client
}

var _ controller.QueueStats = MgmtAPI{}

// Meter reads a queue's ready count by passive declare on Bus
// (controller.QueueMeter), and names a missing queue as
// controller.ErrQueueMissing, which the controller's core cannot learn
// from the AMQP layer's own error.
type Meter struct{ Bus *amqpbus.Bus }

var _ controller.QueueMeter = Meter{}

// QueueDepth implements controller.QueueMeter.
func (m Meter) QueueDepth(ctx context.Context, queue string) (int, error) {
	n, err := m.Bus.QueueDepth(ctx, queue)
	if errors.Is(err, amqpbus.ErrQueueNotFound) {
		return 0, fmt.Errorf("%w: %w", controller.ErrQueueMissing, err)
	}
	return n, err
}

// QueueDepth implements controller.QueueStats.
func (m MgmtAPI) QueueDepth(ctx context.Context, base, vhost, queue string) (int, error) {
	hc := m.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	return MgmtQueueDepth(ctx, hc, base, vhost, queue)
}

// mgmtQueue is the part of GET /api/queues/<vhost>/<name> the controller
// reads. Pointers tell a missing figure (stats not yet collected) from 0.
type mgmtQueue struct {
	Ready   *int `json:"messages_ready"`
	Unacked *int `json:"messages_unacknowledged"`
}

// MgmtQueueDepth reads ready plus unacknowledged messages of a queue from
// the RabbitMQ management API at base (credentials in the URL's userinfo
// are sent as basic auth and never appear in errors). base may list a
// cluster's nodes (package brokerurl): any node reports a queue of the
// cluster, so one that does not answer is passed over for the next.
func MgmtQueueDepth(ctx context.Context, hc *http.Client, base, vhost, queue string) (int, error) {
	var errs []error
	for _, one := range brokerurl.Split(base) {
		n, err := mgmtQueueDepth(ctx, hc, one, vhost, queue)
		if err == nil || !errors.Is(err, errUnanswered) || ctx.Err() != nil {
			return n, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return 0, fmt.Errorf("management api depth of %s: no url", queue)
	}
	return 0, errors.Join(errs...)
}

// errUnanswered marks a request no node answered (refused, timed out).
var errUnanswered = errors.New("no answer")

func mgmtQueueDepth(ctx context.Context, hc *http.Client, base, vhost, queue string) (int, error) {
	what := fmt.Sprintf("management api depth of %s via %s", queue, redact.URL(base))
	u, err := url.Parse(base)
	if err != nil {
		return 0, fmt.Errorf("%s: bad url", what)
	}
	user := u.User
	u.User = nil
	if vhost == "" {
		vhost = "/"
	}
	// Built by hand: the API wants "/" inside a vhost escaped (the default
	// vhost is %2F), which JoinPath would treat as a separator.
	target := strings.TrimRight(u.String(), "/") + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(queue)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if user != nil {
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %s", what, errUnanswered, redact.String(err.Error()))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("%s: read: %w", what, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		// The API answers 404 for a queue (or vhost) that does not exist.
		return 0, fmt.Errorf("%s: HTTP 404: %w", what, controller.ErrQueueMissing)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", what, resp.StatusCode)
	}
	var q mgmtQueue
	if err := json.Unmarshal(body, &q); err != nil {
		return 0, fmt.Errorf("%s: decode: %w", what, err)
	}
	if q.Ready == nil || q.Unacked == nil {
		return 0, fmt.Errorf("%s: messages_ready/messages_unacknowledged missing (stats not collected yet)", what)
	}
	return *q.Ready + *q.Unacked, nil
}
