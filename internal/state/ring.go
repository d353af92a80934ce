package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Secret-ring bookkeeping (see the layout in state.go): which generation of
// a secret the refresher wrote last, and the readers' reports that one was
// refused.
//
//	AUTH / RING                 the token ring's generation counter and each slot's last write
//	RING / REPORT#<generation>  a reader's token-invalid report for one generation
//	NOTIFY / QUEUECREDS         the queue credentials' generation and the reader's latest rejection report
//
// None holds a token or credential: only generation numbers, slot ids, times
// and reasons.
const (
	PKAuth         = "AUTH"
	SKRing         = "RING"
	PKRing         = "RING"
	skReportPrefix = "REPORT#"
)

// ReportTTL is how long a token-invalid report is kept (DynamoDB TTL).
const ReportTTL = 24 * time.Hour

// SlotWrite is the refresher's record of one write to a ring slot.
type SlotWrite struct {
	Generation int64     `dynamodbav:"generation"`
	WrittenAt  time.Time `dynamodbav:"writtenAt"`
}

// RingState is the AUTH / RING item: the highest generation ever claimed
// (never reset, starting at 1) and the last write to each slot, keyed by the
// slot's secret id.
type RingState struct {
	PK         string               `dynamodbav:"pk"`
	SK         string               `dynamodbav:"sk"`
	Generation int64                `dynamodbav:"generation"`
	Slots      map[string]SlotWrite `dynamodbav:"slots"`
	UpdatedAt  time.Time            `dynamodbav:"updatedAt"`
}

func ringKey() primaryKey {
	return itemKey(PKAuth, SKRing)
}

// GetRingState returns the ring state; a zero state (generation 0, no slots)
// when the refresher never wrote one.
func (t *Table) GetRingState(ctx context.Context) (*RingState, error) {
	st := &RingState{PK: PKAuth, SK: SKRing, Slots: map[string]SlotWrite{}}
	if _, err := t.getItem(ctx, ringKey(), st, "ring state"); err != nil {
		return nil, err
	}
	if st.Slots == nil {
		st.Slots = map[string]SlotWrite{}
	}
	return st, nil
}

// ClaimGeneration records that generation next is being written to slotID at
// `at`. It succeeds only if the stored generation is still prev (conditional
// write on the generation): of two refreshers that overlap, one wins and the
// other gets ErrConflict and must not write its token. next must be > prev.
func (t *Table) ClaimGeneration(ctx context.Context, prev *RingState, next int64, slotID string, at time.Time) (*RingState, error) {
	if prev == nil {
		return nil, errors.New("claim generation: no previous ring state")
	}
	if next <= prev.Generation {
		return nil, fmt.Errorf("claim generation %d: not above the stored generation %d", next, prev.Generation)
	}
	st := &RingState{PK: PKAuth, SK: SKRing, Generation: next, Slots: map[string]SlotWrite{}, UpdatedAt: t.now()}
	for k, v := range prev.Slots {
		st.Slots[k] = v
	}
	st.Slots[slotID] = SlotWrite{Generation: next, WrittenAt: at.UTC()}
	if err := t.putIfCounter(ctx, fmt.Sprintf("claim generation %d", next), st, "generation", prev.Generation); err != nil {
		return nil, err
	}
	return st, nil
}

// TokenReport is a reader's report that the token of one generation was
// refused (401) even after re-reading the ring. It holds no token.
type TokenReport struct {
	PK         string    `dynamodbav:"pk"`
	SK         string    `dynamodbav:"sk"`
	Generation int64     `dynamodbav:"generation"`
	FirstAt    time.Time `dynamodbav:"firstAt"`
	LastAt     time.Time `dynamodbav:"lastAt"`
	Reason     string    `dynamodbav:"reason"`
	Reports    int64     `dynamodbav:"reports"`
	// CheckedAt is when the refresher last asked RDP whether the reported
	// token is still accepted, and it was: reports up to then cost no ring
	// write. Zero: not checked yet.
	CheckedAt time.Time `dynamodbav:"checkedAt,omitempty"`
	TTL       int64     `dynamodbav:"ttl,omitempty"`
}

// ReportSK is the sort key of the report for generation gen.
func ReportSK(gen int64) string { return skReportPrefix + strconv.FormatInt(gen, 10) }

func reportKey(gen int64) primaryKey {
	return itemKey(PKRing, ReportSK(gen))
}

// maxReason bounds a stored reason.
const maxReason = 300

