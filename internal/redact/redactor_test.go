package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedactorReplacesValuesAndTheirEncodings(t *testing.T) {
	raw := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 8)
	hx := hex.EncodeToString(raw)
	r := NewRedactor("s3cr3t/pa ss", "ab", "")
	r.AddBytes(raw)
	cases := []struct{ name, in, want string }{
		{"plain value", "arg --password s3cr3t/pa ss here", "arg --password xxxxx here"},
		{"path-escaped", "url path s3cr3t%2Fpa%20ss", "url path xxxxx"},
		{"query-escaped", "q=s3cr3t%2Fpa+ss&x=1", "q=xxxxx&x=1"},
		{"hex secret", "secret is " + hx + ".", "secret is xxxxx."},
		{"upper hex", "SECRET " + strings.ToUpper(hx), "SECRET xxxxx"},
		{"base64", "b64 " + base64.StdEncoding.EncodeToString(raw), "b64 xxxxx"},
		{"base64url raw", "b64 " + base64.RawURLEncoding.EncodeToString(raw), "b64 xxxxx"},
		{"short value left alone", "ab cd", "ab cd"},
		{"url password by structure", "amqp://u:other@h/", "amqp://u:xxxxx@h/"},
		{"twice", hx + hx, "xxxxxxxxxx"},
		{"nothing", "ordinary text", "ordinary text"},
	}
	for _, c := range cases {
		if got := r.String(c.in); got != c.want {
			t.Errorf("%s: String(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

func TestRedactorLongestFirstAndLateAdds(t *testing.T) {
	r := NewRedactor("abcd")
	if got := r.String("xabcdefghx"); got != "xxxxxxefghx" {
		t.Fatalf("got %q", got)
	}
	r.Add("abcdefgh") // learnt later: must win over its prefix
	if got := r.String("xabcdefghx"); got != "xxxxxxx" {
		t.Fatalf("after Add: got %q", got)
	}
}

func TestRedactorAttrs(t *testing.T) {
	r := NewRedactor()
	r.AddAttrs(map[string]string{
		"password": "brokerpass1",
		"url":      "amqp://nightshift:url%40pass@127.0.0.1:5672/",
		"port":     "5672",
		"token":    "xy", // too short to hunt by value
	})
	got := r.String("pw brokerpass1, url pass url@pass, escaped url%40pass, port 5672, xy")
	want := "pw xxxxx, url pass xxxxx, escaped xxxxx, port 5672, xy"
	if got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	m := r.Map(map[string]string{"token": "xy", "note": "uses brokerpass1"})
	if m["token"] != Marker || m["note"] != "uses xxxxx" {
		t.Fatalf("Map = %v", m)
	}
}

func TestRedactorMultiLineSecretLineByLine(t *testing.T) {
	key := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5vFjNb7i0YRKSoAoGCCqGSM49\nAwEHoUQDQgAE\n-----END EC PRIVATE KEY-----\n"
	r := NewRedactor(key)
	got := r.String("dump:\n" + key)
	if strings.Contains(got, "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5vFjNb7i0YRKSoAoGCCqGSM49") {
		t.Fatalf("key body shown: %q", got)
	}
	// One line of it, as a log shows it, is caught too; short lines and
	// the armor are not hunted on their own.
	if got := r.String("line MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5vFjNb7i0YRKSoAoGCCqGSM49"); got != "line xxxxx" {
		t.Fatalf("one line: %q", got)
	}
	if got := r.String("AwEHoUQDQgAE -----END EC PRIVATE KEY-----"); got != "AwEHoUQDQgAE -----END EC PRIVATE KEY-----" {
		t.Fatalf("short line or armor redacted: %q", got)
	}
}

func TestNilRedactorAppliesStringOnly(t *testing.T) {
	var r *Redactor
	r.Add("whatever")
	if got := r.String("amqp://a:b@h/ whatever"); got != "amqp://a:xxxxx@h/ whatever" {
		t.Fatalf("got %q", got)
	}
}

func TestEncodeJSONKeepsStructureAndOrder(t *testing.T) {
	r := NewRedactor("true", "1234", "topsecret")
	v := struct {
		Name   string            `json:"name"`
		Flag   bool              `json:"flag"`
		Num    int               `json:"num"`
		Attrs  map[string]string `json:"attrs"`
		Policy map[string]any    `json:"policy"`
		List   []string          `json:"list"`
		Nil    *int              `json:"nil"`
		HTML   string            `json:"html"`
	}{
		Name: "run topsecret", Flag: true, Num: 1234,
		Attrs:  map[string]string{"api_token": "short", "x": "true"},
		Policy: map[string]any{"nested": map[string]any{"pw": "topsecret", "n": 1234.5}},
		List:   []string{"a", "topsecret", "\x1b[31m"},
		HTML:   "<b>&</b>",
	}
	var got bytes.Buffer
	if err := r.EncodeJSON(&got, v); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(got.Bytes(), &back); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got.String())
	}
	s := got.String()
	for _, bad := range []string{"topsecret", `"short"`} {
		if strings.Contains(s, bad) {
			t.Errorf("output holds %q:\n%s", bad, s)
		}
	}
	for _, want := range []string{`"flag": true`, `"num": 1234,`, `"x": "xxxxx"`, `"n": 1234.5`, `"nil": null`, `"\u001b[31m"`, `\u003cb\u003e\u0026`, `"api_token": "xxxxx"`} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
	if strings.Index(s, `"name"`) > strings.Index(s, `"flag"`) || strings.Index(s, `"list"`) > strings.Index(s, `"html"`) {
		t.Errorf("field order changed:\n%s", s)
	}
	// Without secrets the output is what json.Encoder writes.
	var plain, enc bytes.Buffer
	if err := NewRedactor().EncodeJSON(&plain, map[string]any{"a": []int{1, 2}, "b": "c"}); err != nil {
		t.Fatal(err)
	}
	e := json.NewEncoder(&enc)
	e.SetIndent("", "  ")
	e.Encode(map[string]any{"a": []int{1, 2}, "b": "c"})
	if plain.String() != enc.String() {
		t.Errorf("EncodeJSON = %q, json.Encoder = %q", plain.String(), enc.String())
	}
}

func TestHandlerRedactsMessagesAndAttrs(t *testing.T) {
	r := NewRedactor("hunter22")
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&buf, nil), r)).With("url", "amqp://u:hunter22@h/")
	log.Info("boot with hunter22", "err", os.ErrNotExist, "args", []string{"--pw", "hunter22"}, slog.Group("g", "k", "x hunter22"))
	out := buf.String()
	if strings.Contains(out, "hunter22") {
		t.Fatalf("log holds the secret: %s", out)
	}
	for _, want := range []string{"boot with xxxxx", "file does not exist", "--pw xxxxx", "g.k=\"x xxxxx\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: %s", want, out)
		}
	}
}

