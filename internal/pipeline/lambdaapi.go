package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The few Lambda API calls the harness makes against moto, as signed REST
// requests (the Lambda SDK client is not among the project's modules).

// FunctionConfig is the part of a deployed function's configuration the
// harness uses.
type FunctionConfig struct {
	FunctionName string
	Timeout      int // seconds
	MemorySize   int // MB
}

// EventSourceMapping is the part of a deployed event source mapping the harness uses.
type EventSourceMapping struct {
	UUID                  string
	BatchSize             int
	EventSourceArn        string
	FunctionArn           string
	State                 string
	FunctionResponseTypes []string
	ScalingConfig         *struct{ MaximumConcurrency int }
}

type lambdaAPI struct {
	cfg      aws.Config
	endpoint string
	client   *http.Client
}

func (l *lambdaAPI) do(ctx context.Context, method, path string, query url.Values, body any, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("lambda %s %s: %w", method, path, err)
		}
	}
	u := strings.TrimRight(l.endpoint, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("lambda %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	creds, err := l.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("lambda %s %s: credentials: %w", method, path, err)
	}
	sum := sha256.Sum256(payload)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "lambda", l.cfg.Region, time.Now()); err != nil {
		return fmt.Errorf("lambda %s %s: sign: %w", method, path, err)
	}
	client := l.client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("lambda %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("lambda %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("lambda %s %s: HTTP %d: %.300s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("lambda %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (l *lambdaAPI) functionConfig(ctx context.Context, name string) (FunctionConfig, error) {
	var out struct{ Configuration FunctionConfig }
	err := l.do(ctx, http.MethodGet, "/2015-03-31/functions/"+url.PathEscape(name), nil, nil, &out)
	return out.Configuration, err
}

func (l *lambdaAPI) eventSourceMappings(ctx context.Context, function string) ([]EventSourceMapping, error) {
	var out struct{ EventSourceMappings []EventSourceMapping }
	err := l.do(ctx, http.MethodGet, "/2015-03-31/event-source-mappings/", url.Values{"FunctionName": {function}}, nil, &out)
	return out.EventSourceMappings, err
}

func (l *lambdaAPI) disableEventSourceMapping(ctx context.Context, uuid string) error {
	return l.do(ctx, http.MethodPut, "/2015-03-31/event-source-mappings/"+url.PathEscape(uuid), nil, map[string]any{"Enabled": false}, nil)
}
