// Package ec2 is Nightshift's one adapter to EC2 (aws-sdk-go-v2), shared by
// the launch plans' ec2 service driver and the provisioner's worker driver.
// It makes launches idempotent twice over: every attempt of one (launch,
// instance) carries the same RunInstances ClientToken, so EC2 itself
// deduplicates a retry after an ambiguous error, and, because moto ignores
// ClientToken and EC2 forgets tokens of terminated instances, every instance
// is tagged with its run, owner, launch and instance ids and we look for a
// live instance with those tags before launching. It turns EC2 errors into
// reasons instead of crashes, and sweeps a run's instances by tag.
package ec2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"nightshift"
	"nightshift/internal/backoff"
)

// API is the narrow part of the EC2 client Nightshift uses; *awsec2.Client
// satisfies it, and tests can wrap it to inject faults.
type API interface {
	RunInstances(ctx context.Context, in *awsec2.RunInstancesInput, opts ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error)
	DescribeInstances(ctx context.Context, in *awsec2.DescribeInstancesInput, opts ...func(*awsec2.Options)) (*awsec2.DescribeInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *awsec2.TerminateInstancesInput, opts ...func(*awsec2.Options)) (*awsec2.TerminateInstancesOutput, error)
	DescribeInstanceStatus(ctx context.Context, in *awsec2.DescribeInstanceStatusInput, opts ...func(*awsec2.Options)) (*awsec2.DescribeInstanceStatusOutput, error)
}

// Tag keys on every instance Nightshift launches.
const (
	TagRun      = "nightshift:run"
	TagJob      = "nightshift:job"
	TagService  = "nightshift:service"
	TagLaunch   = "nightshift:launch"
	TagInstance = "nightshift:instance"
	TagOwner    = "nightshift:owner"
)

// liveStates are the EC2 states in which an instance costs money or soon will.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

// Config says how to reach EC2. Credentials never appear here: they come
// from the standard chain (environment, shared config and profile, IMDS).
type Config struct {
	Region string
	// EndpointURL overrides the endpoint (EC2-compatible clouds, moto). The
	// SDK also honours AWS_ENDPOINT_URL when this is empty.
	EndpointURL string
	// RetryMaxAttempts bounds the SDK's retryer, which handles throttling
	// with back-off; 0 keeps the SDK default.
	RetryMaxAttempts int
	Log              *slog.Logger
}

// Client is the adapter.
type Client struct {
	api API
	log *slog.Logger
}

// New loads AWS configuration through config.LoadDefaultConfig.
func New(ctx context.Context, cfg Config) (*Client, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.RetryMaxAttempts > 0 {
		opts = append(opts, config.WithRetryMaxAttempts(cfg.RetryMaxAttempts))
	}
	if cfg.EndpointURL != "" {
		opts = append(opts, config.WithBaseEndpoint(cfg.EndpointURL))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("no AWS region: set region in the plan, AWS_REGION, or a profile")
	}
	return NewWithAPI(awsec2.NewFromConfig(awsCfg), cfg.Log), nil
}

// NewWithAPI wraps an existing API (tests, fault injection).
func NewWithAPI(api API, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{api: api, log: log}
}

// Tags identify an instance; Run, Owner, Launch and Instance are required.
type Tags struct {
	Run      string
	Owner    string // which component launched it: "provisioner", "launch"
	Job      string // worker pools
	Service  string // plan services
	Launch   string // the launch id: the idempotency key
	Instance string // Nightshift's instance id
}

func (t Tags) list() []types.Tag {
	kv := [][2]string{{TagRun, t.Run}, {TagOwner, t.Owner}, {TagLaunch, t.Launch}, {TagInstance, t.Instance}}
	if t.Job != "" {
		kv = append(kv, [2]string{TagJob, t.Job})
	}
	if t.Service != "" {
		kv = append(kv, [2]string{TagService, t.Service})
	}
	out := make([]types.Tag, 0, len(kv))
	for _, p := range kv {
		out = append(out, types.Tag{Key: aws.String(p[0]), Value: aws.String(p[1])})
	}
	return out
}

