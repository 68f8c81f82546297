package launchplan

import (
	"fmt"
	"nightshift/internal/nsenv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Keys a plan may use. Anything else is reported as a typo.
var (
	topKeys     = []string{"name", "globals", "defaults", "level", "jobs", "alerts"}
	levelKeys   = []string{"parallelism", "file", "service"}
	includeKeys = []string{"parallelism", "service"}
	globalsKeys = []string{"globals"}
	serviceKeys = []string{
		"driver", "type", "config", "boot", "ready", "terminate", "env", "workdir",
		"timeout", "boot_timeout", "ready_timeout", "terminate_timeout",
		"ready_interval", "ready_start_period", "replica_count",
		"attributes", "exports", "ssh", "ec2",
	}
	programKeys = []string{"program", "args", "remote"}
	sshKeys     = []string{"host", "port", "user", "key_file", "known_hosts_file", "stage_dir"}
	drivers     = []string{DriverLocal, DriverSSH, DriverEC2}
	builtins    = []string{AttrHostname, AttrInstanceID, AttrLevel, AttrRun}
)

// Defaults for service keys that are not set.
const (
	DefaultBootTimeout      = 10 * time.Minute
	DefaultReadyTimeout     = 5 * time.Minute
	DefaultTerminateTimeout = 2 * time.Minute
	DefaultReadyInterval    = time.Second
	DefaultSSHPort          = 22
	DefaultStageDir         = "/tmp/nightshift"
	// MaxReplicas bounds replica_count; a plan is not the place for more.
	MaxReplicas = 1000
)

// decl is a declared service (before replica expansion) with what reference
// validation needs to know about it.
type decl struct {
	name     string
	level    int
	node     node
	svc      Service // template for the replicas
	replicas int
	// templates are every template field, with the node errors point at.
	templates []tmplField
	// attrNode is the attributes key, for cycle errors.
	attrNode node
	hasAttrs bool
	// known are the attribute names sorted, for errors; nil until needed.
	known []string
}

type tmplField struct {
	n    node
	text string
}

func (b *builder) build(plan *Plan, top *source) {
	for _, k := range top.keys() {
		if !contains(topKeys, k) {
			n, _ := top.node(k)
			b.errf(n, "unknown key%s", suggest(k, topKeys))
		}
	}

	// The plan's name is its runs' default name, so it is a run name.
	plan.Name = strings.TrimSuffix(filepath.Base(top.display), ".toml")
	if n, ok := top.node("name"); ok {
		if s, ok := b.str(n); ok {
			plan.Name = s
			if CheckRunName(s) != nil {
				b.errf(n, "plan name %s must match %s (it is the default run name)", strconv.Quote(s), RunNameSyntax)
			}
		}
	} else if CheckRunName(plan.Name) != nil {
		b.errs.add(top.filePos(), "name", "default plan name %s (from the file name) must match %s; set name = \"...\"", strconv.Quote(plan.Name), RunNameSyntax)
	}

	// plan_dir is a built-in global (rank 0: any plan, -G or -g value wins)
	// so that a plan can name files beside it in values that reach other
	// working directories, such as a worker's command.
	plan.Globals = map[string]string{GlobalPlanDir: plan.Dir}
	if n, ok := top.node("globals"); ok {
		b.globals(n, plan.Globals)
	}

	defaults := map[string]node{}
	if n, ok := top.node("defaults"); ok {
		if kids, ok := b.table(n, serviceKeys); ok {
			for _, c := range kids {
				defaults[c.path[len(c.path)-1]] = c
			}
		}
	}

	var decls []*decl
	if n, ok := top.node("level"); ok {
		decls = b.levels(plan, top, n, defaults)
	} else {
		b.errs.add(top.filePos(), "level", "plan has no [[level]] tables")
	}

	if n, ok := top.node("jobs"); ok {
		plan.Jobs = b.jobs(n)
	}
	if n, ok := top.node("alerts"); ok {
		plan.Alerts = b.alerts(n)
	}

	// -G files are read after the includes so that Hash covers files in the
	// documented order: top file, includes, -G files.
	for _, gf := range b.opts.GlobalFiles {
		b.globalFile(gf, plan.Globals)
	}
	for _, k := range sortedKeys(b.opts.Globals) {
		if !validRefName(k) {
			b.errs.add(Pos{File: "-g"}, keyPart(k), "global name may only hold letters, digits, '_' and '-'")
			continue
		}
		v := b.opts.Globals[k]
		if r, bad := badControl(v, true); bad {
			b.errs.add(Pos{File: "-g"}, k, "value holds control character %U; only tab and line breaks may appear", r)
			continue
		}
		if !utf8.ValidString(v) {
			b.errs.add(Pos{File: "-g"}, k, "value is not valid UTF-8")
			continue
		}
		if len(v) > MaxStringLen {
			b.errs.add(Pos{File: "-g"}, k, "value of %d bytes; at most %d", len(v), MaxStringLen)
			continue
		}
		plan.Globals[k] = v
		b.setGlobalPos(k, Pos{File: "-g"})
	}

	b.expandGlobals(plan.Globals)
	b.checkNames(decls)
	b.finishPlaceholders(plan)
	b.checkReferences(decls, plan.Globals)
}

// globals reads a [globals] table into dst (later calls override).
func (b *builder) globals(n node, dst map[string]string) {
	kids, ok := b.table(n, nil)
	if !ok {
		return
	}
	for _, c := range kids {
		k := c.path[len(c.path)-1]
		if !validRefName(k) {
			b.errf(c, "global name may only hold letters, digits, '_' and '-'")
			continue
		}
		if v, ok := b.scalar(c); ok {
			dst[k] = v
			b.setGlobalPos(k, c.pos())
		}
	}
}

func (b *builder) globalFile(path string, dst map[string]string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		b.errs.add(Pos{File: path}, "", "globals file: %v", err)
		return
	}
	data, err := readFile(abs, b.budget.bytes)
	if err != nil {
		b.errs.add(Pos{File: path}, "", "read globals file: %v", err)
		return
	}
	src := b.parseSource(path, abs, data)
	if src == nil {
		return
	}
	for _, k := range src.keys() {
		n, _ := src.node(k)
		if k != "globals" {
			b.errf(n, "unknown key%s; a globals file holds only a [globals] table", suggest(k, globalsKeys))
			continue
		}
		b.globals(n, dst)
	}
}

