package ec2

import (
	"encoding/base64"
	"fmt"
	"strings"
)

func encodeUserData(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// WorkerUserData is the cloud-init script that starts a sitter on a worker
// instance. The sitter binary is baked into the image at SitterPath, or
// fetched from SitterURL first. Every value is single-quoted for the shell,
// so nothing in a plan can inject a command into the instance's boot.
//
// It holds no secret: any process on the instance reads user data through
// the metadata service, and so does anyone allowed
// ec2:DescribeInstanceAttribute. The broker URL, which carries the
// worker's password, is an SSM SecureString parameter (internal/ssmparams)
// that the sitter reads with the instance's role at start (--amqp-url-ssm);
// only its name is here.
type WorkerUserData struct {
	SitterPath string // default /usr/local/bin/sitter
	SitterURL  string // optional: download the sitter from here first
	Run        string
	Job        string
	InstanceID string
	// BrokerURLParam is the full name of the SSM parameter holding the
	// broker URL; SSMRegion the region it is in (the instance's role reads
	// it there), SSMEndpointURL an SSM endpoint other than AWS's (moto).
	BrokerURLParam string
	SSMRegion      string
	SSMEndpointURL string
	Args           []string

	// BrokerCA is the PEM CA an amqps:// broker is verified against (the
	// run's CA); written to a file the sitter gets as --amqp-ca-file.
	BrokerCA string

	// CommandKey is the public half of the run's command key (hex), passed
	// to the sitter as --command-key to verify drain and control. It is no
	// secret; the private key is never put in user data.
	CommandKey string
}

// BrokerCAPath is where a worker instance keeps the broker's CA.
const BrokerCAPath = "/etc/nightshift/broker-ca.pem"

// Script renders the user data.
func (w WorkerUserData) Script() string {
	path := w.SitterPath
	if path == "" {
		path = "/usr/local/bin/sitter"
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\nset -eu\n")
	if w.SitterURL != "" {
		fmt.Fprintf(&b, "curl -fsSL --retry 5 -o %s %s\nchmod 0755 %s\n", q(path), q(w.SitterURL), q(path))
	}
	b.WriteString("umask 077\nmkdir -p /etc/nightshift\n")
	args := []string{path, "agent", "--run", w.Run, "--job", w.Job, "--instance", w.InstanceID, "--amqp-url-ssm", w.BrokerURLParam}
	if w.SSMRegion != "" {
		args = append(args, "--ssm-region", w.SSMRegion)
	}
	if w.SSMEndpointURL != "" {
		args = append(args, "--ssm-endpoint-url", w.SSMEndpointURL)
	}
	if w.BrokerCA != "" {
		fmt.Fprintf(&b, "printf '%%s' %s > %s\n", q(w.BrokerCA), BrokerCAPath)
		args = append(args, "--amqp-ca-file", BrokerCAPath)
	}
	if w.CommandKey != "" {
		args = append(args, "--command-key", w.CommandKey)
	}
	args = append(args, w.Args...)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = q(a)
	}
	fmt.Fprintf(&b, "nohup %s >/var/log/nightshift-sitter.log 2>&1 &\n", strings.Join(quoted, " "))
	return b.String()
}

// q quotes s for a POSIX shell.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
