// Package ec2service runs launch-plan services on EC2 instances: Acquire
// launches (idempotently, by tag) and waits for a running instance with an
// address, the boot/ready/terminate programs then run on it over ssh, and
// Release terminates it. A plan may choose to run the ready check from the
// launching machine instead (for example a TCP connect to the instance).
package ec2service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/ec2"
	"nightshift/internal/jobspec"
	"nightshift/internal/route53dns"
	"nightshift/launchplan"
)

// Driver implements bootlevel.Driver for services with driver = "ec2".
type Driver struct {
	// Remote runs programs on the instance (the ssh driver).
	Remote bootlevel.Driver
	// Local runs programs on the launching machine: ready checks a plan asks
	// to run locally, and every step when tests replace ssh.
	Local bootlevel.Driver
	// AllStepsLocal replaces the ssh steps with local ones (tests against moto,
	// whose instances cannot be reached).
	AllStepsLocal bool
	// NewClient builds the EC2 client for a service's region and endpoint.
	NewClient func(ctx context.Context, cfg ec2.Config) (*ec2.Client, error)
	// NewDNS builds the Route 53 client of a service's dns table at an
	// endpoint ("" for AWS); default route53dns.NewAPI.
	NewDNS func(ctx context.Context, endpoint string) (route53dns.API, error)
	Log    *slog.Logger

	mu      sync.Mutex
	clients map[string]*ec2.Client
}

var _ bootlevel.Driver = (*Driver)(nil)

// Config is a service's `ec2` table.
type Config struct {
	Region             string
	EndpointURL        string
	Image              string
	InstanceType       string
	KeyName            string
	SecurityGroups     []string
	Subnet             string
	IAMInstanceProfile string
	UserData           string
	WaitTimeout        time.Duration
	ReadyLocal         bool
	// StepsLocal runs every step on this machine, as AllStepsLocal does.
	// Launch sets it (MarkStepsLocal) in the plan the run stores when it
	// runs with AllStepsLocal, so that teardown, repair, status and the
	// keeper of that run place its steps the same way without the switch.
	StepsLocal bool
	// DNS is the optional `dns` table: an A record for the instance,
	// written once it runs and deleted when it is released
	// (jobspec.ParseServiceDNS).
	DNS *jobspec.DNS
}

// ParseConfig reads and checks a service's `ec2` table.
func ParseConfig(m map[string]any) (Config, error) {
	c := Config{InstanceType: "t3.micro", WaitTimeout: 5 * time.Minute}
	for k, v := range m {
		var err error
		switch k {
		case "region":
			c.Region, err = str(k, v)
		case "endpoint_url":
			c.EndpointURL, err = str(k, v)
		case "image":
			c.Image, err = str(k, v)
		case "instance_type":
			c.InstanceType, err = str(k, v)
		case "key_name":
			c.KeyName, err = str(k, v)
		case "subnet":
			c.Subnet, err = str(k, v)
		case "iam_instance_profile":
			c.IAMInstanceProfile, err = str(k, v)
		case "user_data":
			c.UserData, err = str(k, v)
		case "security_groups":
			c.SecurityGroups, err = strs(k, v)
		case "wait_timeout":
			var s string
			if s, err = str(k, v); err == nil {
				c.WaitTimeout, err = time.ParseDuration(s)
				if err == nil && c.WaitTimeout <= 0 {
					err = fmt.Errorf("must be positive")
				}
				if err != nil {
					err = fmt.Errorf("ec2.wait_timeout: %w", err)
				}
			}
		case "dns":
			if c.DNS, err = jobspec.ParseServiceDNS(v); err != nil {
				err = fmt.Errorf("ec2: %w", err)
			}
		case "ready_local", StepsLocalKey:
			b, ok := v.(bool)
			if !ok {
				err = fmt.Errorf("ec2.%s: want true or false, got %T", k, v)
			}
			if k == StepsLocalKey {
				c.StepsLocal = b
			} else {
				c.ReadyLocal = b
			}
		default:
			err = fmt.Errorf("ec2.%s: unknown key", k)
		}
		if err != nil {
			return Config{}, err
		}
	}
	if c.Image == "" {
		return Config{}, errors.New("ec2.image: required")
	}
	return c, nil
}

// Keys lists the keys ParseConfig accepts, for plan validation and docs.
func Keys() []string {
	return []string{"region", "endpoint_url", "image", "instance_type", "key_name", "security_groups", "subnet",
		"iam_instance_profile", "user_data", "wait_timeout", "ready_local", StepsLocalKey, "dns"}
}

// StepsLocalKey is the `ec2` table's key that records that a service's
// steps run on this machine (Config.StepsLocal).
const StepsLocalKey = "steps_local"

// MarkStepsLocal records in plan that every ec2 service of it runs its
// steps on this machine: launch calls it when the driver has AllStepsLocal,
// before the run stores its plan.
func MarkStepsLocal(plan *launchplan.Plan) {
	for li := range plan.Levels {
		for si := range plan.Levels[li].Services {
			s := &plan.Levels[li].Services[si]
			if s.Driver != launchplan.DriverEC2 {
				continue
			}
			if s.EC2 == nil {
				s.EC2 = map[string]any{}
			}
			s.EC2[StepsLocalKey] = true
		}
	}
}