func (b *builder) levels(plan *Plan, top *source, n node, defaults map[string]node) []*decl {
	if _, single := n.val.(map[string]any); single {
		b.errf(n, "levels are an array of tables: write [[level]], not [level]")
		return nil
	}
	elems, ok := b.array(n)
	if !ok {
		return nil
	}
	if len(elems) == 0 {
		b.errf(n, "plan has no levels")
	}
	var decls []*decl
	for i, e := range elems {
		idx := i + 1
		ln := n
		if i < len(top.levelLocs) && top.levelLocs[i] != nil {
			ln.loc = top.levelLocs[i]
		}
		ln.key = fmt.Sprintf("level[%d]", idx)
		ln.val = e.val
		lvl := Level{Index: idx, Pos: ln.pos()}
		kids, ok := b.table(ln, levelKeys)
		if !ok {
			plan.Levels = append(plan.Levels, lvl)
			continue
		}
		var fileNode, svcNode, parNode *node
		for j := range kids {
			switch kids[j].path[len(kids[j].path)-1] {
			case "file":
				fileNode = &kids[j]
			case "service":
				svcNode = &kids[j]
			case "parallelism":
				parNode = &kids[j]
			}
		}
		if fileNode != nil && svcNode != nil {
			b.errf(*fileNode, "a level has either file or services, not both")
		}
		var svcs []node
		switch {
		case fileNode != nil && svcNode == nil:
			f, ok := b.str(*fileNode)
			if !ok {
				break
			}
			inc := b.includeSource(top, *fileNode, f)
			if inc == nil {
				break
			}
			svcs, parNode = b.include(inc, idx, parNode)
			if len(svcs) == 0 {
				b.errs.add(inc.filePos(), ln.key, "level file has no [service.NAME] tables")
			}
		case svcNode != nil:
			if kids, ok := b.table(*svcNode, nil); ok {
				svcs = kids
				sortNodes(svcs)
				if len(svcs) == 0 {
					b.errf(ln, "level has no services")
				}
			}
		default:
			b.errf(ln, "level has no services; add [level.service.NAME] tables or file = \"...\"")
		}
		if parNode != nil {
			if p, ok := b.integer(*parNode); ok {
				if p < 0 {
					b.errf(*parNode, "parallelism must be 0 (unbounded) or more, got %d", p)
				} else {
					lvl.Parallelism = int(min(p, 1<<20))
				}
			}
		}
		for _, sn := range svcs {
			d := b.service(idx, sn, defaults)
			if d == nil {
				continue
			}
			decls = append(decls, d)
			lvl.Services = append(lvl.Services, d.expand()...)
		}
		plan.Levels = append(plan.Levels, lvl)
	}
	return decls
}

