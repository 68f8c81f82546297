package launchplan

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseOutputs(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"strings", `{"a":"x","b":""}`, map[string]string{"a": "x", "b": ""}, ""},
		{"surrounding space", " \n{\"a\" : 1 }\n\n", map[string]string{"a": "1"}, ""},
		{"integer kept exact", `{"n": 12345678901234567890}`, map[string]string{"n": "12345678901234567890"}, ""},
		{"fraction kept as written", `{"n": 0.10, "m": -0.25, "k": 1.50}`, map[string]string{"n": "0.10", "m": "-0.25", "k": "1.50"}, ""},
		{"exponent spelled out", `{"n": 2.5E-3, "m": 1.5e3, "k": 1E-7}`, map[string]string{"n": "0.0025", "m": "1500", "k": "0.0000001"}, ""},
		{"bool", `{"t":true,"f":false}`, map[string]string{"t": "true", "f": "false"}, ""},
		{"empty object", `{}`, map[string]string{}, ""},
		{"escapes", `{"s": "\u00fc\n"}`, map[string]string{"s": "ü\n"}, ""},
		{"huge number", `{"n": 1e400}`, nil, `f.json:1: key "n": number 1e400`},
		{"duplicate key", `{"a": "1", "a": "2"}`, nil, `key "a": given twice`},
		{"duplicate key of another type", "{\"a\": 1,\n\"a\": true}", nil, `f.json:2: key "a": given twice`},
		{"empty key", `{"": "1"}`, nil, "empty key"},
		{"second object", `{} {}`, nil, "data after the JSON object"},
		{"trailing garbage", `{} x`, nil, "invalid JSON"},
		{"string document", `"str"`, nil, "got a string"},
		{"array document", `["a"]`, nil, "got an array"},
		{"null document", `null`, nil, "got null"},
		{"array value", "{\n\"a\": 1,\n\"b\": [1]}", nil, `f.json:3: key "b": value is an array`},
		{"object value", `{"o":{}}`, nil, `key "o": value is an object`},
		{"null value", `{"z":null}`, nil, `key "z": value is null`},
		{"missing colon", `{"a" 1}`, nil, "invalid JSON"},
		{"truncated", `{"a":`, nil, "unexpected end of JSON"},
		{"empty", ``, nil, "empty file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseOutputs("f.json", []byte(c.in))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("ParseOutputs(%q) error = %v, want %q", c.in, err, c.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ParseOutputs(%q) = %v, %v; want %v", c.in, got, err, c.want)
			}
		})
	}
}

func TestReadOutputs(t *testing.T) {
	got, err := ReadOutputs("f.json", strings.NewReader(`{"port": 8080}`))
	if err != nil || !reflect.DeepEqual(got, map[string]string{"port": "8080"}) {
		t.Errorf("ReadOutputs = %v, %v", got, err)
	}
	big := `{"a":"` + strings.Repeat("x", MaxOutputBytes) + `"}`
	if _, err := ReadOutputs("big.json", strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "big.json: larger than") {
		t.Errorf("ReadOutputs(too large) = %v, want a size error naming the file", err)
	}
	broken := iotest.ErrReader(errors.New("disk on fire"))
	if _, err := ReadOutputs("r.json", io.MultiReader(strings.NewReader("{"), broken)); err == nil || !strings.Contains(err.Error(), "r.json: disk on fire") {
		t.Errorf("ReadOutputs(read error) = %v, want the read error naming the file", err)
	}
}

func FuzzParseOutputs(f *testing.F) {
	for _, s := range []string{`{"port": 8080, "ok": true}`, `{"a": {"b": 1}}`, `[1]`, `{"n": 1e3}`, `{`,
		`{"a":"x","n":1.5e3,"b":true}`, `{"r": 0.10}`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := ParseOutputs("fuzz.json", data)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		// Whatever parses is a JSON object of scalars, so the standard
		// decoder must agree on its keys and strings.
		var m map[string]any
		if jerr := json.Unmarshal(data, &m); jerr != nil {
			t.Fatalf("ParseOutputs accepted %q that encoding/json rejects: %v", data, jerr)
		}
		if len(m) != len(out) {
			t.Fatalf("keys: ParseOutputs %d, encoding/json %d", len(out), len(m))
		}
		for k, v := range m {
			if s, ok := v.(string); ok && out[k] != s {
				t.Fatalf("key %q = %q, encoding/json says %q", k, out[k], s)
			}
		}
		// What was accepted survives a round trip as plain strings.
		enc, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseOutputs("fuzz.json", enc)
		if err != nil || !reflect.DeepEqual(out, again) {
			t.Fatalf("round trip of %s: %v, %v", enc, again, err)
		}
	})
}
