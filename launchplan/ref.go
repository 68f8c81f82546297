package launchplan

import (
	"fmt"
	"nightshift/internal/nsenv"
	"os"
	"sort"
	"strings"
)

// RefKind says what a reference names.
type RefKind int

const (
	// RefService is ${svc.attr}: an attribute of a service in an earlier level.
	RefService RefKind = iota
	// RefSelf is ${.attr}: an attribute of the service being booted.
	RefSelf
	// RefGlobal is ${global.name}: a merged global.
	RefGlobal
	// RefEnv is ${env.NAME}: a variable of the launching environment.
	RefEnv
)

func (k RefKind) String() string {
	switch k {
	case RefService:
		return "service"
	case RefSelf:
		return "self"
	case RefGlobal:
		return "global"
	case RefEnv:
		return "env"
	}
	return fmt.Sprintf("RefKind(%d)", int(k))
}

// Ref is one ${...} reference. Service is empty unless Kind is RefService.
type Ref struct {
	Kind    RefKind
	Service string
	Name    string
}

// String renders the reference back in template syntax.
func (r Ref) String() string {
	switch r.Kind {
	case RefSelf:
		return "${." + r.Name + "}"
	case RefGlobal:
		return "${global." + r.Name + "}"
	case RefEnv:
		return "${env." + r.Name + "}"
	}
	return "${" + r.Service + "." + r.Name + "}"
}

// EnvRunSecret is the ${env.NAME} the launcher serves for every run: the
// run's signing secret (hex), for components that do not share the
// launching machine's home. It is never in the real environment (see
// bootlevel.Engine.RunEnv), so a plan may always reference it.
const EnvRunSecret = nsenv.RunSecret

// EnvCommandKey is the ${env.NAME} the launcher serves for every run: the
// seed (hex) of the run's Ed25519 command key, with which the controller and
// mgmt sign drain and control to sitters, for daemons that do not share the
// launching machine's home. Workers get only its public half.
const EnvCommandKey = nsenv.RunCommandKey

// The ${env.NAME}s the launcher serves for a run's TLS, for a broker and
// clients that do not share the launching machine's home: the run CA's
// certificate (PEM), a broker certificate and key from that CA (PEM), and the
// name the certificate carries (to verify when the broker is reached by an
// address). The CA's own key is never served.
const (
	EnvTLSCA         = nsenv.TLSCA
	EnvTLSBrokerCert = nsenv.TLSBrokerCert
	EnvTLSBrokerKey  = nsenv.TLSBrokerKey
	EnvTLSBrokerName = nsenv.TLSBrokerName
)

// IsRunEnv reports whether name is served per run by the launcher (see
// bootlevel.Engine.RunEnv) rather than read from the environment.
func IsRunEnv(name string) bool {
	switch name {
	case EnvRunSecret, EnvCommandKey, EnvTLSCA, EnvTLSBrokerCert, EnvTLSBrokerKey, EnvTLSBrokerName:
		return true
	}
	return false
}

// Words that cannot be service names because they select another RefKind.
const (
	refGlobal = "global"
	refEnv    = "env"
)

// segment is a literal run of text or a reference.
type segment struct {
	lit string
	ref *Ref
}

// parseTemplate splits tmpl into literals and references. "$$" is a literal
// "$"; a "$" not followed by "{" or "$" is literal too, so that ordinary
// text such as "costs $5" needs no escaping. Substituted values are never
// rescanned, which keeps a "${" inside a boot output from being interpreted.
func parseTemplate(tmpl string) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '$' || i+1 >= len(tmpl) || (tmpl[i+1] != '$' && tmpl[i+1] != '{') {
			lit.WriteByte(c)
			continue
		}
		if tmpl[i+1] == '$' {
			lit.WriteByte('$')
			i++
			continue
		}
		end := strings.IndexByte(tmpl[i+2:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unterminated ${ at offset %d", i)
		}
		body := tmpl[i+2 : i+2+end]
		ref, err := parseRef(body)
		if err != nil {
			return nil, err
		}
		flush()
		segs = append(segs, segment{ref: &ref})
		i += 2 + end
	}
	flush()
	return segs, nil
}

func parseRef(body string) (Ref, error) {
	if strings.Contains(body, "${") {
		return Ref{}, fmt.Errorf("reference ${%s}: references cannot be nested", body)
	}
	dot := strings.IndexByte(body, '.')
	if dot < 0 {
		return Ref{}, fmt.Errorf("reference ${%s}: want ${service.attr}, ${.attr}, ${global.name} or ${env.NAME}", body)
	}
	owner, name := body[:dot], body[dot+1:]
	if name == "" {
		return Ref{}, fmt.Errorf("reference ${%s}: empty attribute name", body)
	}
	if !validRefName(name) {
		return Ref{}, fmt.Errorf("reference ${%s}: attribute name %q may only hold letters, digits, '_' and '-'", body, name)
	}
	if owner != "" && !validRefName(owner) {
		return Ref{}, fmt.Errorf("reference ${%s}: service name %q may only hold letters, digits, '_' and '-'", body, owner)
	}
	switch owner {
	case "":
		return Ref{Kind: RefSelf, Name: name}, nil
	case refGlobal:
		return Ref{Kind: RefGlobal, Name: name}, nil
	case refEnv:
		return Ref{Kind: RefEnv, Name: name}, nil
	}
	return Ref{Kind: RefService, Service: owner, Name: name}, nil
}