// include returns the service nodes of a level file and the parallelism
// node to use (the including level's or the file's; both is an error).
func (b *builder) include(inc *source, idx int, par *node) ([]node, *node) {
	prefix := fmt.Sprintf("level[%d]", idx)
	var svcs []node
	for _, k := range inc.keys() {
		n, _ := inc.node(k)
		n.key = prefix + "." + k
		switch k {
		case "service":
			if kids, ok := b.table(n, nil); ok {
				svcs = kids
				sortNodes(svcs)
			}
		case "parallelism":
			if par != nil {
				b.errf(n, "parallelism is also set by the including level at %s", par.pos())
				continue
			}
			nn := n
			par = &nn
		default:
			b.errf(n, "unknown key%s; a level file holds parallelism and [service.NAME] tables", suggest(k, includeKeys))
		}
	}
	return svcs, par
}

// expand turns a declaration into its services (replicas when count > 1).
func (d *decl) expand() []Service {
	if d.replicas <= 1 {
		s := d.svc.clone()
		s.Replica = -1
		return []Service{*s}
	}
	out := make([]Service, d.replicas)
	for i := range out {
		s := d.svc.clone()
		s.Name = fmt.Sprintf("%s-%d", d.name, i)
		s.Replica = i
		s.ReplicaOf = d.name
		out[i] = *s
	}
	return out
}

