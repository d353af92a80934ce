// Package lambdaerr gives the errors cfsync's functions return to Lambda a
// meaningful errorType, so that a Lambda destination, a Step Functions Catch
// or a log/metric filter can tell them apart.
//
// aws-lambda-go reports as errorType the name of the returned error's
// (pointed-to) type (lambda/errors.go, lambdaErrorResponse): a plain
// fmt.Errorf error shows as "wrapError". Each kind here is its own type, so
// its name is the errorType: MalformedEvent, Configuration, Outage,
// PartialFailure and Failure. Every kind wraps its cause (errors.Is and
// errors.As see through it) and prints the cause's message unchanged.
package lambdaerr

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"

	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// cause is what every kind holds.
type cause struct{ err error }

func (c cause) Error() string { return c.err.Error() }
func (c cause) Unwrap() error { return c.err }

// MalformedEvent: the invocation's payload is not an event this function
// accepts. Sending the same event again fails the same way.
type MalformedEvent struct{ cause }

// Configuration: the function's settings or secrets are wrong (a missing
// subscription, credentials RDP rejects, an unparseable secret). An
// operator must fix them; retries fail the same way.
type Configuration struct{ cause }

// Outage: RDP or AWS is unavailable (no usable token, a token RDP refuses,
// rate limiting, 5xx, network). Nothing is lost; a later run catches up by
// itself.
type Outage struct{ cause }

// PartialFailure: some of the invocation's work failed and the rest was
// done (e.g. one subscription of several). The failed part is retried by
// the next run.
type PartialFailure struct{ cause }

// Failure: any other error.
type Failure struct{ cause }

// kind is implemented by every kind: rewrap returns a new error of the
// same kind around err.
type kind interface {
	error
	rewrap(err error) error
}

func (*MalformedEvent) rewrap(err error) error { return &MalformedEvent{cause{err}} }
func (*Configuration) rewrap(err error) error  { return &Configuration{cause{err}} }
func (*Outage) rewrap(err error) error         { return &Outage{cause{err}} }
func (*PartialFailure) rewrap(err error) error { return &PartialFailure{cause{err}} }
func (*Failure) rewrap(err error) error        { return &Failure{cause{err}} }

// Malformed marks err as a MalformedEvent (nil stays nil).
func Malformed(err error) error { return wrap(err, (*MalformedEvent)(nil)) }

// Config marks err as a Configuration error (nil stays nil).
func Config(err error) error { return wrap(err, (*Configuration)(nil)) }

// Unavailable marks err as an Outage (nil stays nil).
func Unavailable(err error) error { return wrap(err, (*Outage)(nil)) }

// Partial marks err as a PartialFailure (nil stays nil).
func Partial(err error) error { return wrap(err, (*PartialFailure)(nil)) }

func wrap(err error, k kind) error {
	if err == nil {
		return nil
	}
	return k.rewrap(err)
}

// Invoke is the body of each function's lambda.Handler Invoke method: it
// passes the raw payload to handle (so that even a payload that is not JSON
// gets the function's own error naming the problem, not the JSON decoder's
// bare message) and returns the JSON result, or the error as Result(err).
func Invoke[P ~[]byte, R any](ctx context.Context, payload []byte, handle func(context.Context, P) (R, error)) ([]byte, error) {
	res, err := handle(ctx, P(payload))
	if err != nil {
		return nil, Result(err)
	}
	return json.Marshal(res)
}

// Result is the error a function returns to Lambda for err: err itself when
// it already is a kind; else err wrapped in the first kind found in its
// chain (a kind wrapped by fmt.Errorf would otherwise show as wrapError);
// else the kind Classify gives it. nil stays nil.
func Result(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(kind); ok {
		return err
	}
	var k kind
	if errors.As(err, &k) {
		return k.rewrap(err)
	}
	return Classify(err)
}

// Classify wraps an error of no kind yet by what its chain says: credentials
// RDP rejects are Configuration; no usable token, a refused token, rate
// limiting, a 5xx, a network fault or a timeout are an Outage; anything else
// is a Failure.
func Classify(err error) error {
	var ae *rdp.APIError
	var pe *rdp.PresignedError
	switch {
	case errors.Is(err, rdp.ErrInvalidCredentials), errors.Is(err, rdp.ErrUnauthorizedClient):
		return &Configuration{cause{err}}
	case errors.Is(err, tokenring.ErrNoValidToken), errors.Is(err, tokenring.ErrTokenInvalid),
		errors.Is(err, rdp.ErrUnauthorized), errors.Is(err, rdp.ErrRateLimited),
		errors.As(err, &ae) && ae.Temporary(), errors.As(err, &pe) && pe.Temporary(),
		errors.Is(err, context.DeadlineExceeded), isNetError(err):
		return &Outage{cause{err}}
	}
	return &Failure{cause{err}}
}

// isNetError reports a network-level failure (timeout, refused or reset
// connection).
func isNetError(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne)
}

// TypeName is the errorType aws-lambda-go reports for err: the name of its
// type, or of the type it points to (lambda/errors.go). Tests use it.
func TypeName(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}