func validRefName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// References returns the references in tmpl in order of appearance,
// or a syntax error (unterminated "${", missing or empty parts).
func References(tmpl string) ([]Ref, error) {
	segs, err := parseTemplate(tmpl)
	if err != nil {
		return nil, err
	}
	var refs []Ref
	for _, s := range segs {
		if s.ref != nil {
			refs = append(refs, *s.ref)
		}
	}
	return refs, nil
}

// Scope is what references resolve against when a service boots.
type Scope struct {
	// Self holds the service's own attributes known so far.
	Self map[string]string
	// Service returns an attribute of an earlier service.
	Service func(svc, attr string) (string, bool)
	Globals map[string]string
	// Getenv reads the launching environment; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
}

func (s Scope) lookup(r Ref) (string, bool) {
	switch r.Kind {
	case RefSelf:
		v, ok := s.Self[r.Name]
		return v, ok
	case RefGlobal:
		v, ok := s.Globals[r.Name]
		return v, ok
	case RefEnv:
		if s.Getenv == nil {
			return os.LookupEnv(r.Name)
		}
		return s.Getenv(r.Name)
	}
	if s.Service == nil {
		return "", false
	}
	return s.Service(r.Service, r.Name)
}

// Expand substitutes every reference in tmpl. The error names each
// unresolved reference; values are never part of it, as they may be secrets.
func (s Scope) Expand(tmpl string) (string, error) {
	segs, err := parseTemplate(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	var missing []string
	for _, seg := range segs {
		if seg.ref == nil {
			b.WriteString(seg.lit)
		} else if v, ok := s.lookup(*seg.ref); ok {
			b.WriteString(v)
		} else {
			missing = append(missing, seg.ref.String())
		}
		if b.Len() > MaxExpandedLen {
			return "", ErrExpandedTooLong
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("unresolved reference %s", strings.Join(missing, ", "))
	}
	return b.String(), nil
}

// ErrExpandedTooLong is a value longer than MaxExpandedLen once expanded.
var ErrExpandedTooLong = fmt.Errorf("value expands to more than %d bytes (references to references?)", MaxExpandedLen)

// errServiceTooLong is a service whose values together expand past
// maxServiceExpanded.
var errServiceTooLong = fmt.Errorf("values expand to more than %d bytes together", maxServiceExpanded)

// attributeOrder returns the declared attribute names ordered so that every
// attribute comes after the attributes it references with ${.x}, or an error
// naming a cycle or a syntax error.
func attributeOrder(attrs map[string]string) ([]string, error) {
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	deps := make(map[string][]string, len(attrs))
	for _, k := range names {
		refs, err := References(attrs[k])
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		for _, r := range refs {
			if _, declared := attrs[r.Name]; r.Kind == RefSelf && declared {
				deps[k] = append(deps[k], r.Name)
			}
		}
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int, len(attrs))
	order := make([]string, 0, len(attrs))
	var stack []string
	var visit func(k string) error
	visit = func(k string) error {
		switch state[k] {
		case done:
			return nil
		case visiting:
			i := 0
			for stack[i] != k {
				i++
			}
			cycle := append(append([]string(nil), stack[i:]...), k)
			return fmt.Errorf("attribute cycle: %s", strings.Join(cycle, " -> "))
		}
		state[k] = visiting
		stack = append(stack, k)
		for _, d := range deps[k] {
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[k] = done
		order = append(order, k)
		return nil
	}
	for _, k := range names {
		if err := visit(k); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ExpandService returns a deep copy of svc with every template field
// expanded: attributes first (in dependency order, each one joining Self so
// later ones and all other fields may use it), then env values, workdir,
// program args, ssh host and user, and string values inside TypeConfig and
// EC2. svc itself is not modified.
func ExpandService(svc *Service, scope Scope) (*Service, error) {
	if svc == nil {
		return nil, fmt.Errorf("expand service: nil service")
	}
	out := svc.clone()
	self := make(map[string]string, len(scope.Self)+len(svc.Attributes))
	for k, v := range scope.Self {
		self[k] = v
	}
	scope.Self = self

	order, err := attributeOrder(svc.Attributes)
	if err != nil {
		return nil, fmt.Errorf("expand service %s: %w", svc.Name, err)
	}
	// Each value is bounded by Expand; all of them together here, or a
	// thousand attributes naming one big one would still add up.
	total := 0
	for _, k := range order {
		v, err := scope.Expand(svc.Attributes[k])
		if err == nil {
			if total += len(v); total > maxServiceExpanded {
				err = errServiceTooLong
			}
		}
		if err != nil {
			return nil, fmt.Errorf("expand service %s: attributes.%s: %w", svc.Name, k, err)
		}
		out.Attributes[k] = v
		self[k] = v
	}

	expand := func(field string, p *string) error {
		v, err := scope.Expand(*p)
		if err != nil {
			return fmt.Errorf("expand service %s: %s: %w", svc.Name, field, err)
		}
		if total += len(v); total > maxServiceExpanded {
			return fmt.Errorf("expand service %s: %s: %w", svc.Name, field, errServiceTooLong)
		}
		*p = v
		return nil
	}
	for _, k := range sortedKeys(out.Env) {
		v := out.Env[k]
		if err := expand("env."+k, &v); err != nil {
			return nil, err
		}
		out.Env[k] = v
	}
	if err := expand("workdir", &out.WorkDir); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		prog *Program
	}{{"boot", out.Boot}, {"ready", out.Ready}, {"terminate", out.Terminate}} {
		if p.prog == nil {
			continue
		}
		for i := range p.prog.Args {
			if err := expand(fmt.Sprintf("%s.args[%d]", p.name, i), &p.prog.Args[i]); err != nil {
				return nil, err
			}
		}
	}
	if out.SSH != nil {
		if err := expand("ssh.host", &out.SSH.Host); err != nil {
			return nil, err
		}
		if err := expand("ssh.user", &out.SSH.User); err != nil {
			return nil, err
		}
	}
	if err := expandTree("config", out.TypeConfig, func(field string, p *string) error {
		return expand(field, p)
	}); err != nil {
		return nil, err
	}
	if err := expandTree("ec2", out.EC2, func(field string, p *string) error {
		return expand(field, p)
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// expandTree expands every string inside a raw TOML value in place. The
// value must be a deep copy the caller owns.
func expandTree(field string, v any, expand func(field string, p *string) error) error {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(t) {
			if s, ok := t[k].(string); ok {
				if err := expand(field+"."+k, &s); err != nil {
					return err
				}
				t[k] = s
				continue
			}
			if err := expandTree(field+"."+k, t[k], expand); err != nil {
				return err
			}
		}
	case []any:
		for i := range t {
			f := fmt.Sprintf("%s[%d]", field, i)
			if s, ok := t[i].(string); ok {
				if err := expand(f, &s); err != nil {
					return err
				}
				t[i] = s
				continue
			}
			if err := expandTree(f, t[i], expand); err != nil {
				return err
			}
		}
	case []map[string]any:
		for i := range t {
			if err := expandTree(fmt.Sprintf("%s[%d]", field, i), t[i], expand); err != nil {
				return err
			}
		}
	}
	return nil
}

// walkStrings calls fn for every string inside a raw TOML value.
func walkStrings(field string, v any, fn func(field, s string)) {
	walkStringsIf(field, v, func(string) bool { return true }, fn)
}

// walkStringsIf is walkStrings for the strings want accepts; field names
// are built only for those, which matters for big arrays.
func walkStringsIf(field string, v any, want func(string) bool, fn func(field, s string)) {
	walkLazy(func() string { return field }, v, want, fn)
}

func walkLazy(field func() string, v any, want func(string) bool, fn func(field, s string)) {
	switch t := v.(type) {
	case string:
		if want(t) {
			fn(field(), t)
		}
	case map[string]any:
		for _, k := range sortedKeys(t) {
			walkLazy(func() string { return field() + "." + k }, t[k], want, fn)
		}
	case []any:
		for i, e := range t {
			walkLazy(func() string { return fmt.Sprintf("%s[%d]", field(), i) }, e, want, fn)
		}
	case []map[string]any:
		for i, e := range t {
			walkLazy(func() string { return fmt.Sprintf("%s[%d]", field(), i) }, e, want, fn)
		}
	}
}

// mayReference says whether s can hold a reference at all: most strings
// cannot, and need no parse.
func mayReference(s string) bool { return strings.Contains(s, "${") }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// clone deep-copies a Service so expansion never aliases the plan.
func (s *Service) clone() *Service {
	out := *s
	out.TypeConfig = cloneTable(s.TypeConfig)
	out.EC2 = cloneTable(s.EC2)
	out.Boot = s.Boot.clone()
	out.Ready = s.Ready.clone()
	out.Terminate = s.Terminate.clone()
	out.Env = cloneStrings(s.Env)
	out.Attributes = cloneStrings(s.Attributes)
	out.Exports = append([]string(nil), s.Exports...)
	if s.SSH != nil {
		ssh := *s.SSH
		out.SSH = &ssh
	}
	return &out
}

func (p *Program) clone() *Program {
	if p == nil {
		return nil
	}
	out := *p
	out.Args = append([]string(nil), p.Args...)
	return &out
}

func cloneStrings(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneTable(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return cloneValue(m).(map[string]any)
}

func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cloneValue(e)
		}
		return out
	case []map[string]any:
		out := make([]map[string]any, len(t))
		for i, e := range t {
			out[i] = cloneValue(e).(map[string]any)
		}
		return out
	}
	return v
}
