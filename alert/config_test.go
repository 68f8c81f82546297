package alert

import (
	"strings"
	"testing"
	"time"
)

func TestReconfigure(t *testing.T) {
	base := Config{Sinks: []Sink{
		{Name: "hook", Type: SinkWebhook, URL: "http://127.0.0.1:1/x"},
		{Name: "page", Type: SinkCommand, Command: []string{"/bin/cat"}},
	}}
	cases := []struct {
		values map[string]any
		check  func(Config) bool
		err    string
	}{
		{map[string]any{"pool_below_policy_for": "2m"}, func(c Config) bool { return c.PoolBelowPolicyFor == 2*time.Minute }, ""},
		{map[string]any{"flapping_replacements": int64(8), "rate_limit": int64(3)}, func(c Config) bool { return c.FlappingReplacements == 8 && c.RateLimit == 3 }, ""},
		{map[string]any{"sink.hook.format": "slack", "sink.hook.retries": int64(1)}, func(c Config) bool { return c.Sinks[0].Format == "slack" && c.Sinks[0].Retries == 1 }, ""},
		{map[string]any{"sink.hook.disabled": true}, func(c Config) bool { return c.Sinks[0].Disabled }, ""},
		{map[string]any{"sink.new.url": "https://example.test/h", "sink.new.type": "webhook"}, func(c Config) bool {
			return len(c.Sinks) == 3 && c.Sinks[2].URL == "https://example.test/h"
		}, ""},
		{map[string]any{"pool_below_policy_for": "soon"}, nil, "pool_below_policy_for: want a positive duration"},
		{map[string]any{"pool_below_policy_for": int64(5)}, nil, "want a duration"},
		{map[string]any{"rate_limit": int64(0)}, nil, "want a number from 1"},
		{map[string]any{"sink.hook.format": "xml"}, nil, `format "xml"`},
		{map[string]any{"sink.hook.url": "ftp://x"}, nil, "want an http:// or https:// URL"},
		{map[string]any{"sink.nope.url": "http://x"}, nil, `no sink "nope"`},
		{map[string]any{"sink.x.type": "command"}, nil, "only a webhook sink"},
		{map[string]any{"sink.page.type": "webhook"}, nil, "cannot change"},
		{map[string]any{"sink.hook.colour": "red"}, nil, "unknown sink key"},
		{map[string]any{"volume": int64(11)}, nil, "unknown key"},
		// One bad value applies nothing, the good ones included.
		{map[string]any{"rate_limit": int64(3), "sink.hook.format": "xml"}, nil, "format"},
	}
	for _, tc := range cases {
		got, err := base.Reconfigure(tc.values)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: err %v, want %q", tc.values, err, tc.err)
		case tc.err != "" && (got.RateLimit != 0 || got.Sinks[0].Format != ""):
			t.Errorf("%v: refused, but changed: %+v", tc.values, got)
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.values, err)
		case tc.err == "" && !tc.check(got):
			t.Errorf("%v: got %+v", tc.values, got)
		}
	}
	if base.Sinks[0].Format != "" || len(base.Sinks) != 2 {
		t.Errorf("Reconfigure changed its receiver: %+v", base)
	}
}

func TestCheckSink(t *testing.T) {
	cases := []struct {
		s   Sink
		key string
	}{
		{Sink{Name: "a", Type: "webhook", URL: "https://h/x", Format: "alertmanager"}, ""},
		{Sink{Name: "a", Type: "command", Command: []string{"/bin/true"}}, ""},
		{Sink{Name: "a b", Type: "webhook", URL: "https://h/x"}, "name"},
		{Sink{Name: "a", Type: "email"}, "type"},
		{Sink{Name: "a", Type: "webhook"}, "url"},
		{Sink{Name: "a", Type: "webhook", URL: "https://h/x", Format: "teams"}, "format"},
		{Sink{Name: "a", Type: "command"}, "command"},
		{Sink{Name: "a", Type: "command", Command: []string{"/bin/true"}, URL: "http://h"}, "url"},
		{Sink{Name: "a", Type: "webhook", URL: "https://h/x", Retries: -2}, "retries"},
	}
	for _, tc := range cases {
		if key, _ := CheckSink(tc.s); key != tc.key {
			t.Errorf("%+v: key %q, want %q", tc.s, key, tc.key)
		}
	}
}
