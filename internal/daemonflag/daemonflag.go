// Package daemonflag owns the flags the Nightshift daemons share: the
// provisioner, the controller and `sitter agent` name their run, their
// Nightshift home, their broker (URL file, URL, CA), the run secret and
// their log level the same way, with the same environment defaults and the
// same checks. --home is always the Nightshift home (the directory holding
// runs/<run>/), never a daemon's own state directory.
package daemonflag

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"nightshift/internal/amqpbus"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// Options says which of the shared flags a daemon has and how they default.
type Options struct {
	// NoHome leaves --home out: the daemon keeps nothing under a home
	// (a sitter agent, whose state is its instance's).
	NoHome bool
	// URLFileOnly leaves --amqp-url out: the URL comes from a file or the
	// environment, never from a command line other users can read.
	URLFileOnly bool
	// DefaultURL is the broker when neither a flag nor the environment
	// names one; empty makes one required.
	DefaultURL string
	// NoSecret leaves --secret-file out: the daemon must never hold the
	// run's secret (a sitter on a worker's host).
	NoSecret bool
	// SecretDefault defaults --secret-file to the run's secret under the
	// home; without it the secret is read only when the flag names one
	// (a worker's host must never hold it).
	SecretDefault bool
}

// Common is the shared flags' values. After Resolve, Home is absolute (when
// the daemon has one), URL holds the broker URL (with its password: print
// it only through redact), URLSource says where it came from, AMQPCAFile is
// absolute, and Level is the parsed --log-level.
type Common struct {
	Run, Home                        string
	AMQPURL, AMQPURLFile, AMQPCAFile string
	SecretFile, LogLevel             string

	URL, URLSource string
	Level          slog.Level

	opts                 Options
	preset, presetSource string
}

// Preset gives Resolve a broker URL the caller read itself (`sitter agent
// --amqp-url-ssm` reads it from an SSM parameter), with where it came from
// for messages. A flag naming the broker as well is refused.
func (c *Common) Preset(url, source string) { c.preset, c.presetSource = url, source }

// Register adds the shared flags to fs. --broker-url-file, the sitter's old
// spelling of --amqp-url-file, is kept for scripts and EC2 user data
// written before the two were one.
func (c *Common) Register(fs *flag.FlagSet, opts Options) {
	c.opts = opts
	fs.StringVar(&c.Run, "run", "", "run name (required; default $"+nsenv.Run+")")
	if !opts.NoHome {
		fs.StringVar(&c.Home, "home", "", "Nightshift home, holding runs/<run>/ (default $"+nsenv.Home+", else ~/.nightshift)")
	}
	fs.StringVar(&c.AMQPURLFile, "amqp-url-file", "", "file holding the broker URL, keeping its password off the command line (default $"+nsenv.AMQPURLFile+")")
	fs.Var(deprecated{&c.AMQPURLFile}, "broker-url-file", "deprecated spelling of --amqp-url-file")
	if !opts.URLFileOnly {
		fs.StringVar(&c.AMQPURL, "amqp-url", "", "broker URL amqp://user:pass@host:port/vhost, or a cluster's node URLs joined by commas (default $"+nsenv.AMQPURL+")")
	}
	fs.StringVar(&c.AMQPCAFile, "amqp-ca-file", "", "PEM CA an amqps:// broker's certificate must chain to (default $"+nsenv.AMQPCAFile+")")
	if !opts.NoSecret {
		secret := "run secret for signing and verifying commands"
		if opts.SecretDefault {
			secret += " (default <home>/runs/<run>/secret)"
		}
		fs.StringVar(&c.SecretFile, "secret-file", "", secret)
	}
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
}

// deprecated is a flag.Value writing through to another flag's variable.
type deprecated struct{ p *string }

func (d deprecated) String() string {
	if d.p == nil {
		return ""
	}
	return *d.p
}
func (d deprecated) Set(v string) error { *d.p = v; return nil }

