package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"nightshift/decision"
	"nightshift/internal/redact"
)

// readDepth measures a job's queue: the management API (ready+unacked) when
// configured, else a passive declare (ready only). Any error leaves the
// depth unavailable, which makes engines hold the pool size.
func (c *Controller) readDepth(ctx context.Context, j Job) (*int, decision.DepthSource) {
	if j.Queue.Name == "" {
		return nil, decision.SourceNone
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if j.Queue.ManagementURL != "" {
		n, err := MgmtQueueDepth(ctx, c.cfg.HTTP, j.Queue.ManagementURL, j.Queue.VHost, j.Queue.Name)
		if err != nil {
			c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourceMgmtAPI, "err", redact.String(err.Error()))
			return nil, decision.SourceNone
		}
		// The management API's figures are sampled (every few seconds), so
		// a backlog that just arrived shows there late; a passive declare
		// counts ready messages now. The larger of the two is the depth:
		// ready+unacked once the API catches up, the live ready count
		// before it does.
		if c.cfg.Meter != nil {
			if live, err := c.cfg.Meter.QueueDepth(ctx, j.Queue.Name); err == nil && live > n {
				n = live
			}
		}
		return &n, decision.SourceMgmtAPI
	}
	if c.cfg.Meter == nil {
		return nil, decision.SourceNone
	}
	n, err := c.cfg.Meter.QueueDepth(ctx, j.Queue.Name)
	if err != nil {
		c.cfg.Log.Warn("queue depth unavailable", "job", j.Name, "source", decision.SourcePassiveDeclare, "err", redact.String(err.Error()))
		return nil, decision.SourceNone
	}
	return &n, decision.SourcePassiveDeclare
}

// mgmtQueue is the part of GET /api/queues/<vhost>/<name> the controller
// reads. Pointers tell a missing figure (stats not yet collected) from 0.
type mgmtQueue struct {
	Ready   *int `json:"messages_ready"`
	Unacked *int `json:"messages_unacknowledged"`
}

// MgmtQueueDepth reads ready plus unacknowledged messages of a queue from
// the RabbitMQ management API at base (credentials in the URL's userinfo
// are sent as basic auth and never appear in errors).
func MgmtQueueDepth(ctx context.Context, hc *http.Client, base, vhost, queue string) (int, error) {
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
		return 0, fmt.Errorf("%s: %s", what, redact.String(err.Error()))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("%s: read: %w", what, err)
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