// StepsLocal reports whether plan, as a run stored it, has an ec2 service
// whose steps run on this machine (MarkStepsLocal).
func StepsLocal(plan *launchplan.Plan) bool {
	for _, l := range plan.Levels {
		for _, s := range l.Services {
			if s.Driver == launchplan.DriverEC2 && s.EC2[StepsLocalKey] == true {
				return true
			}
		}
	}
	return false
}

func str(k string, v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("ec2.%s: want a string, got %T", k, v)
	}
	return s, nil
}

func strs(k string, v any) ([]string, error) {
	switch x := v.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("ec2.%s: want strings, got %T", k, e)
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		return []string{x}, nil
	}
	return nil, fmt.Errorf("ec2.%s: want a list of strings, got %T", k, v)
}

func (d *Driver) client(ctx context.Context, c Config) (*ec2.Client, error) {
	key := c.Region + "|" + c.EndpointURL
	d.mu.Lock()
	defer d.mu.Unlock()
	if cl, ok := d.clients[key]; ok {
		return cl, nil
	}
	newClient := d.NewClient
	if newClient == nil {
		newClient = ec2.New
	}
	endpoint := c.EndpointURL
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	cl, err := newClient(ctx, ec2.Config{Region: c.Region, EndpointURL: endpoint, Log: d.Log})
	if err != nil {
		return nil, err
	}
	if d.clients == nil {
		d.clients = map[string]*ec2.Client{}
	}
	d.clients[key] = cl
	return cl, nil
}

func tags(run string, svc *launchplan.Service) ec2.Tags {
	return ec2.Tags{Run: run, Owner: "launch", Service: svc.Name, Launch: run + "/" + svc.Name, Instance: svc.Name}
}

