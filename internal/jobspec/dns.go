package jobspec

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DNSKey is the job key of the optional dns table: the Route 53 records
// that follow the job's workers (docs/jobs.md).
const DNSKey = "dns"

// DNS is a job's dns table. Name and Pool are templates over ${job},
// ${run} and (Name only, where it is required) ${index}; in a plan they are
// written $${job} and so on, since ${...} there is a plan reference.
type DNS struct {
	// Zone is the hosted zone: its id, or its name.
	Zone string `json:"zone"`
	// Name is each worker's record name template.
	Name string `json:"name"`
	// TTL is the records' time to live, in seconds.
	TTL int64 `json:"ttl"`
	// Address is which of the worker's addresses the record holds:
	// "private" (the default) or "public".
	Address string `json:"address"`
	// Pool, when set, is the name of one record listing every worker's
	// address (multivalue answers), for simple discovery.
	Pool string `json:"pool,omitempty"`
}

// Bounds and defaults of the dns table.
const (
	DefaultDNSTTL = 60
	MaxDNSTTL     = 86400
	AddressPriv   = "private"
	AddressPublic = "public"
)

var placeholder = regexp.MustCompile(`\$\{([^}]*)\}`)

// label is one DNS label as Nightshift writes it: lower case, letters,
// digits and inner hyphens.
var label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// parseDNS reads a job's dns table; errors name the key (dns.zone, ...).
func parseDNS(v any) (*DNS, error) { return parseDNSTable(v, false) }

// ParseServiceDNS reads an ec2 service's dns table (the `ec2` table's
// `dns` key): one A record for the service's instance, kept while it
// runs. Its name is a template over ${service} and ${run} (in a plan
// $${service}, $${run}); it has no ${index} and no pool, a service being
// one instance.
func ParseServiceDNS(v any) (*DNS, error) { return parseDNSTable(v, true) }

// RenderServiceName is a service's DNS name: tmpl with ${service} and
// ${run} filled in, as RenderName does a job's.
func RenderServiceName(tmpl, service, run string) (string, error) {
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		if m[1] != "service" && m[1] != "run" {
			return "", fmt.Errorf("%q: unknown placeholder ${%s} (want ${service}, ${run})", tmpl, m[1])
		}
	}
	return RenderName(strings.ReplaceAll(tmpl, "${service}", "${job}"), service, run, 0)
}

func parseDNSTable(v any, service bool) (*DNS, error) {
	t, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("key %s: want a table, got %s", DNSKey, jsonType(v))
	}
	d := &DNS{TTL: DefaultDNSTTL, Address: AddressPriv}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v := t[k]
		switch k {
		case "pool":
			if service {
				return nil, fmt.Errorf("key dns.pool: a service is one instance: it has no pool record")
			}
			fallthrough
		case "zone", "name", "address":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("key dns.%s: want a string, got %s", k, jsonType(v))
			}
			switch k {
			case "zone":
				d.Zone = strings.TrimSpace(s)
			case "name":
				d.Name = s
			case "address":
				d.Address = s
			case "pool":
				d.Pool = s
			}
		case "ttl":
			n, err := integer(v)
			if err != nil || n < 1 || n > MaxDNSTTL {
				return nil, fmt.Errorf("key dns.ttl: want seconds from 1 to %d, got %v", MaxDNSTTL, v)
			}
			d.TTL = n
		default:
			return nil, fmt.Errorf("key dns.%s: unknown key (dns has zone, name, ttl, address, pool)", k)
		}
	}
	if d.Zone == "" {
		return nil, fmt.Errorf("key dns.zone: required (a Route 53 hosted zone id or name)")
	}
	if d.Address != AddressPriv && d.Address != AddressPublic {
		return nil, fmt.Errorf("key dns.address: %q: want %q or %q", d.Address, AddressPriv, AddressPublic)
	}
	if d.Name == "" && service {
		return nil, fmt.Errorf("key dns.name: required (a template such as \"$${service}.$${run}.example.internal\")")
	}
	if d.Name == "" {
		return nil, fmt.Errorf("key dns.name: required (a template such as \"$${job}-$${index}.$${run}.example.internal\")")
	}
	if service {
		if _, err := RenderServiceName(d.Name, "service", "run"); err != nil {
			return nil, fmt.Errorf("key dns.name: %w", err)
		}
		return d, nil
	}
	if err := checkTemplate(d.Name, true); err != nil {
		return nil, fmt.Errorf("key dns.name: %w", err)
	}
	if d.Pool != "" {
		if err := checkTemplate(d.Pool, false); err != nil {
			return nil, fmt.Errorf("key dns.pool: %w", err)
		}
	}
	return d, nil
}

func integer(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case float64:
		if x != float64(int64(x)) {
			return 0, fmt.Errorf("not an integer")
		}
		return int64(x), nil
	case interface{ Int64() (int64, error) }: // json.Number
		return x.Int64()
	}
	return 0, fmt.Errorf("not a number")
}

// checkTemplate checks a name template by rendering it with sample values:
// only known placeholders, ${index} exactly when a worker's name needs it
// (so two workers never share a name), and a valid DNS name.
func checkTemplate(tmpl string, perWorker bool) error {
	hasIndex := false
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		switch m[1] {
		case "job", "run":
		case "index":
			hasIndex = true
		default:
			return fmt.Errorf("%q: unknown placeholder ${%s} (want ${job}, ${run}, ${index})", tmpl, m[1])
		}
	}
	switch {
	case perWorker && !hasIndex:
		return fmt.Errorf("%q: want ${index} in it, so each worker has a name of its own", tmpl)
	case !perWorker && hasIndex:
		return fmt.Errorf("%q: a pool record names every worker: ${index} has no value there", tmpl)
	}
	_, err := RenderName(tmpl, "job", "run", 0)
	return err
}

// RenderName is a worker's (or, without ${index}, the pool's) DNS name:
// tmpl with ${job}, ${run} and ${index} filled in, lower case, and checked
// as a DNS name. Underscores and dots of a job or run name become hyphens,
// since they are not DNS labels' letters.
func RenderName(tmpl, job, run string, index int) (string, error) {
	if index < 0 {
		return "", fmt.Errorf("dns name %q: index %d: want >= 0", tmpl, index)
	}
	clean := strings.NewReplacer("_", "-", ".", "-")
	var bad error
	name := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		switch m[2 : len(m)-1] {
		case "job":
			return clean.Replace(job)
		case "run":
			return clean.Replace(run)
		case "index":
			return strconv.Itoa(index)
		}
		bad = fmt.Errorf("dns name %q: unknown placeholder %s", tmpl, m)
		return m
	})
	if bad != nil {
		return "", bad
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if len(name) > 253 {
		return "", fmt.Errorf("dns name %q: %d characters, limit 253", name, len(name))
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("dns name %q: want a name inside a zone (two labels or more)", name)
	}
	for _, l := range labels {
		if !label.MatchString(l) {
			return "", fmt.Errorf("dns name %q: label %q: want 1-63 of [a-z0-9-], not starting or ending with -", name, l)
		}
	}
	return name, nil
}

// NextIndex is the DNS index a new worker of a job takes: the lowest one
// no live worker of the job holds. A worker that died frees its index, so
// its replacement takes it over, and with it the name; held may be in any
// order and hold duplicates.
func NextIndex(held []int) int {
	taken := make(map[int]bool, len(held))
	for _, i := range held {
		taken[i] = true
	}
	i := 0
	for taken[i] {
		i++
	}
	return i
}