// service decodes one [service.NAME] table with defaults applied.
func (b *builder) service(level int, n node, defaults map[string]node) *decl {
	name := n.path[len(n.path)-1]
	d := &decl{name: name, level: level, node: n, replicas: 1}
	if !namePattern.MatchString(name) {
		b.errf(n, "service name %q must match %s", name, namePattern)
	} else if name == refGlobal || name == refEnv {
		b.errf(n, "service name %q is reserved: ${%s.x} means something else", name, name)
	}
	kids, ok := b.table(n, serviceKeys)
	if !ok {
		return nil
	}
	own := make(map[string]node, len(kids))
	for _, c := range kids {
		own[c.path[len(c.path)-1]] = c
	}
	get := func(k string) (node, bool) {
		if c, ok := own[k]; ok {
			return c, true
		}
		c, ok := defaults[k]
		return c, ok
	}
	if c, ok := get("replica_count"); ok {
		if v, ok := b.integer(c); ok {
			switch {
			case v < 1:
				b.errf(c, "replica_count must be at least 1, got %d", v)
			case v > MaxReplicas:
				b.errf(c, "replica_count must be at most %d, got %d", MaxReplicas, v)
			default:
				d.replicas = int(v)
				if v > 1 && len(fmt.Sprintf("%s-%d", name, v-1)) > 63 {
					b.errf(n, "replica name %s-%d is longer than 63 characters", name, v-1)
				}
			}
		}
	}
	// Charge what this service will hold, [defaults] and replicas
	// included, before any of it is copied: a big [defaults] table under
	// many services, or a big service with many replicas, multiplies.
	if b.services > MaxServices || b.weight > maxWeight {
		return nil // said once already; more would be noise
	}
	if b.services += d.replicas; b.services > MaxServices {
		b.errf(n, "more than %d services (replicas included)", MaxServices)
		return nil
	}
	weight := 0
	for _, k := range serviceKeys {
		// Both sides: tables such as config and env are merged.
		if c, ok := own[k]; ok {
			weight += countValues(c.val, MaxValues)
		}
		if c, ok := defaults[k]; ok {
			w, ok := b.defaultWeight[k]
			if !ok {
				w = countValues(c.val, MaxValues)
				b.defaultWeight[k] = w
			}
			weight += w
		}
	}
	if b.weight += weight * d.replicas; b.weight > maxWeight {
		b.errf(n, "the services hold more than %d values once [defaults] and replicas are applied", maxWeight)
		return nil
	}

	svc := &d.svc
	svc.Name = name
	svc.Level = level
	svc.Pos = n.pos()
	svc.Driver = DriverLocal
	if c, ok := get("driver"); ok {
		if s, ok := b.str(c); ok {
			if contains(drivers, s) {
				svc.Driver = s
			} else {
				b.errf(c, "unknown driver %q; want local, ssh or ec2%s", s, suggest(s, drivers))
			}
		}
	}
	if c, ok := get("type"); ok {
		if s, ok := b.str(c); ok {
			switch {
			case contains(b.opts.Types, s):
				svc.Type = s
			case len(b.opts.Types) == 0:
				b.errf(c, "unknown type %q: no built-in types are registered", s)
			default:
				b.errf(c, "unknown type %q; want %s%s", s, oneOf(b.opts.Types), suggest(s, b.opts.Types))
			}
		}
	}
	if cfg, cn, ok := b.mergedTable("config", own, defaults, nil); ok {
		if svc.Type == "" {
			b.errf(cn, "config is only used by a built-in type; set type")
		}
		svc.TypeConfig = rawTable(cfg)
		d.addTemplates(cfg)
		b.typeReplicas(d, cfg)
		b.typeCheck(d, cfg, cn)
	}

	for _, p := range []struct {
		key  string
		dest **Program
	}{{"boot", &svc.Boot}, {"ready", &svc.Ready}, {"terminate", &svc.Terminate}} {
		if c, ok := get(p.key); ok {
			if prog := b.program(c, svc.Driver); prog != nil {
				*p.dest = prog
				for _, a := range prog.Args {
					d.templates = append(d.templates, tmplField{c, a})
				}
			}
		}
	}
	if svc.Type == "" && svc.Boot == nil && svc.Ready == nil {
		if _, hasBoot := get("boot"); !hasBoot {
			if _, hasReady := get("ready"); !hasReady {
				b.errf(n, "a service needs a boot or ready program (or a built-in type)")
			}
		}
	}

	if env, _, ok := b.mergedTable("env", own, defaults, nil); ok {
		svc.Env = map[string]string{}
		for _, c := range env {
			k := c.path[len(c.path)-1]
			switch {
			case k == "" || strings.ContainsAny(k, "=\x00"):
				b.errf(c, "bad environment variable name %q", k)
				continue
			case strings.HasPrefix(k, nsenv.Prefix):
				b.errf(c, "environment variables NIGHTSHIFT_* are set by the engine")
				continue
			}
			if v, ok := b.scalar(c); ok {
				svc.Env[k] = v
				d.templates = append(d.templates, tmplField{c, v})
			}
		}
	}
	if c, ok := get("workdir"); ok {
		if s, ok := b.str(c); ok {
			svc.WorkDir = s
			d.templates = append(d.templates, tmplField{c, s})
		}
	}

	svc.BootTimeout = b.timeout(own, defaults, "boot_timeout", DefaultBootTimeout)
	svc.ReadyTimeout = b.timeout(own, defaults, "ready_timeout", DefaultReadyTimeout)
	svc.TerminateTimeout = b.timeout(own, defaults, "terminate_timeout", DefaultTerminateTimeout)
	svc.ReadyInterval = DefaultReadyInterval
	if c, ok := get("ready_interval"); ok {
		if v, ok := b.duration(c, true); ok {
			svc.ReadyInterval = v
		}
	}
	if c, ok := get("ready_start_period"); ok {
		if v, ok := b.duration(c, false); ok {
			svc.ReadyStartPeriod = v
		}
	}

	if c, ok := get("exports"); ok {
		if elems, ok := b.array(c); ok {
			for _, e := range elems {
				s, ok := b.str(e)
				if !ok {
					continue
				}
				switch {
				case !validRefName(s):
					b.errf(e, "export name %q may only hold letters, digits, '_' and '-'", s)
				case contains(builtins, s):
					b.errf(e, "export %q is a built-in attribute", s)
				case contains(svc.Exports, s):
					b.errf(e, "export %q is listed twice", s)
				default:
					svc.Exports = append(svc.Exports, s)
				}
			}
		}
	}
	if attrs, an, ok := b.mergedTable("attributes", own, defaults, nil); ok {
		d.attrNode, d.hasAttrs = an, true
		svc.Attributes = map[string]string{}
		for _, c := range attrs {
			k := c.path[len(c.path)-1]
			switch {
			case !validRefName(k):
				b.errf(c, "attribute name may only hold letters, digits, '_' and '-'")
				continue
			case contains(builtins, k):
				b.errf(c, "attribute %q is a built-in and cannot be declared", k)
				continue
			case contains(svc.Exports, k):
				b.errf(c, "attribute %q is also listed in exports", k)
				continue
			}
			if v, ok := b.scalar(c); ok {
				svc.Attributes[k] = v
				d.templates = append(d.templates, tmplField{c, v})
			}
		}
	}

	b.ssh(d, own, defaults)
	if ec2, _, ok := b.mergedTable("ec2", own, defaults, nil); ok {
		svc.EC2 = rawTable(ec2)
		d.addTemplates(ec2)
	}
	return d
}

