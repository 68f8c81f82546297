package redact

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	cases := []struct{ in, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"dial amqp://u:p%40ss@h/v failed", "dial amqp://u:xxxxx@h/v failed"},
		{"amqp://127.0.0.1:5672/", "amqp://127.0.0.1:5672/"},
		{"key AKIAABCDEFGHIJKLMNOP used", "key AKIAXXXXXXXXXXXXXXXX used"},
		{"plain text", "plain text"},
	}
	for _, c := range cases {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestValueAndMap(t *testing.T) {
	m := Map(map[string]string{
		"password":   "hunter2",
		"AWS_SECRET": "abc",
		"url":        "amqp://a:b@h/",
		"port":       "5672",
		"empty_pass": "",
	})
	want := map[string]string{"password": Marker, "AWS_SECRET": Marker, "url": "amqp://a:xxxxx@h/", "port": "5672", "empty_pass": ""}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("Map[%q] = %q, want %q", k, m[k], v)
		}
	}
	if URL("amqp://guest:guest@h:5672/vh") != "amqp://guest:xxxxx@h:5672/vh" {
		t.Errorf("URL did not redact: %s", URL("amqp://guest:guest@h:5672/vh"))
	}
}

// TestURLList: a cluster's URL list has every node's password hidden,
// including ones whose password holds a comma or is percent-encoded.
func TestURLList(t *testing.T) {
	cases := []struct{ in, want string }{
		{"amqp://u:s3cret1@h:1/,amqp://u:s3cret2@h:2/", "amqp://u:xxxxx@h:1/,amqp://u:xxxxx@h:2/"},
		{"amqp://u:s3cret1@h:1/, amqps://u:s3%2Fcret2@h:2/v", "amqp://u:xxxxx@h:1/,amqps://u:xxxxx@h:2/v"},
		{"amqp://u:pa,ss@h:1/", "amqp://u:xxxxx@h:1/"},
		{"amqp://h:1/,amqp://h:2/", "amqp://h:1/,amqp://h:2/"},
	}
	for _, c := range cases {
		got := URL(c.in)
		if got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, p := range []string{"s3cret", "pa,ss", "s3%2Fcret"} {
			if strings.Contains(got, p) {
				t.Errorf("URL(%q) leaks %q: %s", c.in, p, got)
			}
		}
	}
}