func TestRegistryRoundTripAndModes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "secrets")
	if err := Register(path, "worker-pass-1", "x", "line\nbreak"); err != nil {
		t.Fatal(err)
	}
	if err := Register(path, "worker-pass-2"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("registry mode %v (err %v), want 0600", st.Mode(), err)
	}
	r := NewRedactor()
	if err := r.LoadRegistry(path); err != nil {
		t.Fatal(err)
	}
	if got := r.String("worker-pass-1 worker-pass-2 x line\nbreak"); got != "xxxxx xxxxx x xxxxx" {
		t.Fatalf("got %q", got)
	}
	if err := NewRedactor().LoadRegistry(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("missing registry: %v", err)
	}
	os.WriteFile(path, []byte("zz-not-hex\n"+hex.EncodeToString([]byte("good-one"))+"\n"), 0o600)
	r = NewRedactor()
	if err := r.LoadRegistry(path); err == nil || !strings.Contains(err.Error(), ":1") {
		t.Fatalf("malformed line: err %v", err)
	}
	if r.String("good-one") != Marker {
		t.Fatal("good line after a bad one was not loaded")
	}
}

func TestOpenPrivateTightensExistingFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	f, err := OpenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new\n")
	f.Close()
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "old\nnew\n" {
		t.Fatalf("content %q: OpenPrivate must append", b)
	}
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"a":[1,"topsecret",{"pw":"x"}],"b":null}`), "topsecret")
	f.Add([]byte(`"true" true 1`), "true")
	f.Fuzz(func(t *testing.T, data []byte, secret string) {
		if !json.Valid(data) {
			return
		}
		out, err := NewRedactor(secret).JSON(data)
		if err != nil {
			t.Fatalf("valid JSON %q refused: %v", data, err)
		}
		if !json.Valid(out) {
			t.Fatalf("JSON(%q) = %q is not valid JSON", data, out)
		}
	})
}
