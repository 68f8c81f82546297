package ec2worker

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	cases := []struct {
		name, spec string
		want       string // error substring; empty: success
		check      func(LaunchSpec) bool
	}{
		{"full", `{"driver":"ec2","instance":{"image":"ami-1","instance_type":"c5.large","key_name":"k","security_groups":["sg-1","sg-2"],` +
			`"subnet":"subnet-1","iam_instance_profile":"arn:aws:iam::1:instance-profile/w","region":"eu-west-1","endpoint_url":"http://127.0.0.1:5055",` +
			`"sitter_url":"https://example.com/sitter","sitter_path":"/opt/sitter"},"worker":{"name":"x"},"engine":{}}`, "",
			func(s LaunchSpec) bool {
				return s.Instance.InstanceType == "c5.large" && len(s.Instance.SecurityGroups) == 2 && s.Instance.Region == "eu-west-1"
			}},
		{"defaults", `{"instance":{"image":"ami-1"}}`, "", func(s LaunchSpec) bool { return s.Instance.InstanceType == "t3.micro" }},
		{"image_id synonym", `{"instance":{"image_id":"ami-2"}}`, "", func(s LaunchSpec) bool { return s.Instance.Image == "ami-2" }},
		{"empty", ``, "empty", nil},
		{"not an object", `[1]`, "want a JSON object", nil},
		{"null", `null`, "null", nil},
		{"other driver", `{"driver":"local","instance":{"image":"ami-1"}}`, `driver: "local"`, nil},
		{"driver not a string", `{"driver":3,"instance":{"image":"ami-1"}}`, "driver: want a string", nil},
		{"no instance", `{"driver":"ec2"}`, "instance: required", nil},
		{"no image", `{"instance":{"instance_type":"t3.small"}}`, "instance.image: required", nil},
		{"image conflict", `{"instance":{"image":"ami-1","image_id":"ami-2"}}`, "disagree", nil},
		{"unknown key", `{"instance":{"image":"ami-1","imagee":"x"}}`, `unknown field "imagee"`, nil},
		{"wrong type", `{"instance":{"image":"ami-1","security_groups":"sg-1"}}`, "security_groups: want []string", nil},
		{"space in type", `{"instance":{"image":"ami-1","instance_type":"t3 micro"}}`, "instance.instance_type", nil},
		{"empty group", `{"instance":{"image":"ami-1","security_groups":[""]}}`, "security_groups[0]", nil},
		{"relative sitter", `{"instance":{"image":"ami-1","sitter_path":"bin/sitter"}}`, "must be absolute", nil},
		{"bad sitter url", `{"instance":{"image":"ami-1","sitter_url":"file:///etc/passwd"}}`, "instance.sitter_url", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSpec([]byte(c.spec))
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want it to mention %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(got) {
				t.Fatalf("parsed %+v", got)
			}
		})
	}
}

// FuzzParseSpec checks that no launch spec crashes the parser and that an
// accepted one always has an image and an instance type without white space.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(`{"driver":"ec2","instance":{"image":"ami-1"}}`))
	f.Add([]byte(`{"instance":{"image_id":"ami-1","security_groups":["sg-1"]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := ParseSpec(raw)
		if err != nil {
			return
		}
		if s.Instance.Image == "" || s.Instance.InstanceType == "" || strings.ContainsAny(s.Instance.InstanceType, " \t\n") {
			t.Fatalf("accepted %q as %+v", raw, s)
		}
	})
}
