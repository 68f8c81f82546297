// Package brokerurl owns the one spelling of a broker address that names
// several nodes of one RabbitMQ cluster: URLs joined by commas, such as
// "amqp://u:p@127.0.0.1:5701/,amqp://u:p@127.0.0.1:5702/". A single URL is
// a list of one, so every flag, file, environment variable and plan value
// that carried one URL carries a list unchanged. A leaf with no I/O; the
// redactor, the AMQP adapter and the flag parsers all split the same way.
package brokerurl

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// sep is a comma that starts the next URL. A comma followed by anything
// but scheme:// (one inside a password, a query or a path) belongs to the
// URL it is in, so a URL that was valid alone stays one URL.
var sep = regexp.MustCompile(`,\s*[a-zA-Z][a-zA-Z0-9+.-]*://`)

// Split returns the URLs of list in order, spaces around them trimmed; an
// empty list gives none.
func Split(list string) []string {
	list = strings.TrimSpace(list)
	if list == "" {
		return nil
	}
	var out []string
	for {
		loc := sep.FindStringIndex(list)
		if loc == nil {
			return append(out, strings.TrimSpace(list))
		}
		out = append(out, strings.TrimSpace(list[:loc[0]]))
		list = strings.TrimLeft(list[loc[0]+1:], " \t")
	}
}

// Join is Split's inverse.
func Join(urls []string) string { return strings.Join(urls, ",") }

// First returns the list's first URL ("" for an empty list): where a
// caller that talks to one node at a time starts.
func First(list string) string {
	if us := Split(list); len(us) > 0 {
		return us[0]
	}
	return ""
}

// Map applies f to every URL of list and joins the results; the first
// error stops it.
func Map(list string, f func(string) (string, error)) (string, error) {
	us := Split(list)
	for i, u := range us {
		var err error
		if us[i], err = f(u); err != nil {
			return "", err
		}
	}
	return Join(us), nil
}

// Check reports whether list's URLs are nodes of one broker as a client
// sees it: at least one, each with a scheme and host, all with the same
// scheme, user and vhost path. A client stamps its user on every message
// and declares its topology in one vhost, so nodes that differ there are a
// plan's mistake, not a cluster. Errors name the URL by position, never
// its text (it holds a password).
func Check(list string) error {
	us := Split(list)
	if len(us) == 0 {
		return errors.New("no broker URL")
	}
	var first *url.URL
	for i, raw := range us {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("broker URL %d of %d: want scheme://user:pass@host:port/vhost", i+1, len(us))
		}
		if first == nil {
			first = u
			continue
		}
		switch {
		case u.Scheme != first.Scheme:
			return fmt.Errorf("broker URL %d of %d: scheme %s differs from the first URL's %s", i+1, len(us), u.Scheme, first.Scheme)
		case u.User.Username() != first.User.Username():
			return fmt.Errorf("broker URL %d of %d: user differs from the first URL's (one client, one user)", i+1, len(us))
		case strings.TrimPrefix(u.Path, "/") != strings.TrimPrefix(first.Path, "/"):
			return fmt.Errorf("broker URL %d of %d: vhost differs from the first URL's", i+1, len(us))
		}
	}
	return nil
}
