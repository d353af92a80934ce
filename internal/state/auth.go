package state

import (
	"context"
	"slices"
	"time"
)

// SKBudget is the sort key of the refresher's auth state (pk AUTH).
const SKBudget = "BUDGET"

// AuthState is the AUTH / BUDGET item: everything the token-refresher must
// remember between invocations about its requests to /auth. It holds no
// secret: times, counts and error codes only.
//
// Writes are optimistic: PutAuthState succeeds only if Version is still the
// version that was read, so two overlapping refreshers never both spend the
// last unit of budget.
type AuthState struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
	// Requests holds the time (Unix milliseconds) of every auth request sent
	// in the current rolling window, failed ones and revokes included.
	Requests []int64 `dynamodbav:"requests"`
	// Failures counts consecutive failed auth attempts (reset by a success).
	Failures int `dynamodbav:"failures"`
	// NotBefore: no auth request before this time (exponential backoff or a
	// 429's Retry-After).
	NotBefore time.Time `dynamodbav:"notBefore,omitempty"`
	// LastFailure is the reason code of the last failure ("invalid_grant",
	// "session_quota", "rate_limited", …) and LastFailureAt its time.
	LastFailure   string    `dynamodbav:"lastFailure,omitempty"`
	LastFailureAt time.Time `dynamodbav:"lastFailureAt,omitempty"`
	// SessionStart is the time of the last successful password grant (a v1
	// session lives at most ~18 h from it).
	SessionStart time.Time `dynamodbav:"sessionStart,omitempty"`
	// Revoked: an operator revoked the session ({"action":"revoke"}); no
	// sign-on happens until a forced refresh clears it.
	Revoked   bool      `dynamodbav:"revoked"`
	RevokedAt time.Time `dynamodbav:"revokedAt,omitempty"`
	// LeaseOwner / LeaseUntil: the invocation that is talking to /auth now
	// (a random id, not a secret). Another invocation that finds a live lease
	// stays away, so overlapping runs do not race each other's sign-ons.
	LeaseOwner string    `dynamodbav:"leaseOwner,omitempty"`
	LeaseUntil time.Time `dynamodbav:"leaseUntil,omitempty"`
	UpdatedAt  time.Time `dynamodbav:"updatedAt"`
	// Version is the optimistic-lock counter (0: the item does not exist yet).
	Version int64 `dynamodbav:"version"`
}

func budgetKey() primaryKey {
	return itemKey(PKAuth, SKBudget)
}

// GetAuthState returns the auth state (a zero state with Version 0 when none
// was written yet).
func (t *Table) GetAuthState(ctx context.Context) (*AuthState, error) {
	st := &AuthState{PK: PKAuth, SK: SKBudget}
	if _, err := t.getItem(ctx, budgetKey(), st, "auth state"); err != nil {
		return nil, err
	}
	return st, nil
}

// PutAuthState writes st if the stored version is still st.Version, then
// increments st.Version. It returns ErrConflict when another writer got
// there first (re-read and try again).
func (t *Table) PutAuthState(ctx context.Context, st *AuthState) error {
	next := *st
	next.PK, next.SK = PKAuth, SKBudget
	next.Version = st.Version + 1
	next.UpdatedAt = t.now()
	if err := t.putIfCounter(ctx, "put auth state", next, "version", st.Version); err != nil {
		return err
	}
	st.Version = next.Version
	st.UpdatedAt = next.UpdatedAt
	return nil
}

// Prune drops requests older than window before now.
func (s *AuthState) Prune(now time.Time, window time.Duration) {
	cut := now.Add(-window).UnixMilli()
	s.Requests = slices.DeleteFunc(s.Requests, func(ms int64) bool { return ms <= cut })
}

// RequestsIn counts the requests in the window ending at now. A request
// stamped after now (by an invocation whose clock runs ahead) was sent
// nonetheless and counts too.
func (s *AuthState) RequestsIn(now time.Time, window time.Duration) int {
	cut := now.Add(-window).UnixMilli()
	n := 0
	for _, ms := range s.Requests {
		if ms > cut {
			n++
		}
	}
	return n
}

// NextFree returns when the window ending at now will have room for one
// more request under budget (now if it has room already).
func (s *AuthState) NextFree(now time.Time, window time.Duration, budget int) time.Time {
	cut := now.Add(-window).UnixMilli()
	var in []int64
	for _, ms := range s.Requests {
		if ms > cut {
			in = append(in, ms)
		}
	}
	if len(in) < budget {
		return now
	}
	slices.Sort(in)
	// The (len-budget)-th oldest must leave the window.
	return time.UnixMilli(in[len(in)-budget]).Add(window).Add(time.Millisecond).UTC()
}