// Resolve fills what the flags left empty from getenv and the defaults,
// checks the values and reads the broker URL file. Its errors name the
// flag and never hold the broker password.
func (c *Common) Resolve(getenv func(string) string) error {
	orEnv := func(v *string, key string) {
		if *v == "" {
			*v = getenv(key)
		}
	}
	orEnv(&c.Run, nsenv.Run)
	if c.Run == "" {
		return fmt.Errorf("--run is required (or set $%s)", nsenv.Run)
	}
	// The run name makes paths under the home: the secret, the ledger.
	if err := launchplan.CheckRunName(c.Run); err != nil {
		return fmt.Errorf("--run: %w", err)
	}
	if err := c.Level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	if !c.opts.NoHome {
		orEnv(&c.Home, nsenv.Home)
		if c.Home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("--home: %w", err)
			}
			c.Home = filepath.Join(h, ".nightshift")
		}
		abs, err := filepath.Abs(c.Home)
		if err != nil {
			return fmt.Errorf("--home: %w", err)
		}
		c.Home = abs
	}
	if err := c.resolveURL(getenv); err != nil {
		return err
	}
	orEnv(&c.AMQPCAFile, nsenv.AMQPCAFile)
	if c.AMQPCAFile != "" {
		if !strings.HasPrefix(c.URL, "amqps://") {
			return fmt.Errorf("--amqp-ca-file is for an amqps:// broker URL, but the URL from %s is not one", c.URLSource)
		}
		abs, err := filepath.Abs(c.AMQPCAFile)
		if err != nil {
			return fmt.Errorf("--amqp-ca-file: %w", err)
		}
		c.AMQPCAFile = abs
	}
	if c.SecretFile == "" && c.opts.SecretDefault {
		c.SecretFile = runlayout.Of(c.Home, c.Run).Secret()
	}
	return nil
}

// resolveURL: a flag beats the environment, and a file beats a URL in the
// environment; two flags naming the broker are refused rather than one
// silently winning.
func (c *Common) resolveURL(getenv func(string) string) error {
	if c.AMQPURL != "" && c.AMQPURLFile != "" {
		return errors.New("give --amqp-url or --amqp-url-file, not both")
	}
	if c.preset != "" && (c.AMQPURL != "" || c.AMQPURLFile != "") {
		return fmt.Errorf("give %s or --amqp-url/--amqp-url-file, not both", c.presetSource)
	}
	switch {
	case c.preset != "":
		c.URL, c.URLSource = c.preset, c.presetSource
	case c.AMQPURL != "":
		c.URL, c.URLSource = c.AMQPURL, "--amqp-url"
	case c.AMQPURLFile != "" || getenv(nsenv.AMQPURLFile) != "":
		if c.AMQPURLFile == "" {
			c.AMQPURLFile = getenv(nsenv.AMQPURLFile)
		}
		b, err := os.ReadFile(c.AMQPURLFile)
		if err != nil {
			return fmt.Errorf("--amqp-url-file: %w", err)
		}
		c.URL, c.URLSource = strings.TrimSpace(string(b)), c.AMQPURLFile
	case getenv(nsenv.AMQPURL) != "":
		c.URL, c.URLSource = strings.TrimSpace(getenv(nsenv.AMQPURL)), "$"+nsenv.AMQPURL
	case c.opts.DefaultURL != "":
		c.URL, c.URLSource = c.opts.DefaultURL, "the default"
	default:
		flags := "--amqp-url or --amqp-url-file"
		if c.opts.URLFileOnly {
			flags = "--amqp-url-file"
		}
		return fmt.Errorf("no broker URL: %s is required (or set $%s or $%s)", flags, nsenv.AMQPURLFile, nsenv.AMQPURL)
	}
	if c.URL == "" {
		return fmt.Errorf("broker URL from %s is empty", c.URLSource)
	}
	// A cluster's nodes come as one comma-separated list (package
	// brokerurl); amqpbus checks it the way it will dial it.
	if err := amqpbus.CheckURL(c.URL); err != nil {
		// The parser's message may quote the URL, password and all.
		return fmt.Errorf("broker URL from %s (%s): %s", c.URLSource, redact.URL(c.URL), redact.String(err.Error()))
	}
	return nil
}