// Acquire launches the service's instance, or adopts the one an earlier
// attempt launched, and waits until it runs with an address.
func (d *Driver) Acquire(ctx context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	cfg, err := ParseConfig(svc.EC2)
	if err != nil {
		return bootlevel.Host{}, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	cl, err := d.client(ctx, cfg)
	if err != nil {
		return bootlevel.Host{}, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	spec := ec2.Spec{
		Image: cfg.Image, InstanceType: cfg.InstanceType, KeyName: cfg.KeyName,
		SecurityGroupIDs: cfg.SecurityGroups, SubnetID: cfg.Subnet, IAMInstanceProfile: cfg.IAMInstanceProfile,
		UserData: cfg.UserData, Tags: tags(run, svc),
	}
	var inst ec2.Instance
	for attempt := 0; ; attempt++ {
		inst, err = cl.Launch(ctx, spec)
		if err == nil || !ec2.Ambiguous(err) || attempt >= 2 || ctx.Err() != nil {
			break
		}
		d.log().Warn("ambiguous ec2 launch; looking up by tag before retrying", "service", svc.Name, "err", err)
	}
	if err != nil {
		return bootlevel.Host{}, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	running, err := cl.WaitRunning(ctx, inst.ID, cfg.WaitTimeout)
	if err != nil {
		return bootlevel.Host{InstanceID: inst.ID}, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	host := bootlevel.Host{
		Hostname:   running.Address(),
		InstanceID: running.ID,
		Attrs:      map[string]string{"private_ip": running.PrivateIP, "public_ip": running.PublicIP, "public_dns": running.PublicDNS},
	}
	if cfg.DNS != nil {
		// Written as soon as the instance runs, before its boot steps, so
		// later levels may already use the name.
		name, err := d.upsertRecord(ctx, run, svc, cfg, running)
		if err != nil {
			return bootlevel.Host{InstanceID: running.ID}, fmt.Errorf("service %s: dns: %w", svc.Name, err)
		}
		host.Attrs["dns_name"] = name
	}
	return host, nil
}

// zone opens the hosted zone of the service's dns table and renders the
// service's record name.
func (d *Driver) zone(ctx context.Context, run string, svc *launchplan.Service, cfg Config) (*route53dns.Zone, string, error) {
	name, err := jobspec.RenderServiceName(cfg.DNS.Name, svc.Name, run)
	if err != nil {
		return nil, "", err
	}
	endpoint := cfg.EndpointURL
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	newDNS := d.NewDNS
	if newDNS == nil {
		newDNS = func(ctx context.Context, endpoint string) (route53dns.API, error) {
			return route53dns.NewAPI(ctx, route53dns.Config{EndpointURL: endpoint, Log: d.log()})
		}
	}
	api, err := newDNS(ctx, endpoint)
	if err != nil {
		return nil, "", err
	}
	z, err := route53dns.OpenZone(ctx, api, cfg.DNS.Zone, d.log())
	if err != nil {
		return nil, "", err
	}
	return z, name, nil
}

// upsertRecord points the service's record at its running instance,
// owned by the run (route53dns), so teardown's sweep finds it too.
func (d *Driver) upsertRecord(ctx context.Context, run string, svc *launchplan.Service, cfg Config, inst ec2.Instance) (string, error) {
	addr := inst.PrivateIP
	if cfg.DNS.Address == jobspec.AddressPublic {
		addr = inst.PublicIP
	}
	if addr == "" {
		return "", fmt.Errorf("instance %s has no %s address for its record", inst.ID, cfg.DNS.Address)
	}
	z, name, err := d.zone(ctx, run, svc, cfg)
	if err != nil {
		return "", err
	}
	if err := z.Upsert(ctx, run, route53dns.Record{Name: name, Addresses: []string{addr}, TTL: cfg.DNS.TTL}); err != nil {
		return "", err
	}
	return name, nil
}

// StepsHere reports whether a service's steps run on this machine rather
// than on its instance: always when AllStepsLocal (tests against moto), or
// when the run recorded so at launch (steps_local). A built-in type then
// starts its daemon here, not as a unit there.
func (d *Driver) StepsHere(svc *launchplan.Service) bool {
	if d.AllStepsLocal {
		return true
	}
	cfg, err := ParseConfig(svc.EC2)
	return err == nil && cfg.StepsLocal
}

// WritesStepHeader: the steps this driver runs here are the local
// driver's, which writes its own header; over ssh, the engine writes it.
func (d *Driver) WritesStepHeader(req bootlevel.StepRequest) bool {
	cfg, err := ParseConfig(req.Service.EC2)
	local := d.AllStepsLocal || (err == nil && (cfg.StepsLocal || cfg.ReadyLocal && req.Step == bootlevel.StepReady))
	hw, ok := d.Local.(bootlevel.StepHeaderWriter)
	return local && ok && hw.WritesStepHeader(req)
}

// Run runs a step on the instance over ssh, or on this machine for a ready
// check the plan wants run locally.
func (d *Driver) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	cfg, err := ParseConfig(req.Service.EC2)
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("service %s: %w", req.Service.Name, err)
	}
	if d.AllStepsLocal || cfg.StepsLocal || (cfg.ReadyLocal && req.Step == bootlevel.StepReady) {
		if d.Local == nil {
			return bootlevel.StepResult{}, errors.New("ec2 driver: no local driver configured")
		}
		return d.Local.Run(ctx, req)
	}
	if d.Remote == nil {
		return bootlevel.StepResult{}, errors.New("ec2 driver: no ssh driver configured")
	}
	svc := *req.Service
	ssh := launchplan.SSH{Port: 22, User: "ubuntu", StageDir: "/tmp/nightshift"}
	if svc.SSH != nil {
		ssh = *svc.SSH
	}
	ssh.Host = req.Host.Hostname
	svc.SSH = &ssh
	req.Service = &svc
	return d.Remote.Run(ctx, req)
}

// Release terminates the service's instance; an instance already gone is fine.
func (d *Driver) Release(ctx context.Context, run string, svc *launchplan.Service, host bootlevel.Host) error {
	cfg, err := ParseConfig(svc.EC2)
	if err != nil {
		return fmt.Errorf("service %s: %w", svc.Name, err)
	}
	cl, err := d.client(ctx, cfg)
	if err != nil {
		return fmt.Errorf("service %s: %w", svc.Name, err)
	}
	ids := []string{}
	if strings.HasPrefix(host.InstanceID, "i-") {
		ids = append(ids, host.InstanceID)
	}
	// Also whatever carries the service's tags: an instance launched by an
	// attempt whose record was lost.
	found, err := cl.Find(ctx, map[string]string{ec2.TagRun: run, ec2.TagService: svc.Name}, nil)
	if err != nil {
		return fmt.Errorf("service %s: %w", svc.Name, err)
	}
	for _, i := range found {
		if i.ID != host.InstanceID {
			ids = append(ids, i.ID)
		}
	}
	// The record goes first, so the name never points at an address the
	// terminated instance gives back; a zone gone holds no record.
	var dnsErr error
	if cfg.DNS != nil {
		z, name, err := d.zone(ctx, run, svc, cfg)
		if err == nil {
			err = z.Delete(ctx, run, name)
		}
		if err != nil && !errors.Is(err, route53dns.ErrNoZone) {
			dnsErr = fmt.Errorf("service %s: dns: %w", svc.Name, err)
		}
	}
	if err := cl.Terminate(ctx, ids); err != nil {
		return errors.Join(dnsErr, fmt.Errorf("service %s: %w", svc.Name, err))
	}
	return dnsErr
}

func (d *Driver) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// Sweeper finds a run's instances by tag for teardown, whatever launched them.
type Sweeper struct {
	Client *ec2.Client
	// Place names the region and endpoint Client looks in, so a report
	// says where something remains; "" for the only one.
	Place string
}

// Name implements mgmt.Sweeper.
func (s Sweeper) Name() string {
	if s.Place == "" {
		return "ec2"
	}
	return "ec2 (" + s.Place + ")"
}

// Sweep implements mgmt.Sweeper.
func (s Sweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	return s.Client.Sweep(ctx, run, dryRun)
}
