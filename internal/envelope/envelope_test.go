package envelope

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type launchBody struct {
	DeployableType string            `json:"deployable_type"`
	Count          int               `json:"count"`
	Vars           map[string]string `json:"vars,omitempty"`
}

func (b *launchBody) Validate() error {
	return FirstError(
		Require("deployable_type", b.DeployableType != ""),
		Check("count", b.Count >= 1, "must be >= 1"),
	)
}

type terminateAllBody struct {
	Reason string `json:"reason"`
}

func (b *terminateAllBody) Validate() error { return Require("reason", b.Reason != "") }

var t0 = time.Date(2026, 11, 21, 22, 0, 0, 123456789, time.UTC)

func testRegistry() *Registry {
	r := &Registry{}
	r.Register("launch", 1, func() Validator { return &launchBody{} }, false)
	r.Register("terminate_all", 1, func() Validator { return &terminateAllBody{} }, true)
	r.Register("reply", 1, func() Validator { return &replyBody{} }, false)
	return r
}

type replyBody struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (b *replyBody) Validate() error { return nil }

// msg builds an envelope JSON with body substituted verbatim.
func msg(typ string, version int, body string) []byte {
	return []byte(`{"type":"` + typ + `","version":` + itoa(version) +
		`,"id":"id-1","run":"r1","time":"2026-11-21T22:00:00Z","sender":"test","body":` + body + `}`)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestDecodeOK(t *testing.T) {
	env, body, err := testRegistry().Decode(msg("launch", 1, `{"deployable_type":"web","count":2,"vars":{"a":"b"}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	lb, ok := body.(*launchBody)
	if !ok {
		t.Fatalf("body is %T, want *launchBody", body)
	}
	if lb.Count != 2 || lb.DeployableType != "web" || lb.Vars["a"] != "b" {
		t.Errorf("body = %+v", lb)
	}
	if env.Type != "launch" || env.ID != "id-1" || env.Run != "r1" || env.Sender != "test" || env.Version != 1 {
		t.Errorf("envelope = %+v", env)
	}
}

func TestDecodeErrors(t *testing.T) {
	big := msg("launch", 1, `{"deployable_type":"`+strings.Repeat("x", 200)+`","count":1}`)
	cases := []struct {
		name    string
		data    []byte
		maxSize int
		want    string // exact Error()
		field   string
	}{
		{"bad json", []byte(`{"type":`), 0, "", ""},
		{"not an object", []byte(`[1,2]`), 0, "", ""},
		{"trailing data", append(msg("launch", 1, `{"deployable_type":"w","count":1}`), []byte(`{}`)...), 0, "message: bad JSON: trailing data after JSON value", ""},
		{"oversized", big, 100, "message: oversized: " + itoa(len(big)) + " bytes, limit 100", ""},
		{"unknown type", msg("foo", 1, `{}`), 0, `message "foo": unknown type`, ""},
		{"unsupported version", msg("launch", 7, `{}`), 0, `message "launch" v7: field "version": unsupported version`, "version"},
		{"version zero", msg("launch", 0, `{}`), 0, `message "launch": field "version": must be >= 1`, "version"},
		{"missing type", []byte(`{"version":1}`), 0, `message: field "type": missing`, "type"},
		{"missing body field", msg("launch", 1, `{"count":1}`), 0, `message "launch" v1: field "deployable_type": missing`, "deployable_type"},
		{"invalid value", msg("launch", 1, `{"deployable_type":"w","count":0}`), 0, `message "launch" v1: field "count": must be >= 1`, "count"},
		{"wrong json type", msg("launch", 1, `{"deployable_type":"w","count":"two"}`), 0, `message "launch" v1: field "count": want int, got JSON string`, "count"},
		{"unknown body field", msg("launch", 1, `{"deployable_type":"w","count":1,"cuont":2}`), 0, `message "launch" v1: field "cuont": unknown field`, "cuont"},
		{"unknown envelope field", []byte(`{"type":"launch","version":1,"extra":true}`), 0, `message: field "extra": unknown field`, "extra"},
		{"null body", msg("launch", 1, `null`), 0, `message "launch" v1: field "body": missing`, "body"},
		{"body not object", msg("launch", 1, `[1]`), 0, "", ""},
		{"missing id", []byte(`{"type":"launch","version":1,"run":"r","time":"2026-11-21T22:00:00Z","sender":"s","body":{}}`), 0, `message "launch" v1: field "id": missing`, "id"},
		{"bad time", []byte(`{"type":"launch","version":1,"time":"yesterday"}`), 0, "", "time"},
	}
	reg := testRegistry()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, body, err := reg.Decode(c.data, c.maxSize)
			if err == nil {
				t.Fatalf("Decode succeeded with body %+v, want error", body)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %q is not a *DecodeError", err, err)
			}
			if c.want != "" && err.Error() != c.want {
				t.Errorf("error = %q\n want %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "message") {
				t.Errorf("error %q does not start with \"message\"", err)
			}
			if de.Field != c.field {
				t.Errorf("Field = %q, want %q", de.Field, c.field)
			}
			if body != nil {
				t.Errorf("body = %+v on error, want nil", body)
			}
		})
	}
}

// A reply from a newer peer carries fields this process does not know yet
// (as dns_problem or a worker's uid once were); it must still be read, with
// the known fields intact, while a command with an unknown field is still
// refused, naming the type and the field.
func TestDecodeReplyIgnoresUnknownFields(t *testing.T) {
	reg := testRegistry()
	_, body, err := reg.DecodeReply(msg("reply", 1, `{"ok":true,"error":"e","dns_problem":{"since":"x"}}`), 0, "reply")
	if err != nil {
		t.Fatalf("DecodeReply with a newer field: %v", err)
	}
	if rb, ok := body.(*replyBody); !ok || !rb.OK || rb.Error != "e" {
		t.Errorf("body = %#v, want ok and error \"e\" kept", body)
	}

	_, _, err = reg.Decode(msg("launch", 1, `{"deployable_type":"w","count":1,"cuont":2}`), 0)
	var de *DecodeError
	if !errors.As(err, &de) || de.Type != "launch" || de.Field != "cuont" || de.Reason != "unknown field" {
		t.Fatalf("command with an unknown field: err = %v, want a DecodeError naming \"launch\" and \"cuont\"", err)
	}

	// DecodeReply is lenient only for the reply type it was asked for: a
	// command read where a reply was expected is as strict as ever.
	_, body, err = reg.DecodeReply(msg("launch", 1, `{"deployable_type":"w","count":1,"cuont":2}`), 0, "reply")
	if !errors.As(err, &de) || de.Type != "launch" || de.Field != "cuont" || body != nil {
		t.Fatalf("command through DecodeReply: body %v, err %v, want refused naming \"launch\" and \"cuont\"", body, err)
	}
	// The envelope and the body's own checks stay strict for replies.
	for _, data := range [][]byte{
		[]byte(`{"type":"reply","version":1,"extra":true}`),
		append(msg("reply", 1, `{"ok":true}`), `{}`...),
		msg("reply", 1, `{"ok":"yes"}`),
	} {
		if _, _, err := reg.DecodeReply(data, 0, "reply"); err == nil {
			t.Errorf("DecodeReply(%s) succeeded, want error", data)
		}
	}
}

func TestDecodeBadJSONWording(t *testing.T) {
	_, _, err := testRegistry().Decode([]byte(`{"type":`), 0)
	if err == nil || !strings.HasPrefix(err.Error(), "message: bad JSON: ") {
		t.Fatalf("error = %v, want prefix %q", err, "message: bad JSON: ")
	}
}

func TestDestructive(t *testing.T) {
	r := testRegistry()
	for typ, want := range map[string]bool{"launch": false, "terminate_all": true, "nope": false} {
		if got := r.Destructive(typ); got != want {
			t.Errorf("Destructive(%q) = %v, want %v", typ, got, want)
		}
	}
}

func TestNewEnvelopeRoundTrip(t *testing.T) {
	e, err := NewEnvelope("launch", 1, "r1", "tester", launchBody{DeployableType: "web", Count: 3}, t0)
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := NewEnvelope("launch", 1, "r1", "tester", launchBody{DeployableType: "web", Count: 3}, t0)
	if e.ID == "" || e.ID == e2.ID {
		t.Errorf("IDs %q and %q: want random and distinct", e.ID, e2.ID)
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"type"`, `"version"`, `"id"`, `"run"`, `"time"`, `"sender"`, `"body"`} {
		if !strings.Contains(string(data), k) {
			t.Errorf("marshalled envelope %s lacks key %s", data, k)
		}
	}
	got, body, err := testRegistry().Decode(data, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(t0) || got.ID != e.ID || body.(*launchBody).Count != 3 {
		t.Errorf("round trip: got %+v body %+v", got, body)
	}
}

func TestNewEnvelopeRefusesBadInput(t *testing.T) {
	cases := []struct {
		typ          string
		version      int
		run, sender  string
		body         any
		wantContains string
	}{
		{"", 1, "r", "s", 1, "empty type"},
		{"x", 0, "r", "s", 1, "version 0"},
		{"x", 1, "", "s", 1, "empty run"},
		{"x", 1, "r", "", 1, "empty sender"},
		{"x", 1, "r", "s", make(chan int), "marshal body"},
	}
	for _, c := range cases {
		_, err := NewEnvelope(c.typ, c.version, c.run, c.sender, c.body, t0)
		if err == nil || !strings.Contains(err.Error(), c.wantContains) {
			t.Errorf("NewEnvelope(%q,%d,%q,%q) error = %v, want containing %q", c.typ, c.version, c.run, c.sender, err, c.wantContains)
		}
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "secret")
	s1, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != SecretSize {
		t.Fatalf("secret has %d bytes, want %d", len(s1), SecretSize)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret mode %04o, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("parent mode %04o, want 0700", di.Mode().Perm())
	}
	s2, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(s1) != string(s2) {
		t.Error("second load returned a different secret")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the secret (temp file left behind?)", len(entries))
	}
}

func TestLoadOrCreateSecretRefuses(t *testing.T) {
	cases := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"world readable", strings.Repeat("ab", 32), 0o644, "too open"},
		{"group readable", strings.Repeat("ab", 32), 0o640, "too open"},
		{"not hex", "zz", 0o600, "not hex"},
		{"short", "abcd", 0o600, "2 bytes, want 32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, c.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateSecret(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error = %v, want one naming %s and containing %q", err, path, c.want)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "real")
		if err := os.WriteFile(target, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "secret")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateSecret(link); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("error = %v, want refusal of symlink", err)
		}
	})
}
