package lambdaerr_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/cfsync/cfsync/internal/lambdaerr"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

func TestResult(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want string // errorType
	}{
		{"plain error", fmt.Errorf("read secret: %w", cause), "Failure"},
		{"marked malformed", lambdaerr.Malformed(fmt.Errorf("event: field %q: %w", "action", cause)), "MalformedEvent"},
		{"kind wrapped by fmt.Errorf", fmt.Errorf("poll: %w", lambdaerr.Config(cause)), "Configuration"},
		{"kind inside errors.Join", fmt.Errorf("poll: %w", errors.Join(cause, lambdaerr.Partial(cause))), "PartialFailure"},
		{"empty ring", fmt.Errorf("list: %w", tokenring.ErrNoValidToken), "Outage"},
		{"refused token", fmt.Errorf("list: %w: %w", &rdp.APIError{StatusCode: 401}, tokenring.ErrTokenInvalid), "Outage"},
		{"429", &rdp.RateLimitError{Endpoint: "list"}, "Outage"},
		{"503", fmt.Errorf("list: %w", &rdp.APIError{StatusCode: 503}), "Outage"},
		{"404 is no outage", fmt.Errorf("list: %w", &rdp.APIError{StatusCode: 404}), "Failure"},
		{"connection refused", fmt.Errorf("list: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), "Outage"},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), "Outage"},
		{"password rejected", fmt.Errorf("sign on: %w", &rdp.AuthError{StatusCode: 400, Code: "access_denied", Description: "Invalid username or password."}), "Configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lambdaerr.Result(tt.err)
			if name := lambdaerr.TypeName(got); name != tt.want {
				t.Errorf("errorType = %s, want %s", name, tt.want)
			}
			if got.Error() != tt.err.Error() {
				t.Errorf("message = %q, want %q unchanged", got.Error(), tt.err.Error())
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("result does not wrap its cause")
			}
		})
	}
	if lambdaerr.Result(nil) != nil || lambdaerr.Malformed(nil) != nil {
		t.Error("nil must stay nil")
	}
}

// TestTypeNameIsLambdas checks TypeName against aws-lambda-go itself: the
// errorType its runtime reports for a handler's error.
func TestTypeNameIsLambdas(t *testing.T) {
	for _, err := range []error{lambdaerr.Malformed(errors.New("x")), lambdaerr.Result(errors.New("y")), fmt.Errorf("z: %w", errors.New("w"))} {
		h := lambda.NewHandler(func(context.Context) error { return err })
		fn := lambda.NewFunction(h) //lint:ignore SA1019 the only exported path through aws-lambda-go's error conversion
		var resp messages.InvokeResponse
		dl := time.Now().Add(time.Minute)
		if e := fn.Invoke(&messages.InvokeRequest{Payload: []byte(`{}`), Deadline: messages.InvokeRequest_Timestamp{Seconds: dl.Unix()}}, &resp); e != nil {
			t.Fatal(e)
		}
		if resp.Error == nil || resp.Error.Type != lambdaerr.TypeName(err) || resp.Error.Message != err.Error() {
			t.Errorf("aws-lambda-go reports %+v, TypeName says %s", resp.Error, lambdaerr.TypeName(err))
		}
	}
}

func TestInvokePassesTheRawPayloadAndTypesTheError(t *testing.T) {
	handle := func(_ context.Context, p []byte) (map[string]int, error) {
		if string(p) == "not json" {
			return nil, lambdaerr.Malformed(errors.New("event: not a JSON object"))
		}
		return map[string]int{"len": len(p)}, nil
	}
	out, err := lambdaerr.Invoke(context.Background(), []byte(`{"a":1}`), handle)
	if err != nil || string(out) != `{"len":7}` {
		t.Fatalf("Invoke = %s, %v; want {\"len\":7}, nil", out, err)
	}
	_, err = lambdaerr.Invoke(context.Background(), []byte("not json"), handle)
	if got := lambdaerr.TypeName(err); got != "MalformedEvent" {
		t.Errorf("errorType = %q (%v), want MalformedEvent", got, err)
	}
	_, err = lambdaerr.Invoke(context.Background(), nil, func(context.Context, []byte) (int, error) {
		return 0, fmt.Errorf("poll: %w", context.DeadlineExceeded)
	})
	if got := lambdaerr.TypeName(err); got != "Outage" {
		t.Errorf("errorType = %q (%v), want Outage", got, err)
	}
}
