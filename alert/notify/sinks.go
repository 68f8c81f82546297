package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"nightshift/alert"
)

// Body renders ev as format's request body: generic is the event itself;
// slack is an incoming-webhook message; alertmanager is the Alertmanager
// v2 API's list of one alert (POST it to /api/v2/alerts).
func Body(format string, ev alert.Event) ([]byte, error) {
	switch format {
	case alert.FormatSlack:
		icon := ":rotating_light:"
		if ev.Status == alert.Resolved {
			icon = ":white_check_mark:"
		}
		where := ev.Run
		if ev.Job != "" {
			where += "/" + ev.Job
		}
		return json.Marshal(map[string]string{
			"text": fmt.Sprintf("%s [%s] %s %s %s: %s", icon, strings.ToUpper(string(ev.Status)), ev.Severity, ev.Kind, where, ev.Summary),
		})
	case alert.FormatAlertmanager:
		labels := map[string]string{"alertname": string(ev.Kind), "run": ev.Run, "severity": string(ev.Severity), "dedupe_key": ev.Key}
		if ev.Job != "" {
			labels["job"] = ev.Job
		}
		annotations := map[string]string{"summary": ev.Summary}
		for k, v := range ev.Details {
			annotations[k] = fmt.Sprint(v)
		}
		a := map[string]any{"labels": labels, "annotations": annotations, "startsAt": ev.FirstSeen.UTC().Format(time.RFC3339Nano)}
		if ev.Status == alert.Resolved {
			a["endsAt"] = ev.LastSeen.UTC().Format(time.RFC3339Nano)
		}
		return json.Marshal([]any{a})
	default:
		return json.Marshal(ev)
	}
}

func postWebhook(ctx context.Context, client *http.Client, s alert.Sink, ev alert.Event) error {
	body, err := Body(s.Format, ev)
	if err != nil {
		return permanent{fmt.Errorf("encode %s body: %w", s.Format, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return permanent{fmt.Errorf("webhook %s: %w", where(s.URL), err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nightshift-alerts/1")
	resp, err := client.Do(req)
	if err != nil {
		// The URL may hold a token (Slack's do): errors name its host only.
		return fmt.Errorf("webhook %s: %w", where(s.URL), unwrapURL(err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook %s: %s: %s", where(s.URL), resp.Status, strings.TrimSpace(string(msg)))
	default:
		return permanent{fmt.Errorf("webhook %s: %s: %s", where(s.URL), resp.Status, strings.TrimSpace(string(msg)))}
	}
}

// where names a webhook in errors by scheme and host: its path and query
// may hold a token (Slack's do), its userinfo a password.
func where(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// unwrapURL drops *url.Error's copy of the URL, which may hold a token.
func unwrapURL(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && strings.HasPrefix(err.Error(), "Post ") {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func runCommand(ctx context.Context, argv []string, ev alert.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return permanent{fmt.Errorf("encode event: %w", err)}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		tail := strings.TrimSpace(out.String())
		if len(tail) > 512 {
			tail = tail[len(tail)-512:]
		}
		return fmt.Errorf("command %s: %w: %s", argv[0], err, tail)
	}
	return nil
}