// ReportInvalidToken records (or counts again) a token-invalid report for
// generation gen. reason must not contain anything secret (callers pass an
// HTTP status and message, never a token or URL).
func (t *Table) ReportInvalidToken(ctx context.Context, gen int64, reason string) error {
	if gen <= 0 {
		return fmt.Errorf("report invalid token: bad generation %d", gen)
	}
	reason = clipReason(reason, maxReason)
	now := t.now()
	_, err := t.update(ctx, reportKey(gen), write{
		Update: "SET generation = :g, firstAt = if_not_exists(firstAt, :now), lastAt = :now, reason = :r, #ttl = :ttl ADD reports :one",
		Names:  map[string]string{"#ttl": AttrTTL},
		Values: values{":g": numAV(gen), ":now": timeAV(now), ":r": strAV(reason), ":ttl": numAV(now.Add(ReportTTL).Unix()), ":one": numAV(1)},
	})
	if err != nil {
		return fmt.Errorf("report invalid token generation %d: %w", gen, err)
	}
	return nil
}

// GetTokenReport returns the report for generation gen, or ErrNotFound.
func (t *Table) GetTokenReport(ctx context.Context, gen int64) (*TokenReport, error) {
	return mustGet[TokenReport](ctx, t, reportKey(gen), "token report "+strconv.FormatInt(gen, 10))
}

// Unconfirmed reports whether a report arrived after the refresher last
// found the token still accepted (always true for a report never checked).
func (r *TokenReport) Unconfirmed() bool {
	return r.CheckedAt.IsZero() || r.LastAt.After(r.CheckedAt)
}

// MarkReportChecked records that at `at` RDP still accepted the token of
// generation gen: the reports received so far are dismissed. It does not
// create a report that does not exist.
func (t *Table) MarkReportChecked(ctx context.Context, gen int64, at time.Time) error {
	_, err := t.update(ctx, reportKey(gen), write{
		Update: "SET checkedAt = :at", Cond: "attribute_exists(pk)", Values: values{":at": timeAV(at)},
	})
	if isConditionFailed(err) {
		return fmt.Errorf("mark token report %d checked: %w", gen, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("mark token report %d checked: %w", gen, err)
	}
	return nil
}

// Notification queue credentials item (NOTIFY / QUEUECREDS): the generation
// of the queue credentials the refresher last wrote to their secret, when,
// and the notification reader's latest report that AWS rejected them. It
// holds no credential.
const (
	PKNotify      = "NOTIFY"
	SKQueueCreds  = "QUEUECREDS"
	attrQCGen     = "generation"
	attrQCWritten = "writtenAt"
)

// QueueCredsState is the NOTIFY / QUEUECREDS item.
type QueueCredsState struct {
	Generation         int64     `dynamodbav:"generation"`
	WrittenAt          time.Time `dynamodbav:"writtenAt"`
	ReportedGeneration int64     `dynamodbav:"reportedGeneration"`
	ReportedAt         time.Time `dynamodbav:"reportedAt"`
	Reason             string    `dynamodbav:"reason"`
	Reports            int64     `dynamodbav:"reports"`
}

// Reported reports whether a reader found the current generation rejected.
func (s *QueueCredsState) Reported() bool {
	return s.Generation > 0 && s.ReportedGeneration >= s.Generation
}

func queueCredsKey() primaryKey { return itemKey(PKNotify, SKQueueCreds) }

// GetQueueCredsState returns the item, or a zero state when none exists.
func (t *Table) GetQueueCredsState(ctx context.Context) (*QueueCredsState, error) {
	st := &QueueCredsState{}
	if _, err := t.getItem(ctx, queueCredsKey(), st, "queue credentials state"); err != nil {
		return nil, err
	}
	return st, nil
}

// ReportQueueCredentials records that AWS rejected the queue credentials of
// generation gen (ExpiredToken and the like). reason must hold nothing secret.
func (t *Table) ReportQueueCredentials(ctx context.Context, gen int64, reason string) error {
	_, err := t.update(ctx, queueCredsKey(), write{
		Update: "SET reportedGeneration = :g, reportedAt = :now, reason = :r ADD reports :one",
		Values: values{":g": numAV(gen), ":now": timeAV(t.now()), ":r": strAV(clipReason(reason, maxReason)), ":one": numAV(1)},
	})
	if err != nil {
		return fmt.Errorf("report queue credentials generation %d: %w", gen, err)
	}
	return nil
}

// ClaimQueueCredsGeneration records that generation next is about to be
// written, if the stored generation is still prev (so two refresher runs
// never both write). It returns ErrConflict when another run was first.
func (t *Table) ClaimQueueCredsGeneration(ctx context.Context, prev, next int64, at time.Time) error {
	cond := "attribute_not_exists(pk) OR #g = :prev"
	if prev == 0 {
		cond = "attribute_not_exists(pk) OR attribute_not_exists(#g) OR #g = :prev"
	}
	_, err := t.update(ctx, queueCredsKey(), write{
		Update: "SET #g = :next, #w = :at", Cond: cond,
		Names:  map[string]string{"#g": attrQCGen, "#w": attrQCWritten},
		Values: values{":prev": numAV(prev), ":next": numAV(next), ":at": timeAV(at)},
	})
	if err != nil {
		return conflictOr(fmt.Sprintf("claim queue credentials generation %d", next), err)
	}
	return nil
}
