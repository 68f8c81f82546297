package ec2worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// InstanceConfig is the `instance` table of an ec2 job, as the controller
// forwards it in the launch spec.
type InstanceConfig struct {
	Image              string   `json:"image"`
	InstanceType       string   `json:"instance_type"`
	KeyName            string   `json:"key_name"`
	SecurityGroups     []string `json:"security_groups"`
	Subnet             string   `json:"subnet"`
	IAMInstanceProfile string   `json:"iam_instance_profile"`
	Region             string   `json:"region"`
	EndpointURL        string   `json:"endpoint_url"`
	SitterURL          string   `json:"sitter_url"`
	SitterPath         string   `json:"sitter_path"`
	// ImageID is accepted as a synonym of Image because docs/jobs.md's
	// example spells it that way.
	ImageID string `json:"image_id"`
}

// LaunchSpec is the part of provisioner.InstanceSpec.Spec this driver reads.
// Other top-level keys (engine, ...) are carried to the instance untouched.
type LaunchSpec struct {
	Driver   string
	Instance InstanceConfig
}

const defaultInstanceType = "t3.micro"

// ParseSpec reads a launch spec. Every error names the field at fault, so a
// failed instance's reason tells the operator which job key to fix.
func ParseSpec(raw []byte) (LaunchSpec, error) {
	var ls LaunchSpec
	if len(bytes.TrimSpace(raw)) == 0 {
		return ls, errors.New("launch spec: empty; an ec2 job needs an instance table with at least image")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return ls, fmt.Errorf("launch spec: want a JSON object: %w", err)
	}
	if top == nil {
		return ls, errors.New("launch spec: want a JSON object, got null")
	}
	if d, ok := top["driver"]; ok {
		if err := json.Unmarshal(d, &ls.Driver); err != nil {
			return ls, fmt.Errorf("launch spec: driver: want a string: %w", err)
		}
		if ls.Driver != "" && ls.Driver != "ec2" {
			return ls, fmt.Errorf("launch spec: driver: %q, but this provisioner runs the ec2 driver", ls.Driver)
		}
	}
	inst, ok := top["instance"]
	if !ok || string(bytes.TrimSpace(inst)) == "null" {
		return ls, errors.New("launch spec: instance: required (image at least)")
	}
	dec := json.NewDecoder(bytes.NewReader(inst))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ls.Instance); err != nil {
		return ls, fmt.Errorf("launch spec: instance: %w", fieldError(err))
	}
	ic := &ls.Instance
	switch {
	case ic.Image != "" && ic.ImageID != "" && ic.Image != ic.ImageID:
		return ls, errors.New("launch spec: instance: image and image_id disagree; set one")
	case ic.Image == "":
		ic.Image = ic.ImageID
	}
	ic.ImageID = ""
	if ic.Image == "" {
		return ls, errors.New("launch spec: instance.image: required")
	}
	if ic.InstanceType == "" {
		ic.InstanceType = defaultInstanceType
	}
	for name, v := range map[string]string{"image": ic.Image, "instance_type": ic.InstanceType, "key_name": ic.KeyName,
		"subnet": ic.Subnet, "region": ic.Region, "sitter_path": ic.SitterPath} {
		if strings.ContainsAny(v, " \t\r\n\x00") {
			return ls, fmt.Errorf("launch spec: instance.%s: %q holds white space or NUL", name, v)
		}
	}
	for i, g := range ic.SecurityGroups {
		if g == "" || strings.ContainsAny(g, " \t\r\n\x00") {
			return ls, fmt.Errorf("launch spec: instance.security_groups[%d]: %q is not a group id", i, g)
		}
	}
	if ic.SitterPath != "" && !strings.HasPrefix(ic.SitterPath, "/") {
		return ls, fmt.Errorf("launch spec: instance.sitter_path: %q must be absolute", ic.SitterPath)
	}
	for name, u := range map[string]string{"sitter_url": ic.SitterURL, "endpoint_url": ic.EndpointURL} {
		if u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return ls, fmt.Errorf("launch spec: instance.%s: %q is not an http(s) URL", name, u)
		}
	}
	return ls, nil
}

// fieldError rewords encoding/json's errors so they name the field as the
// plan spells it.
func fieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return err
}