// Spec is what to launch.
type Spec struct {
	Image              string
	InstanceType       string
	KeyName            string
	SecurityGroupIDs   []string
	SubnetID           string
	IAMInstanceProfile string // name or ARN
	UserData           string // plain text; base64-encoded here
	Tags               Tags
}

// Instance is what Nightshift needs to know of an EC2 instance.
type Instance struct {
	ID         string
	State      string // EC2's name: pending, running, ...
	PrivateIP  string
	PublicIP   string
	PublicDNS  string
	LaunchTime time.Time
	Tags       map[string]string
}

// Address is the best address to reach the instance at.
func (i Instance) Address() string {
	for _, a := range []string{i.PublicDNS, i.PublicIP, i.PrivateIP} {
		if a != "" {
			return a
		}
	}
	return ""
}

// Launch starts one instance for spec unless a live instance with the same
// run, launch and instance tags already exists, in which case it returns that
// one. Call it again after a crash or an ambiguous error: that is how a
// launch is never doubled.
func (c *Client) Launch(ctx context.Context, spec Spec) (Instance, error) {
	t := spec.Tags
	if t.Run == "" || t.Owner == "" || t.Launch == "" || t.Instance == "" {
		return Instance{}, errors.New("ec2 launch: run, owner, launch and instance tags are required")
	}
	existing, err := c.Find(ctx, map[string]string{TagRun: t.Run, TagLaunch: t.Launch, TagInstance: t.Instance}, []string{"pending", "running"})
	if err != nil {
		return Instance{}, fmt.Errorf("ec2 launch %s: look for an earlier attempt: %w", t.Instance, err)
	}
	if len(existing) > 0 {
		c.log.Info("ec2 launch adopted an existing instance", "instance", t.Instance, "ec2_id", existing[0].ID)
		return existing[0], nil
	}
	in := &awsec2.RunInstancesInput{
		ImageId:      aws.String(spec.Image),
		InstanceType: types.InstanceType(spec.InstanceType),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		ClientToken:  aws.String(ClientToken(t)),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: t.list()},
		},
	}
	if spec.KeyName != "" {
		in.KeyName = aws.String(spec.KeyName)
	}
	if len(spec.SecurityGroupIDs) > 0 {
		in.SecurityGroupIds = spec.SecurityGroupIDs
	}
	if spec.SubnetID != "" {
		in.SubnetId = aws.String(spec.SubnetID)
	}
	if p := spec.IAMInstanceProfile; p != "" {
		if strings.HasPrefix(p, "arn:") {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Arn: aws.String(p)}
		} else {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(p)}
		}
	}
	if spec.UserData != "" {
		in.UserData = aws.String(encodeUserData(spec.UserData))
	}
	out, err := c.api.RunInstances(ctx, in)
	if err != nil {
		return Instance{}, &LaunchError{Instance: t.Instance, Reason: Reason(err), Err: err}
	}
	if len(out.Instances) == 0 {
		return Instance{}, &LaunchError{Instance: t.Instance, Reason: "ec2 returned no instance", Err: errors.New("empty RunInstances answer")}
	}
	inst := fromSDK(out.Instances[0])
	c.log.Info("ec2 instance launched", "instance", t.Instance, "ec2_id", inst.ID, "state", inst.State)
	return inst, nil
}

// LaunchError is a launch EC2 refused; Reason is short and operator-facing.
type LaunchError struct {
	Instance string
	Reason   string
	Err      error
}

func (e *LaunchError) Error() string {
	return fmt.Sprintf("ec2 launch %s: %s: %v", e.Instance, e.Reason, e.Err)
}
func (e *LaunchError) Unwrap() error { return e.Err }

// Ambiguous reports whether err leaves it unknown if EC2 launched anything
// (a timeout or a dropped connection), so the caller must look by tag before
// trying again rather than treat the launch as failed.
func Ambiguous(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return false // EC2 answered: it said no
	}
	return err != nil
}

