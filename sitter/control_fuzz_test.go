package sitter

import (
	"strings"
	"testing"
)

func TestDecodeControlRequest(t *testing.T) {
	cases := []struct{ in, err string }{
		{`{"op":"status"}`, ""},
		{`{"op":"tail","task":"a","n":5}`, ""},
		{`{"op":"stop"}`, "control request stop: field task is required"},
		{`{"op":"tail","task":"a","n":-1}`, "field n must be >= 0"},
		{`{"op":"rm","task":"a"}`, `field op: unknown "rm"`},
		{`{"op":`, "control request: unexpected end"},
		{`{"op":"stop","task":7}`, "control request: json: cannot unmarshal number"},
	}
	for _, c := range cases {
		_, err := DecodeControlRequest([]byte(c.in))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("DecodeControlRequest(%s) = %v, want %q", c.in, err, c.err)
		}
	}
}

func FuzzDecodeControlRequest(f *testing.F) {
	for _, s := range []string{`{"op":"status"}`, `{"op":"stop","task":"web"}`, `{"op":"tail","task":"a","n":3}`, `{"op":1}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeControlRequest(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "control request") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if req.Op != "status" && req.Task == "" {
			t.Fatalf("accepted %q without a task", req.Op)
		}
	})
}
