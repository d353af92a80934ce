// Package ringtest holds a hand-written in-memory Secrets Manager for unit
// tests and fake-clock simulations of the token ring (versions with creation
// times on an injectable clock, idempotent ClientRequestTokens). The
// refresher's state-table fake lives with its tests, behind the interface
// the refresher declares; integration tests use moto_server.
package ringtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
)

// Write is one PutSecretValue that created a version.
type Write struct {
	ID        string
	At        time.Time
	VersionID string
	Value     string
}

type version struct {
	id      string
	value   string
	created time.Time
}

type secret struct {
	name     string
	arn      string
	versions []version // oldest first; the last is AWSCURRENT
}

// Secrets is an in-memory Secrets Manager. Safe for concurrent use.
type Secrets struct {
	// Now stamps new versions (default time.Now).
	Now func() time.Time
	// NoBatch makes BatchGetSecretValue fail as an unknown operation.
	NoBatch bool
	// Hooks return an error to inject for a call (nil: proceed).
	GetErr   func(id string) error
	BatchErr func(ids []string) error
	PutErr   func(id string) error

	mu      sync.Mutex
	secrets map[string]*secret
	writes  []Write
	calls   map[string]int
}

// NewSecrets returns an empty store on clock now (nil: time.Now).
func NewSecrets(now func() time.Time) *Secrets {
	return &Secrets{Now: now, secrets: map[string]*secret{}, calls: map[string]int{}}
}

func (s *Secrets) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

// Create makes a secret; with a nil value it has no version (like a
// CreateSecret without SecretString).
func (s *Secrets) Create(id string, value *string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := &secret{name: id, arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + id + "-AbCdEf"}
	if value != nil {
		sec.versions = append(sec.versions, version{id: "initial", value: *value, created: s.now()})
	}
	s.secrets[id] = sec
}

// Value returns the current value of a secret.
func (s *Secrets) Value(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[id]
	if sec == nil || len(sec.versions) == 0 {
		return "", false
	}
	return sec.versions[len(sec.versions)-1].value, true
}

// Writes returns every version-creating PutSecretValue so far.
func (s *Secrets) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Write(nil), s.writes...)
}

// Calls returns how many times an operation was called.
func (s *Secrets) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// ResetCalls zeroes the call counters.
func (s *Secrets) ResetCalls() {
	s.mu.Lock()
	s.calls = map[string]int{}
	s.mu.Unlock()
}

func (s *Secrets) lookup(id string) *secret {
	if sec := s.secrets[id]; sec != nil {
		return sec
	}
	for _, sec := range s.secrets {
		if sec.arn == id {
			return sec
		}
	}
	return nil
}

func notFound(msg string) error {
	return &types.ResourceNotFoundException{Message: aws.String(msg)}
}

// startLocked begins a call on one secret, under s.mu: the context's error,
// else the call is counted and answered with hook's error, if any, or
// ResourceNotFoundException for an unknown id.
func (s *Secrets) startLocked(ctx context.Context, op, id string, hook func(id string) error) (*secret, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.calls[op]++
	if hook != nil {
		if err := hook(id); err != nil {
			return nil, err
		}
	}
	sec := s.lookup(id)
	if sec == nil {
		return nil, notFound("Secrets Manager can't find the specified secret.")
	}
	return sec, nil
}

// GetSecretValue implements tokenring.SecretsAPI.
func (s *Secrets) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := s.startLocked(ctx, "GetSecretValue", aws.ToString(in.SecretId), s.GetErr)
	if err != nil {
		return nil, err
	}
	if len(sec.versions) == 0 {
		return nil, notFound("Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
	}
	v := sec.versions[len(sec.versions)-1]
	return &secretsmanager.GetSecretValueOutput{
		ARN: aws.String(sec.arn), Name: aws.String(sec.name), SecretString: aws.String(v.value),
		VersionId: aws.String(v.id), CreatedDate: aws.Time(v.created), VersionStages: []string{"AWSCURRENT"},
	}, nil
}

// BatchGetSecretValue implements tokenring.SecretsAPI (SecretIdList only).
func (s *Secrets) BatchGetSecretValue(ctx context.Context, in *secretsmanager.BatchGetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.BatchGetSecretValueOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls["BatchGetSecretValue"]++
	if s.NoBatch {
		return nil, &smithy.GenericAPIError{Code: "UnknownOperationException", Message: "unknown operation"}
	}
	if s.BatchErr != nil {
		if err := s.BatchErr(in.SecretIdList); err != nil {
			return nil, err
		}
	}
	if len(in.SecretIdList) == 0 || len(in.SecretIdList) > 20 {
		return nil, &smithy.GenericAPIError{Code: "InvalidParameterException", Message: "SecretIdList must have 1-20 entries"}
	}
	out := &secretsmanager.BatchGetSecretValueOutput{}
	for _, id := range in.SecretIdList {
		sec := s.lookup(id)
		if sec == nil || len(sec.versions) == 0 {
			out.Errors = append(out.Errors, types.APIErrorType{SecretId: aws.String(id), ErrorCode: aws.String("ResourceNotFoundException"), Message: aws.String("not found")})
			continue
		}
		v := sec.versions[len(sec.versions)-1]
		out.SecretValues = append(out.SecretValues, types.SecretValueEntry{
			ARN: aws.String(sec.arn), Name: aws.String(sec.name), SecretString: aws.String(v.value),
			VersionId: aws.String(v.id), CreatedDate: aws.Time(v.created), VersionStages: []string{"AWSCURRENT"},
		})
	}
	return out, nil
}

// PutSecretValue implements tokenring.PutAPI. A repeated ClientRequestToken
// with the same value creates no version; with another value it fails, as in AWS.
func (s *Secrets) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := s.startLocked(ctx, "PutSecretValue", aws.ToString(in.SecretId), s.PutErr)
	if err != nil {
		return nil, err
	}
	vid := aws.ToString(in.ClientRequestToken)
	if vid == "" {
		vid = fmt.Sprintf("v%d", len(sec.versions)+1)
	}
	val := aws.ToString(in.SecretString)
	for _, v := range sec.versions {
		if v.id == vid {
			if v.value == val {
				return &secretsmanager.PutSecretValueOutput{ARN: aws.String(sec.arn), Name: aws.String(sec.name), VersionId: aws.String(vid)}, nil
			}
			return nil, &types.ResourceExistsException{Message: aws.String("a version with this ClientRequestToken already exists with another value")}
		}
	}
	now := s.now()
	sec.versions = append(sec.versions, version{id: vid, value: val, created: now})
	s.writes = append(s.writes, Write{ID: sec.name, At: now, VersionID: vid, Value: val})
	return &secretsmanager.PutSecretValueOutput{ARN: aws.String(sec.arn), Name: aws.String(sec.name), VersionId: aws.String(vid)}, nil
}

// ErrInjected is a convenient error for hooks.
var ErrInjected = errors.New("ringtest: injected failure")
