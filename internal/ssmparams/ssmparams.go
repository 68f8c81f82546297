// Package ssmparams is Nightshift's one adapter to AWS Systems Manager
// Parameter Store (aws-sdk-go-v2/service/ssm). It owns where a run's
// secrets live off the launcher: SecureString parameters under
// /nightshift/<run>/, so that EC2 user data, which any process on the
// instance and anyone with ec2:DescribeInstanceAttribute can read, carries
// only parameter names. An instance profile limited to its run's path reads
// them at boot (plans/prod/README.md has the policy); teardown deletes them.
package ssmparams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

// API is the narrow part of the SSM client Nightshift uses; *ssm.Client
// satisfies it.
type API interface {
	PutParameter(ctx context.Context, in *ssm.PutParameterInput, opts ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, opts ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	GetParametersByPath(ctx context.Context, in *ssm.GetParametersByPathInput, opts ...func(*ssm.Options)) (*ssm.GetParametersByPathOutput, error)
	DeleteParameters(ctx context.Context, in *ssm.DeleteParametersInput, opts ...func(*ssm.Options)) (*ssm.DeleteParametersOutput, error)
}

// Root is the prefix of every parameter Nightshift writes.
const Root = "/nightshift/"

// Config says how to reach SSM. Credentials come from the standard chain
// (environment, profile, the instance profile through IMDS).
type Config struct {
	Region      string
	EndpointURL string // moto, or an SSM-compatible endpoint
	Log         *slog.Logger
}

// Store reads and writes a run's parameters.
type Store struct {
	api    API
	log    *slog.Logger
	region string
}

// New loads AWS configuration through config.LoadDefaultConfig.
func New(ctx context.Context, cfg Config) (*Store, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.EndpointURL != "" {
		opts = append(opts, config.WithBaseEndpoint(cfg.EndpointURL))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("no AWS region for SSM: set region in the plan, AWS_REGION, or a profile")
	}
	s := NewWithAPI(ssm.NewFromConfig(awsCfg), cfg.Log)
	s.region = awsCfg.Region
	return s, nil
}

// Region is the region the store's parameters live in ("" when built
// with NewWithAPI): an instance reading them must ask that region.
func (s *Store) Region() string { return s.region }

// NewWithAPI wraps an existing API (tests, fault injection).
func NewWithAPI(api API, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{api: api, log: log}
}

// part is what a run name or a parameter's name within a run may hold:
// SSM's own alphabet, without the path separator in a run name.
var (
	runPart  = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)
	namePart = regexp.MustCompile(`^[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+)*$`)
)

// RunPath is the folder of run's parameters, with a trailing slash.
func RunPath(run string) (string, error) {
	if !runPart.MatchString(run) {
		return "", fmt.Errorf("ssm parameters: run %q: want 1-128 characters of [a-zA-Z0-9_.-]", run)
	}
	return Root + run + "/", nil
}

// Name is the full name of run's parameter rel (e.g. "workers/<id>/broker-url").
func Name(run, rel string) (string, error) {
	p, err := RunPath(run)
	if err != nil {
		return "", err
	}
	if !namePart.MatchString(rel) || len(p)+len(rel) > 1011 {
		return "", fmt.Errorf("ssm parameter %q of run %s: want [a-zA-Z0-9_.-] segments separated by /, in all at most 1011 characters", rel, run)
	}
	return p + rel, nil
}

// Put stores value as run's SecureString parameter rel, overwriting an
// earlier value (a re-boot writes the same names again), and returns the
// parameter's full name: that name, never the value, is what user data
// carries.
func (s *Store) Put(ctx context.Context, run, rel, value string) (string, error) {
	name, err := Name(run, rel)
	if err != nil {
		return "", err
	}
	_, err = s.api.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value),
		Type: types.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	})
	if err != nil {
		return "", fmt.Errorf("put ssm parameter %s: %w", name, err)
	}
	s.log.Info("ssm parameter stored", "name", name)
	return name, nil
}

