package brokerurl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ", nil},
		{"amqp://u:p@h:1/", []string{"amqp://u:p@h:1/"}},
		{"amqp://u:p@h:1/,amqp://u:p@h:2/", []string{"amqp://u:p@h:1/", "amqp://u:p@h:2/"}},
		{" amqp://a@h:1/ , amqps://a@h:2/ ,amqp://a@h:3 ", []string{"amqp://a@h:1/", "amqps://a@h:2/", "amqp://a@h:3"}},
		// A comma inside one URL (password, query) does not split it.
		{"amqp://u:pa,ss@h:1/", []string{"amqp://u:pa,ss@h:1/"}},
		{"amqp://u:p@h:1/?heartbeat=5,x", []string{"amqp://u:p@h:1/?heartbeat=5,x"}},
		{"http://h/a,b", []string{"http://h/a,b"}},
	}
	for _, c := range cases {
		got := Split(c.in)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Split(%q) = %q, want %q", c.in, got, c.want)
		}
		if c.want != nil && Join(got) != Join(Split(Join(got))) {
			t.Errorf("Join/Split of %q is not stable", c.in)
		}
	}
	if First("amqp://h:1/,amqp://h:2/") != "amqp://h:1/" || First("") != "" {
		t.Error("First")
	}
}

func TestMap(t *testing.T) {
	got, err := Map("amqp://a@h:1/,amqp://a@h:2/", func(s string) (string, error) { return strings.ToUpper(s), nil })
	if err != nil || got != "AMQP://A@H:1/,AMQP://A@H:2/" {
		t.Fatalf("Map = %q, %v", got, err)
	}
	boom := errors.New("boom")
	if _, err := Map("amqp://h:1/", func(string) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("Map error = %v", err)
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		in, wantErr string
	}{
		{"amqp://u:p@h:1/", ""},
		{"amqp://u:p@h:1/,amqp://u:q@h:2/", ""},
		{"amqp://u:p@h:1/v,amqp://u:p@h:2/v", ""},
		{"", "no broker URL"},
		{"amqp://u:secret@h:1/,amqp:///v", "URL 2 of 2"},
		{"amqp://u:secret@h:1/,amqps://u:secret@h:2/", "scheme amqps differs"},
		{"amqp://u:secret@h:1/,amqp://v:secret@h:2/", "user differs"},
		{"amqp://u:secret@h:1/a,amqp://u:secret@h:2/b", "vhost differs"},
	}
	for _, c := range cases {
		err := Check(c.in)
		if c.wantErr == "" && err != nil {
			t.Errorf("Check(%q): %v", c.in, err)
		}
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("Check(%q) = %v, want %q", c.in, err, c.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Check(%q) leaks a password: %v", c.in, err)
		}
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{"", "amqp://u:p@h:1/,amqp://u:p@h:2/", "amqp://u:pa,ss@h/", ",,,", ",amqp://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		us := Split(s)
		again := Split(Join(us))
		if len(us) > 0 && !reflect.DeepEqual(again, us) {
			t.Fatalf("Split(Join(Split(%q))) = %q, want %q", s, again, us)
		}
		_ = Check(s)
	})
}
