package redact

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// MinLen is the shortest value a Redactor replaces wherever it occurs.
// Shorter "secrets" (a password "ab", say) would blank out ordinary words
// and numbers all over the output while protecting nothing: a value that
// short falls to guessing anyway. They are still hidden where a key name
// (Value, Map) or a URL's structure (String) says they are secret.
const MinLen = 4

// minLineLen is the shortest line of a multi-line secret that is hunted on
// its own: a short line (the tail of a PEM body) is no secret by itself.
const minLineLen = 16

// Redactor replaces known secret values, and the encoded forms in which the
// project hands them out, by Marker; after that it applies String, so URL
// passwords and key ids are removed too. Values are added as they become
// known (a service's exported password, a per-worker broker password), so a
// Redactor is shared by the code that learns secrets and the code that
// prints. It is safe for concurrent use; the nil Redactor knows no values
// and only applies String.
type Redactor struct {
	mu     sync.Mutex
	values map[string]bool
	keys   map[string]bool   // IsSecretKey by key, since AddAttrs runs on every record write
	rep    *strings.Replacer // built lazily from values, longest first
}

// NewRedactor returns a Redactor that knows values (see Add).
func NewRedactor(values ...string) *Redactor {
	r := &Redactor{values: map[string]bool{}}
	r.Add(values...)
	return r
}

// Add makes each value (of at least MinLen bytes) secret, together with the
// forms in which it may be written: percent-encoded as in a URL's userinfo,
// path or query, and escaped inside a JSON string.
func (r *Redactor) Add(values ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if len(v) < MinLen || r.values[v] {
			continue
		}
		forms := []string{v, url.QueryEscape(v), url.PathEscape(v), strings.TrimPrefix(url.UserPassword("", v).String(), ":")}
		if b, err := json.Marshal(v); err == nil {
			forms = append(forms, string(b[1:len(b)-1]))
		}
		// A multi-line secret (a PEM key) is printed line by line as often
		// as whole, and logs are shown a line at a time: each long enough
		// line is secret too, PEM armor aside.
		if strings.ContainsRune(v, '\n') {
			for _, l := range strings.Split(v, "\n") {
				l = strings.TrimSpace(l)
				if len(l) >= minLineLen && !strings.HasPrefix(l, "-----") {
					forms = append(forms, l)
				}
			}
		}
		for _, f := range forms {
			if len(f) >= MinLen && !r.values[f] {
				if r.values == nil {
					r.values = map[string]bool{}
				}
				r.values[f] = true
				r.rep = nil
			}
		}
	}
}

// AddBytes makes a binary secret (such as the run's HMAC key) secret in the
// text encodings it can take: hex in either case and base64 in its four
// alphabets and paddings.
func (r *Redactor) AddBytes(b []byte) {
	if len(b) == 0 {
		return
	}
	h := hex.EncodeToString(b)
	r.Add(h, strings.ToUpper(h),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
}

// AddAttrs learns the secrets in a set of key/value pairs: the value of
// every key that names a secret, and the password of every URL value.
func (r *Redactor) AddAttrs(m map[string]string) {
	for k, v := range m {
		if r.secretKey(k) {
			r.Add(v)
		}
		r.AddURLPasswords(v)
	}
}

func (r *Redactor) secretKey(k string) bool {
	if r == nil {
		return IsSecretKey(k)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	secret, known := r.keys[k]
	if !known {
		secret = IsSecretKey(k)
		if r.keys == nil {
			r.keys = map[string]bool{}
		}
		r.keys[k] = secret
	}
	return secret
}

// AddURLPasswords learns the passwords of the URLs written in s.
func (r *Redactor) AddURLPasswords(s string) {
	if !strings.Contains(s, "@") {
		return
	}
	for _, m := range urlWithUserinfo.FindAllStringSubmatch(s, -1) {
		r.Add(m[2])
		if p, err := url.PathUnescape(m[2]); err == nil {
			r.Add(p)
		}
	}
}

// Len is how many forms of secrets r replaces.
func (r *Redactor) Len() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.values)
}

// String removes every known secret from s, then applies String.
func (r *Redactor) String(s string) string {
	if rep := r.replacer(); rep != nil {
		s = rep.Replace(s)
	}
	return String(s)
}

// Value is String for a value whose key may name a secret.
func (r *Redactor) Value(key, value string) string {
	if IsSecretKey(key) && value != "" {
		return Marker
	}
	return r.String(value)
}

// Map returns a copy of m with every value passed through Value.
func (r *Redactor) Map(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = r.Value(k, v)
	}
	return out
}

func (r *Redactor) replacer() *strings.Replacer {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rep != nil || len(r.values) == 0 {
		return r.rep
	}
	list := make([]string, 0, len(r.values))
	for v := range r.values {
		list = append(list, v)
	}
	// strings.Replacer tries patterns in argument order at each position:
	// longest first, so a secret that contains another is replaced whole.
	sort.Slice(list, func(i, j int) bool {
		if len(list[i]) != len(list[j]) {
			return len(list[i]) > len(list[j])
		}
		return list[i] < list[j]
	})
	pairs := make([]string, 0, 2*len(list))
	for _, v := range list {
		pairs = append(pairs, v, Marker)
	}
	r.rep = strings.NewReplacer(pairs...)
	return r.rep
}
