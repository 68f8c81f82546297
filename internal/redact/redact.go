// Package redact owns the one rule for keeping secrets out of logs, events
// and status output: passwords inside URLs, values whose key names a secret,
// and every value a Redactor knows to be secret (the run's secret, broker
// passwords, whatever a component registers) are replaced by a fixed marker,
// wherever they occur. It also opens the files such text lands in (logs,
// the secret registry) private to their owner.
package redact

import (
	"net/url"
	"regexp"
	"strings"

	"nightshift/internal/brokerurl"
)

// Marker replaces every secret.
const Marker = "xxxxx"

// secretKey matches attribute, env and config key names whose values are secret.
var secretKey = regexp.MustCompile(`(?i)(pass(word|wd)?|secret|token|credential|private[_-]?key|access[_-]?key|api[_-]?key|session[_-]?key)`)

// urlWithUserinfo finds scheme://user:password@ in free text.
var urlWithUserinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):([^@\s]*)@`)

// awsKeyID matches AWS access key ids (AKIA…/ASIA…).
var awsKeyID = regexp.MustCompile(`\b(AKIA|ASIA)[A-Z0-9]{16}\b`)

// IsSecretKey reports whether a key name says its value is a secret.
func IsSecretKey(key string) bool { return secretKey.MatchString(key) }

// String removes URL passwords and AWS key ids from free text.
func String(s string) string {
	// Each pattern only where it can match: a status of 10,000 workers is
	// hundreds of thousands of short strings, and running both regexps on
	// each took seconds.
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		s = urlWithUserinfo.ReplaceAllString(s, "${1}:"+Marker+"@")
	}
	if strings.Contains(s, "AKIA") || strings.Contains(s, "ASIA") {
		s = awsKeyID.ReplaceAllString(s, "${1}"+strings.Repeat("X", 16))
	}
	return s
}

// URL returns u with its password replaced; unparsable input goes through
// String. A list of broker URLs (package brokerurl) has every URL's
// password replaced: parsed whole, the later URLs would pass as the first
// one's path, passwords and all.
func URL(u string) string {
	if us := brokerurl.Split(u); len(us) > 1 {
		for i := range us {
			us[i] = oneURL(us[i])
		}
		return brokerurl.Join(us)
	}
	return oneURL(u)
}

func oneURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return String(u)
	}
	if _, has := p.User.Password(); has {
		p.User = url.UserPassword(p.User.Username(), Marker)
	}
	return p.String()
}

// Value redacts one value given its key: the whole value when the key names
// a secret, otherwise only embedded URL passwords.
func Value(key, value string) string {
	if IsSecretKey(key) && value != "" {
		return Marker
	}
	return String(value)
}

// Map returns a copy of m with every value passed through Value.
func Map(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = Value(k, v)
	}
	return out
}