// ClientToken is the RunInstances idempotency token of one (launch,
// instance) of a run: the same for every attempt, because retries follow
// ambiguous errors (a timeout after EC2 may have launched), which is exactly
// when EC2's own deduplication is needed. It is a digest so that it stays
// within EC2's 64 characters however long the ids are.
func ClientToken(t Tags) string {
	sum := sha256.Sum256([]byte(t.Run + "\x00" + t.Launch + "\x00" + t.Instance))
	return "ns-" + hex.EncodeToString(sum[:24])
}

// Find lists instances whose tags match all of tags and whose state is one
// of states (all live states when empty).
func (c *Client) Find(ctx context.Context, tags map[string]string, states []string) ([]Instance, error) {
	if len(states) == 0 {
		states = liveStates
	}
	filters := []types.Filter{{Name: aws.String("instance-state-name"), Values: states}}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	var out []Instance
	p := awsec2.NewDescribeInstancesPaginator(c.api, &awsec2.DescribeInstancesInput{Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				out = append(out, fromSDK(i))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Describe returns the instances with the given EC2 ids that still exist.
func (c *Client) Describe(ctx context.Context, ids []string) ([]Instance, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := c.api.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		if apiCode(err) == "InvalidInstanceID.NotFound" {
			return nil, nil
		}
		return nil, fmt.Errorf("describe instances %v: %w", ids, err)
	}
	var res []Instance
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			res = append(res, fromSDK(i))
		}
	}
	return res, nil
}

// WaitRunning polls until the instance is running and has an address, with
// bounded exponential back-off, or fails when it reaches a state it cannot
// come back from.
func (c *Client) WaitRunning(ctx context.Context, id string, maxWait time.Duration) (Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	wait := backoff.Backoff{Policy: backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}}
	for {
		got, err := c.Describe(ctx, []string{id})
		if err != nil && ctx.Err() == nil {
			c.log.Warn("ec2 describe while waiting", "ec2_id", id, "err", err)
		}
		if len(got) == 1 {
			switch got[0].State {
			case "running":
				if got[0].Address() != "" {
					return got[0], nil
				}
			case "shutting-down", "terminated", "stopping", "stopped":
				return got[0], fmt.Errorf("ec2 instance %s is %s while waiting for running", id, got[0].State)
			}
		}
		select {
		case <-ctx.Done():
			return Instance{}, fmt.Errorf("ec2 instance %s not running with an address after %s: %w", id, maxWait, ctx.Err())
		case <-time.After(wait.Next()):
		}
	}
}

// terminateBatch is how many ids go in one TerminateInstances call; EC2
// accepts up to 1000, smaller batches keep one bad id from failing many.
const terminateBatch = 100