// ErrNotFound is returned by Get for a parameter that does not exist.
var ErrNotFound = errors.New("ssm parameter not found")

// Get returns the decrypted value of the parameter with full name name.
func (s *Store) Get(ctx context.Context, name string) (string, error) {
	if !strings.HasPrefix(name, Root) {
		return "", fmt.Errorf("ssm parameter %q: not under %s", name, Root)
	}
	out, err := s.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		if code(err) == "ParameterNotFound" {
			return "", fmt.Errorf("get ssm parameter %s: %w", name, ErrNotFound)
		}
		return "", fmt.Errorf("get ssm parameter %s: %w", name, err)
	}
	if out.Parameter == nil {
		return "", fmt.Errorf("get ssm parameter %s: %w", name, ErrNotFound)
	}
	return aws.ToString(out.Parameter.Value), nil
}

// List returns the full names of every parameter of run, sorted.
func (s *Store) List(ctx context.Context, run string) ([]string, error) {
	path, err := RunPath(run)
	if err != nil {
		return nil, err
	}
	var names []string
	p := ssm.NewGetParametersByPathPaginator(s.api, &ssm.GetParametersByPathInput{
		Path: aws.String(strings.TrimSuffix(path, "/")), Recursive: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list ssm parameters of run %s: %w", run, err)
		}
		for _, prm := range page.Parameters {
			names = append(names, aws.ToString(prm.Name))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Delete deletes the parameters with these full names; ones that do not
// exist are no error (a worker terminated twice, or never launched).
func (s *Store) Delete(ctx context.Context, names []string) error {
	var errs []error
	for start := 0; start < len(names); start += deleteBatch {
		batch := names[start:min(start+deleteBatch, len(names))]
		for _, n := range batch {
			if !strings.HasPrefix(n, Root) {
				return fmt.Errorf("delete ssm parameter %q: not under %s", n, Root)
			}
		}
		if _, err := s.api.DeleteParameters(ctx, &ssm.DeleteParametersInput{Names: batch}); err != nil {
			errs = append(errs, fmt.Errorf("delete ssm parameters %v: %w", batch, err))
		}
	}
	return errors.Join(errs...)
}

// deleteBatch is SSM's limit on names per DeleteParameters call.
const deleteBatch = 10

// DeleteRun deletes every parameter of run (with dryRun, only lists them)
// and returns what it deleted and what a fresh list still shows.
func (s *Store) DeleteRun(ctx context.Context, run string, dryRun bool) (deleted, remaining []string, err error) {
	names, err := s.List(ctx, run)
	if err != nil || dryRun || len(names) == 0 {
		return names, nil, err
	}
	var errs []error
	for start := 0; start < len(names); start += deleteBatch {
		batch := names[start:min(start+deleteBatch, len(names))]
		if _, err := s.api.DeleteParameters(ctx, &ssm.DeleteParametersInput{Names: batch}); err != nil {
			errs = append(errs, fmt.Errorf("delete ssm parameters %v: %w", batch, err))
		}
	}
	left, lerr := s.List(ctx, run)
	if lerr != nil {
		return nil, names, errors.Join(append(errs, lerr)...)
	}
	gone := map[string]bool{}
	for _, n := range names {
		gone[n] = true
	}
	for _, n := range left {
		gone[n] = false
	}
	for _, n := range names {
		if gone[n] {
			deleted = append(deleted, n)
		}
	}
	return deleted, left, errors.Join(errs...)
}

// Sweeper deletes a run's parameters at teardown; it satisfies
// mgmt.Sweeper.
type Sweeper struct {
	Store *Store
	// Place names the region and endpoint Store looks in; "" for the only one.
	Place string
}

// Name implements mgmt.Sweeper.
func (w Sweeper) Name() string {
	if w.Place == "" {
		return "ssm-parameter"
	}
	return "ssm-parameter (" + w.Place + ")"
}

// Sweep implements mgmt.Sweeper.
func (w Sweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	return w.Store.DeleteRun(ctx, run, dryRun)
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
