package main

import (
	"context"
	"errors"
	"flag"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/cfsync/cfsync/internal/awsconf"
)

// aws returns the AWS SDK configuration: the functions' own (awsconf: the
// default chain, AWS_ENDPOINT_URL honoured by the SDK), with the app's
// environment applied on top so that in-process callers (tests) can point
// the CLI at an emulator without touching the process environment.
func (a *app) aws(ctx context.Context) (aws.Config, error) {
	if a.awsCfg != nil {
		return *a.awsCfg, nil
	}
	cfg, err := awsconf.Load(ctx)
	if err != nil {
		return aws.Config{}, err
	}
	if ep := strings.TrimSpace(a.env("AWS_ENDPOINT_URL")); ep != "" {
		cfg.BaseEndpoint = aws.String(ep)
	}
	for _, name := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if r := strings.TrimSpace(a.env(name)); r != "" {
			cfg.Region = r
			break
		}
	}
	if id := a.env("AWS_ACCESS_KEY_ID"); id != "" {
		cfg.Credentials = aws.NewCredentialsCache(awscreds.NewStaticCredentialsProvider(id, a.env("AWS_SECRET_ACCESS_KEY"), a.env("AWS_SESSION_TOKEN")))
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no AWS region: set AWS_REGION (or configure a profile)")
	}
	a.awsCfg = &cfg
	return cfg, nil
}

// envFlag is a string flag with an environment fallback: when the flag is
// not given (or blank), the variable env's value.
type envFlag struct {
	a         *app
	name, env string
	v         *string
}

// envString registers envFlag name on fs; its usage ends with the variable.
func (a *app) envString(fs *flag.FlagSet, name, env, usage string) *envFlag {
	return &envFlag{a: a, name: name, env: env, v: fs.String(name, "", usage+" (default $"+env+")")}
}

// value is the flag's value, else the variable's (both trimmed).
func (f *envFlag) value() string {
	if v := strings.TrimSpace(*f.v); v != "" {
		return v
	}
	return strings.TrimSpace(f.a.env(f.env))
}

// required is value, or a usage error naming the flag and the variable when
// both are empty.
func (f *envFlag) required() (string, error) {
	if v := f.value(); v != "" {
		return v, nil
	}
	return "", usagef("--%s (or %s) is required", f.name, f.env)
}