// Terminate terminates instances in batches. Ids EC2 no longer knows count
// as terminated.
func (c *Client) Terminate(ctx context.Context, ids []string) error {
	var errs []error
	for start := 0; start < len(ids); start += terminateBatch {
		batch := ids[start:min(start+terminateBatch, len(ids))]
		_, err := c.api.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: batch})
		if err == nil {
			continue
		}
		if apiCode(err) != "InvalidInstanceID.NotFound" {
			errs = append(errs, fmt.Errorf("terminate %v: %w", batch, err))
			continue
		}
		// One unknown id fails the whole call: retry the rest one by one.
		for _, id := range batch {
			if _, err := c.api.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil && apiCode(err) != "InvalidInstanceID.NotFound" {
				errs = append(errs, fmt.Errorf("terminate %s: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Health returns EC2's status-check verdict per running instance id:
// "ok", "impaired", "initializing", "insufficient-data" or "not-applicable".
func (c *Client) Health(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	p := awsec2.NewDescribeInstanceStatusPaginator(c.api, &awsec2.DescribeInstanceStatusInput{InstanceIds: ids})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instance status: %w", err)
		}
		for _, s := range page.InstanceStatuses {
			verdict := "insufficient-data"
			if s.InstanceStatus != nil && s.SystemStatus != nil {
				is, ss := string(s.InstanceStatus.Status), string(s.SystemStatus.Status)
				switch {
				case is == "impaired" || ss == "impaired":
					verdict = "impaired"
				case is == "ok" && ss == "ok":
					verdict = "ok"
				default:
					verdict = is
				}
			}
			out[aws.ToString(s.InstanceId)] = verdict
		}
	}
	return out, nil
}

// Sweep terminates (or, with dryRun, lists) every live instance tagged with
// run, whatever launched it. remaining lists instances still live after the
// terminate calls (EC2 may show shutting-down for a while; those count as
// destroyed, since they no longer bill).
func (c *Client) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	found, err := c.Find(ctx, map[string]string{TagRun: run}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("sweep run %s: %w", run, err)
	}
	ids := make([]string, 0, len(found))
	for _, i := range found {
		ids = append(ids, i.ID)
	}
	if dryRun || len(ids) == 0 {
		return label(found), nil, nil
	}
	terr := c.Terminate(ctx, ids)
	left, ferr := c.Find(ctx, map[string]string{TagRun: run}, []string{"pending", "running", "stopping", "stopped"})
	if ferr != nil {
		return label(found), nil, errors.Join(terr, ferr)
	}
	leftSet := map[string]bool{}
	for _, i := range left {
		leftSet[i.ID] = true
	}
	for _, i := range found {
		if !leftSet[i.ID] {
			destroyed = append(destroyed, label([]Instance{i})...)
		}
	}
	return destroyed, label(left), terr
}

func label(is []Instance) []string {
	out := make([]string, 0, len(is))
	for _, i := range is {
		name := i.Tags[TagInstance]
		if name == "" {
			name = "untagged"
		}
		out = append(out, fmt.Sprintf("%s (%s, %s)", i.ID, name, i.State))
	}
	return out
}

// MapState turns EC2's instance state into Nightshift's ladder.
func MapState(ec2State string) nightshift.InstanceState {
	switch ec2State {
	case "pending":
		return nightshift.StatePending
	case "running":
		return nightshift.StateRunning
	case "shutting-down", "stopping", "stopped":
		return nightshift.StateTerminating
	case "terminated":
		return nightshift.StateTerminated
	}
	return nightshift.StateFailed
}

// Reason turns an EC2 error into a short operator-facing reason.
func Reason(err error) string {
	code := apiCode(err)
	switch {
	case code == "":
		if errors.Is(err, context.DeadlineExceeded) {
			return "timed out talking to ec2"
		}
		return "could not reach ec2"
	case code == "InsufficientInstanceCapacity" || code == "InstanceLimitExceeded" || code == "InsufficientCapacity":
		return "insufficient capacity (" + code + ")"
	case strings.HasPrefix(code, "InvalidAMIID"):
		return "bad image (" + code + ")"
	case strings.HasPrefix(code, "InvalidKeyPair"):
		return "bad key pair (" + code + ")"
	case code == "UnauthorizedOperation" || code == "AuthFailure" || code == "UnauthorizedAccess" || code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch":
		return "not authorized (" + code + ")"
	case code == "RequestLimitExceeded" || code == "Throttling" || code == "ThrottlingException":
		return "throttled by ec2 after retries (" + code + ")"
	case strings.HasPrefix(code, "InvalidParameter") || code == "InvalidInstanceType" || strings.HasPrefix(code, "InvalidGroup") || strings.HasPrefix(code, "InvalidSubnet"):
		return "invalid request (" + code + ")"
	}
	return "ec2 refused (" + code + ")"
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func fromSDK(i types.Instance) Instance {
	out := Instance{
		ID:        aws.ToString(i.InstanceId),
		PrivateIP: aws.ToString(i.PrivateIpAddress),
		PublicIP:  aws.ToString(i.PublicIpAddress),
		PublicDNS: aws.ToString(i.PublicDnsName),
		Tags:      map[string]string{},
	}
	if i.State != nil {
		out.State = string(i.State.Name)
	}
	if i.LaunchTime != nil {
		out.LaunchTime = *i.LaunchTime
	}
	for _, t := range i.Tags {
		out.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}
