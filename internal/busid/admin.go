package busid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"nightshift/internal/brokerurl"
	"nightshift/internal/redact"
)

// Admin creates and deletes broker users through RabbitMQ's management
// HTTP API. The user in URL needs the administrator tag.
type Admin struct {
	// URL is the management API's base, http://user:pass@host:port, or a
	// cluster's nodes' bases joined by commas (package brokerurl): a call
	// goes to the first node that answers.
	URL string
	// VHost is where permissions are granted; default "/".
	VHost  string
	Client *http.Client
}

// ErrNoManagement means the broker gave no management API URL, so users
// cannot be created (an external broker adopted without one).
var ErrNoManagement = errors.New("no management API URL: per-component broker users cannot be created")

// ErrUnreachable means the management API did not answer at all (the
// node is down), as opposed to answering with an error.
var ErrUnreachable = errors.New("management API unreachable")

func (a Admin) do(ctx context.Context, method, path string, body any) ([]byte, int, error) {
	if a.URL == "" {
		return nil, 0, ErrNoManagement
	}
	// A cluster's nodes share users and permissions, so any node that
	// answers will do; one that does not (a lost node) is passed over.
	var errs []error
	for _, base := range brokerurl.Split(a.URL) {
		out, code, err := a.doAt(ctx, base, method, path, body)
		if err == nil || !errors.Is(err, ErrUnreachable) || ctx.Err() != nil {
			return out, code, err
		}
		errs = append(errs, err)
	}
	return nil, 0, errors.Join(errs...)
}

func (a Admin) doAt(ctx context.Context, base, method, path string, body any) ([]byte, int, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, 0, fmt.Errorf("management url: %w", err)
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	u.User = nil
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(u.String(), "/")+"/api/"+path, r)
	if err != nil {
		return nil, 0, err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	cl := a.Client
	if cl == nil {
		cl = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("management api %s %s: %w: %s", method, path, ErrUnreachable, redact.String(err.Error()))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		return out, resp.StatusCode, fmt.Errorf("management api %s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(out)))
	}
	return out, resp.StatusCode, nil
}

func (a Admin) vhost() string {
	if a.VHost == "" {
		return "/"
	}
	return a.VHost
}

// EnsureUser creates user (or resets it: PUT is idempotent) with pass and
// grants p. Repeating it with the same arguments changes nothing.
func (a Admin) EnsureUser(ctx context.Context, user, pass string, p Permissions) error {
	what := "broker user " + user
	name, vh := url.PathEscape(user), url.PathEscape(a.vhost())
	if _, _, err := a.do(ctx, http.MethodPut, "users/"+name, map[string]string{"password": pass, "tags": p.Tags}); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	perm := map[string]string{"configure": p.Configure, "write": p.Write, "read": p.Read}
	if _, _, err := a.do(ctx, http.MethodPut, "permissions/"+vh+"/"+name, perm); err != nil {
		return fmt.Errorf("%s: permissions: %w", what, err)
	}
	for _, t := range p.Topics {
		tp := map[string]string{"exchange": t.Exchange, "write": t.Write, "read": t.Read}
		if _, _, err := a.do(ctx, http.MethodPut, "topic-permissions/"+vh+"/"+name, tp); err != nil {
			return fmt.Errorf("%s: topic permissions on %s: %w", what, t.Exchange, err)
		}
	}
	return nil
}

// DeleteUser deletes user; one that does not exist is not an error. The
// broker closes the user's open connections.
func (a Admin) DeleteUser(ctx context.Context, user string) error {
	if _, _, err := a.do(ctx, http.MethodDelete, "users/"+url.PathEscape(user), nil); err != nil {
		return fmt.Errorf("delete broker user %s: %w", user, err)
	}
	return nil
}

// Users lists the broker users whose names start with prefix.
func (a Admin) Users(ctx context.Context, prefix string) ([]string, error) {
	body, code, err := a.do(ctx, http.MethodGet, "users", nil)
	if err != nil {
		return nil, fmt.Errorf("list broker users: %w", err)
	}
	if code == http.StatusNotFound {
		return nil, nil
	}
	var us []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &us); err != nil {
		return nil, fmt.Errorf("list broker users: %w", err)
	}
	var out []string
	for _, u := range us {
		if strings.HasPrefix(u.Name, prefix) {
			out = append(out, u.Name)
		}
	}
	return out, nil
}

// DeleteUsers deletes every user whose name starts with prefix and returns
// their names (a teardown's sweep: RunPrefix, or WorkerPrefix).
func (a Admin) DeleteUsers(ctx context.Context, prefix string) ([]string, error) {
	users, err := a.Users(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var errs []error
	var done []string
	for _, u := range users {
		if err := a.DeleteUser(ctx, u); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, u)
	}
	return done, errors.Join(errs...)
}