// addTemplates records every string in the raw table nodes that may hold a
// ${...} reference, each under its own key, for Expand to fill in at boot.
func (d *decl) addTemplates(nodes []node) {
	for _, c := range nodes {
		walkStringsIf(c.key, c.val, mayReference, func(field, s string) {
			f := c
			f.key = field
			d.templates = append(d.templates, tmplField{f, s})
		})
	}
}

// timeout resolves a timeout from the most specific key that is set:
// the service's own key, its own `timeout`, then the same in [defaults].
func (b *builder) timeout(own, defaults map[string]node, key string, def time.Duration) time.Duration {
	for _, c := range []struct {
		m map[string]node
		k string
	}{{own, key}, {own, "timeout"}, {defaults, key}, {defaults, "timeout"}} {
		if n, ok := c.m[c.k]; ok {
			if v, ok := b.duration(n, true); ok {
				return v
			}
			return def
		}
	}
	return def
}

// mergedTable merges a table-valued key of [defaults] and of the service,
// key by key, the service's entries winning. It returns the entries, the
// node to blame for the table as a whole, and whether either side set it.
func (b *builder) mergedTable(key string, own, defaults map[string]node, known []string) ([]node, node, bool) {
	var blame node
	merged := map[string]node{}
	found := false
	for _, m := range []map[string]node{defaults, own} {
		n, ok := m[key]
		if !ok {
			continue
		}
		found, blame = true, n
		kids, ok := b.table(n, known)
		if !ok {
			continue
		}
		for _, c := range kids {
			merged[c.path[len(c.path)-1]] = c
		}
	}
	if !found {
		return nil, blame, false
	}
	out := make([]node, 0, len(merged))
	for _, k := range sortedKeys(merged) {
		out = append(out, merged[k])
	}
	return out, blame, true
}

// typeReplicas applies a typed service's config.replicas (Options.Replicas):
// the service expands into replicas as with replica_count, which it may not
// be combined with.
func (b *builder) typeReplicas(d *decl, cfg []node) {
	if b.opts.Replicas == nil || d.svc.Type == "" {
		return
	}
	var at node
	found := false
	for _, c := range cfg {
		if c.path[len(c.path)-1] == "replicas" {
			at, found = c, true
		}
	}
	if !found {
		return
	}
	n, err := b.opts.Replicas(d.svc.Type, d.svc.TypeConfig)
	switch {
	case err != nil:
		b.errf(at, "%v", err)
	case n > 1 && d.replicas > 1:
		b.errf(at, "set with replica_count too; use one of them")
	case n > 1:
		if len(fmt.Sprintf("%s-%d", d.name, n-1)) > 63 {
			b.errf(at, "replica name %s-%d is longer than 63 characters", d.name, n-1)
			return
		}
		b.services += n - 1
		d.replicas = n
	}
}

// typeCheck applies Options.TypeCheck to a typed service's config, placing
// an error at the key it names ("config.KEY: ...") when the plan sets that
// key, else at the config table.
func (b *builder) typeCheck(d *decl, cfg []node, table node) {
	if b.opts.TypeCheck == nil || d.svc.Type == "" {
		return
	}
	err := b.opts.TypeCheck(d.svc.Type, d.svc.TypeConfig)
	if err == nil {
		return
	}
	msg, at := err.Error(), table
	if rest, ok := strings.CutPrefix(msg, "config."); ok {
		if key, why, ok := strings.Cut(rest, ": "); ok {
			for _, c := range cfg {
				if c.path[len(c.path)-1] == key {
					at, msg = c, why
				}
			}
		}
	}
	b.errf(at, "%s", msg)
}

func rawTable(nodes []node) map[string]any {
	m := make(map[string]any, len(nodes))
	for _, c := range nodes {
		m[c.path[len(c.path)-1]] = cloneValue(c.val)
	}
	return m
}

