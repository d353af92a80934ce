// Package backoff is cfsync's one retry-delay algorithm and its one
// context-aware sleep.
//
// The algorithm is "full jitter" capped exponential backoff as described in
// AWS's Architecture Blog post "Exponential Backoff And Jitter"
// (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
// the delay before retry n (1-based) is a uniformly random duration in
// [0, min(Max, Base × 2^(n−1))]. Callers that must wait at least some time
// (a Retry-After header) take the larger of the two.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff with full jitter.
type Policy struct {
	Base time.Duration // ceiling of the first delay; ≤ 0 means no delay
	Max  time.Duration // largest ceiling; ≤ 0 means Base × 2^(n−1) uncapped
}

// Ceiling is the upper bound of the delay before retry n (1-based):
// min(Max, Base × 2^(n−1)), without overflow.
func (p Policy) Ceiling(n int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	d := p.Base
	for i := 1; i < n; i++ {
		if p.Max > 0 && d >= p.Max {
			break
		}
		if d > (1<<62)/2 {
			break
		}
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return d
}

// Delay is a random duration in [0, Ceiling(n)].
func (p Policy) Delay(n int) time.Duration {
	c := p.Ceiling(n)
	if c <= 0 {
		return 0
	}
	return rand.N(c + 1)
}

// Sleep waits d or until ctx is done, whichever comes first, and returns
// ctx.Err() in the second case. d ≤ 0 returns at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