func (b *builder) ssh(d *decl, own, defaults map[string]node) {
	svc := &d.svc
	kids, blame, ok := b.mergedTable("ssh", own, defaults, sshKeys)
	if !ok {
		if svc.Driver == DriverSSH {
			b.errf(d.node, "driver ssh needs ssh.host")
		}
		return
	}
	if svc.Driver == DriverLocal {
		if _, isOwn := own["ssh"]; isOwn {
			b.errf(blame, "ssh is set but driver is local; set driver = \"ssh\"")
		}
		return
	}
	ssh := &SSH{Port: DefaultSSHPort, StageDir: DefaultStageDir}
	for _, c := range kids {
		switch c.path[len(c.path)-1] {
		case "host":
			if s, ok := b.str(c); ok {
				ssh.Host = s
				d.templates = append(d.templates, tmplField{c, s})
			}
		case "user":
			if s, ok := b.str(c); ok {
				ssh.User = s
				d.templates = append(d.templates, tmplField{c, s})
			}
		case "port":
			if p, ok := b.integer(c); ok {
				if p < 1 || p > 65535 {
					b.errf(c, "port %d is out of range 1-65535", p)
				} else {
					ssh.Port = int(p)
				}
			}
		case "key_file":
			if s, ok := b.str(c); ok {
				ssh.KeyFile = localPath(c.src.dir, s)
			}
		case "known_hosts_file":
			if s, ok := b.str(c); ok {
				ssh.KnownHostsFile = localPath(c.src.dir, s)
			}
		case "stage_dir":
			if s, ok := b.str(c); ok {
				if !strings.HasPrefix(s, "/") {
					b.errf(c, "stage_dir %q must be an absolute path on the target host", s)
				} else {
					ssh.StageDir = s
				}
			}
		}
	}
	if svc.Driver == DriverSSH && ssh.Host == "" {
		b.errf(blame, "driver ssh needs ssh.host")
	}
	svc.SSH = ssh
}

// localPath anchors a relative local path at the declaring file's directory;
// "~/..." is left for the engine to expand for the user who runs it.
func localPath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "~") {
		return p
	}
	return filepath.Join(dir, p)
}

// program decodes boot/ready/terminate: an argv array, a bare program path,
// or a table {program, args, remote}.
func (b *builder) program(n node, driver string) *Program {
	prog := &Program{Pos: n.pos()}
	var argNodes []node
	switch v := n.val.(type) {
	case string:
		if strings.ContainsAny(v, " \t\n") {
			b.errf(n, "program %q contains whitespace; a program is an argv array, never a shell string: write [\"prog\", \"arg\"]", v)
			return nil
		}
		prog.Path = v
	case []any:
		elems, _ := b.array(n)
		if len(elems) == 0 {
			b.errf(n, "empty program; want [program, args...]")
			return nil
		}
		s, ok := b.str(elems[0])
		if !ok {
			return nil
		}
		prog.Path = s
		argNodes = elems[1:]
	case map[string]any:
		kids, _ := b.table(n, programKeys)
		hasProgram := false
		for _, c := range kids {
			switch c.path[len(c.path)-1] {
			case "program":
				s, ok := b.str(c)
				if !ok {
					return nil
				}
				prog.Path, hasProgram = s, true
			case "args":
				elems, ok := b.array(c)
				if !ok {
					return nil
				}
				argNodes = elems
			case "remote":
				if r, ok := b.boolean(c); ok {
					prog.Remote = r
				}
			}
		}
		if !hasProgram {
			b.errf(n, "missing program")
			return nil
		}
	default:
		b.errf(n, "want [program, args...] or {program = ..., args = [...]}, got %s", typeName(n.val))
		return nil
	}
	for _, a := range argNodes {
		s, ok := b.scalar(a)
		if !ok {
			return nil
		}
		prog.Args = append(prog.Args, s)
	}
	if prog.Path == "" {
		b.errf(n, "empty program path")
		return nil
	}
	if !b.resolveProgram(n, prog, driver) {
		return nil
	}
	return prog
}

// resolveProgram makes prog.Path absolute and checks that it exists.
func (b *builder) resolveProgram(n node, prog *Program, driver string) bool {
	if prog.Remote {
		return true
	}
	if !strings.Contains(prog.Path, "/") {
		if driver != DriverLocal {
			b.errf(n, "program %q: driver %s uploads the program, so name a local file (./%s) or set remote = true to use the target's PATH", prog.Path, driver, prog.Path)
			return false
		}
		found, err := b.opts.LookPath(prog.Path)
		if err != nil {
			b.errf(n, "program %q not found in PATH", prog.Path)
			return false
		}
		if abs, err := filepath.Abs(found); err == nil {
			found = abs
		}
		prog.Path = found
		return true
	}
	p := prog.Path
	rel := filepath.Dir(n.src.display)
	if !filepath.IsAbs(p) {
		p = filepath.Join(n.src.dir, p)
	}
	st, err := os.Stat(p)
	switch {
	case err != nil && os.IsNotExist(err):
		b.errf(n, "program %s does not exist (relative paths start at %s)", prog.Path, rel)
		return false
	case err != nil:
		b.errf(n, "program %s: %v", prog.Path, err)
		return false
	case !st.Mode().IsRegular():
		b.errf(n, "program %s is not a regular file", prog.Path)
		return false
	case driver == DriverLocal && st.Mode().Perm()&0o111 == 0:
		b.errf(n, "program %s is not executable (chmod +x it)", prog.Path)
		return false
	}
	prog.Path = p
	return true
}

func (b *builder) jobs(n node) []Job {
	kids, ok := b.table(n, nil)
	if !ok {
		return nil
	}
	sortNodes(kids)
	var jobs []Job
	for _, c := range kids {
		name := c.path[len(c.path)-1]
		if !namePattern.MatchString(name) {
			b.errf(c, "job name %q must match %s", name, namePattern)
			continue
		}
		cfg, ok := c.val.(map[string]any)
		if !ok {
			b.errf(c, "want a table, got %s", typeName(c.val))
			continue
		}
		jobs = append(jobs, Job{Name: name, Pos: c.pos(), Config: cloneTable(cfg)})
	}
	return jobs
}

// checkNames reports duplicate service names, counting replica names.
func (b *builder) checkNames(decls []*decl) {
	type owner struct {
		d       *decl
		replica int
	}
	seen := map[string]owner{}
	for _, d := range decls {
		names := []string{d.name}
		if d.replicas > 1 {
			names = names[:0]
			for i := 0; i < d.replicas; i++ {
				names = append(names, fmt.Sprintf("%s-%d", d.name, i))
			}
		}
		for i, nm := range names {
			prev, dup := seen[nm]
			if !dup {
				r := -1
				if d.replicas > 1 {
					r = i
				}
				seen[nm] = owner{d, r}
				continue
			}
			switch {
			case prev.replica >= 0:
				b.errf(d.node, "service %q collides with replica %d of %q declared at %s", nm, prev.replica, prev.d.name, prev.d.node.pos())
			case d.replicas > 1:
				b.errf(d.node, "replica %q of %q collides with service %q declared at %s", nm, d.name, nm, prev.d.node.pos())
			default:
				b.errf(d.node, "duplicate service name %q (first declared at %s)", nm, prev.d.node.pos())
			}
		}
	}
}

// countValues counts the values in v, giving up past limit.
func countValues(v any, limit int) int {
	n := 1
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			if n > limit {
				break
			}
			n += countValues(e, limit-n)
		}
	case []any:
		for _, e := range t {
			if n > limit {
				break
			}
			n += countValues(e, limit-n)
		}
	case []map[string]any:
		for _, e := range t {
			if n > limit {
				break
			}
			n += countValues(e, limit-n)
		}
	}
	return n
}

// maxWeight bounds the values of every service together, counted once per
// replica and with [defaults] applied: what the plan becomes in memory.
const maxWeight = 4 * MaxValues

// checkReferences validates every template of every declared service.
func (b *builder) checkReferences(decls []*decl, globals map[string]string) {
	byName := map[string]*decl{}
	replicated := map[string]*decl{}
	var names []string
	for _, d := range decls {
		if d.replicas > 1 {
			replicated[d.name] = d
			for i := 0; i < d.replicas; i++ {
				nm := fmt.Sprintf("%s-%d", d.name, i)
				if _, ok := byName[nm]; !ok {
					byName[nm] = d
					names = append(names, nm)
				}
			}
			continue
		}
		if _, ok := byName[d.name]; !ok {
			byName[d.name] = d
			names = append(names, d.name)
		}
	}
	z := &sizer{b: b, byName: byName, globals: globals, memo: map[*decl]map[string]int{}}
	globalNames := sortedKeys(globals)
	for _, d := range decls {
		if b.errs.full() {
			b.errs.dropped++
			return
		}
		cyclic := false
		if d.hasAttrs {
			if _, err := attributeOrder(d.svc.Attributes); err != nil {
				b.errf(d.attrNode, "%v", err)
				cyclic = true
			}
		}
		total := 0
		for _, t := range d.templates {
			if b.errs.full() {
				break
			}
			refs, err := References(t.text)
			if err != nil {
				b.errf(t.n, "%v", err)
				continue
			}
			for _, r := range refs {
				if b.errs.full() {
					break
				}
				if msg := b.checkRef(d, r, byName, replicated, names, globalNames, globals); msg != "" {
					b.errf(t.n, "reference %s: %s", r, msg)
				}
			}
			if cyclic || len(refs) == 0 {
				total += len(t.text)
				continue
			}
			size := z.template(d, t.text)
			if size > MaxExpandedLen {
				b.errf(t.n, "expands to more than %d bytes (references to references)", MaxExpandedLen)
			}
			total += size
		}
		if total > maxServiceExpanded {
			b.errf(d.node, "the service's values expand to more than %d bytes together", maxServiceExpanded)
		}
	}
}

// maxServiceExpanded bounds all the values of one service after expansion.
const maxServiceExpanded = 4 * MaxExpandedLen

// sizer works out how long templates become once expanded, following
// references to references through the attributes they name, each once.
// Values known only at boot (exports, built-ins) count as empty here;
// Scope.Expand bounds them when they arrive.
type sizer struct {
	b       *builder
	byName  map[string]*decl
	globals map[string]string
	memo    map[*decl]map[string]int
}

func (z *sizer) template(d *decl, text string) int {
	segs, err := parseTemplate(text)
	if err != nil {
		return len(text)
	}
	total := 0
	for _, s := range segs {
		if total > MaxExpandedLen {
			break // saturate: the answer is "too long" either way
		}
		if s.ref == nil {
			total += len(s.lit)
			continue
		}
		switch r := s.ref; r.Kind {
		case RefSelf:
			total += z.attr(d, r.Name)
		case RefService:
			if t := z.byName[r.Service]; t != nil && t.level < d.level {
				total += z.attr(t, r.Name)
			}
		case RefGlobal:
			total += len(z.globals[r.Name])
		case RefEnv:
			v, _ := z.b.opts.Getenv(r.Name)
			total += len(v)
		}
	}
	return total
}

func (z *sizer) attr(d *decl, name string) int {
	m := z.memo[d]
	if m == nil {
		m = map[string]int{}
		z.memo[d] = m
	}
	if n, ok := m[name]; ok {
		return max(n, 0)
	}
	v, ok := d.svc.Attributes[name]
	if !ok {
		return 0
	}
	m[name] = -1 // a cycle, reported by attributeOrder, counts as empty
	n := z.template(d, v)
	m[name] = n
	return n
}

func (b *builder) checkRef(d *decl, r Ref, byName, replicated map[string]*decl, names, globalNames []string, globals map[string]string) string {
	switch r.Kind {
	case RefSelf:
		return b.attrProblem(d, "this service", r.Name)
	case RefGlobal:
		if _, ok := globals[r.Name]; !ok {
			return fmt.Sprintf("global %q is not set (set it in [globals], a -G file or with -g %s=VALUE)%s", r.Name, r.Name, b.suggest(r.Name, globalNames))
		}
		return ""
	case RefEnv:
		if _, ok := b.opts.Getenv(r.Name); !ok && !IsRunEnv(r.Name) {
			return fmt.Sprintf("environment variable %s is not set", r.Name)
		}
		return ""
	}
	t, ok := byName[r.Service]
	if !ok {
		if rep, ok := replicated[r.Service]; ok {
			return fmt.Sprintf("service %q has replica_count %d; reference one replica by name, e.g. ${%s-0.%s}", r.Service, rep.replicas, r.Service, r.Name)
		}
		return fmt.Sprintf("unknown service %q%s", r.Service, b.suggest(r.Service, names))
	}
	switch {
	case t.level == d.level:
		return fmt.Sprintf("service %q is in the same level %d; a service may only reference services in earlier levels", r.Service, t.level)
	case t.level > d.level:
		return fmt.Sprintf("service %q is in a later level %d; a service may only reference services in earlier levels", r.Service, t.level)
	}
	return b.attrProblem(t, fmt.Sprintf("service %q", r.Service), r.Name)
}

// attrProblem says why d has no attribute name, or "" when it has one.
func (b *builder) attrProblem(d *decl, who, name string) string {
	if contains(builtins, name) || contains(d.svc.Exports, name) {
		return ""
	}
	if _, ok := d.svc.Attributes[name]; ok {
		return ""
	}
	if d.known == nil {
		d.known = append(append(append([]string(nil), builtins...), sortedKeys(d.svc.Attributes)...), d.svc.Exports...)
		sort.Strings(d.known)
	}
	list := d.known
	more := ""
	if len(list) > maxListed {
		list, more = list[:maxListed], fmt.Sprintf(" and %d more", len(d.known)-maxListed)
	}
	return fmt.Sprintf("%s has no attribute %q; it has %s%s%s", who, name, strings.Join(list, ", "), more, b.suggest(name, d.known))
}

// maxListed bounds the names an error message lists.
const maxListed = 20

// suggest is the package's suggest for lists a plan makes as long as it
// likes (services, attributes, globals): past suggestWork comparisons in
// one load, errors come without "did you mean".
func (b *builder) suggest(word string, candidates []string) string {
	if b.suggestWork += len(candidates); b.suggestWork > suggestWork {
		return ""
	}
	return suggest(word, candidates)
}

// suggestWork bounds the name comparisons suggestions may cost per load.
const suggestWork = 200_000
