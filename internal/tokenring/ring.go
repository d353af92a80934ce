package tokenring

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
)

// SecretsAPI is the part of Secrets Manager a ring reader uses.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	BatchGetSecretValue(ctx context.Context, in *secretsmanager.BatchGetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.BatchGetSecretValueOutput, error)
}

var _ SecretsAPI = (*secretsmanager.Client)(nil)

// SlotValue is one slot as read from Secrets Manager.
type SlotValue struct {
	ID   string // the secret id as configured in TOKEN_SECRET_IDS
	Slot Slot   // zero when the slot is empty or unusable
	// VersionCreated is when the slot's current version was written (zero
	// when it has no value): the refresher counts it as the slot's last write.
	VersionCreated time.Time
	// Err says why the slot is unusable (malformed content or a read error);
	// nil for a good or an empty slot. It never contains the slot's content.
	Err error
}

// Ring reads the slots of a token ring. It is safe for concurrent use.
type Ring struct {
	SM  SecretsAPI
	IDs []string
	// noBatch is set once BatchGetSecretValue proved unsupported.
	noBatch atomic.Bool
}

// maxBatch is BatchGetSecretValue's limit on SecretIdList.
const maxBatch = 20

// Read returns every slot, in IDs order. One BatchGetSecretValue call reads
// them all; when that API is unavailable (or fails as a whole) the slots are
// read one GetSecretValue at a time. A slot with no value (ResourceNotFound,
// no AWSCURRENT version) is empty, not an error. Read fails only when no
// slot could be read at all.
func (r *Ring) Read(ctx context.Context) ([]SlotValue, error) {
	if len(r.IDs) == 0 {
		return nil, errors.New("read token ring: no slots configured")
	}
	if !r.noBatch.Load() {
		vals, err := r.readBatch(ctx)
		if err == nil {
			return vals, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read token ring: %w", ctx.Err())
		}
		if unsupported(err) {
			r.noBatch.Store(true)
		}
		// moto (and older endpoints) fail the whole batch for one slot
		// without a value; reading one by one sorts that out.
	}
	return r.readEach(ctx)
}

func (r *Ring) readBatch(ctx context.Context) ([]SlotValue, error) {
	vals := make([]SlotValue, len(r.IDs))
	for i, id := range r.IDs {
		vals[i].ID = id
	}
	done := make([]bool, len(r.IDs))
	for start := 0; start < len(r.IDs); start += maxBatch {
		end := min(start+maxBatch, len(r.IDs))
		in := &secretsmanager.BatchGetSecretValueInput{SecretIdList: append([]string(nil), r.IDs[start:end]...)}
		for page := 0; ; page++ {
			if page > 10 {
				return nil, errors.New("batch get secret value: too many pages")
			}
			out, err := r.SM.BatchGetSecretValue(ctx, in)
			if err != nil {
				return nil, fmt.Errorf("batch get secret value: %w", err)
			}
			for _, e := range out.SecretValues {
				i := matchID(r.IDs[start:end], aws.ToString(e.ARN), aws.ToString(e.Name))
				if i < 0 {
					continue
				}
				i += start
				vals[i] = slotFromValue(r.IDs[i], e.SecretString, e.CreatedDate)
				done[i] = true
			}
			for _, e := range out.Errors {
				i := matchID(r.IDs[start:end], aws.ToString(e.SecretId), aws.ToString(e.SecretId))
				if i < 0 {
					continue
				}
				i += start
				done[i] = true
				if aws.ToString(e.ErrorCode) == "ResourceNotFoundException" {
					vals[i] = SlotValue{ID: r.IDs[i]} // no value yet: empty
					continue
				}
				vals[i] = SlotValue{ID: r.IDs[i], Err: fmt.Errorf("read slot %s: %s: %s", r.IDs[i], aws.ToString(e.ErrorCode), aws.ToString(e.Message))}
			}
			if out.NextToken == nil || *out.NextToken == "" {
				break
			}
			in.NextToken = out.NextToken
		}
	}
	// Ids the batch answer could not be matched to (e.g. partial ARNs) are read one by one.
	for i, ok := range done {
		if !ok {
			vals[i] = r.readOne(ctx, r.IDs[i])
		}
	}
	return vals, nil
}

func (r *Ring) readEach(ctx context.Context) ([]SlotValue, error) {
	vals := make([]SlotValue, len(r.IDs))
	var errs []error
	for i, id := range r.IDs {
		vals[i] = r.readOne(ctx, id)
		if vals[i].Err != nil && errors.Is(vals[i].Err, errRead) {
			errs = append(errs, vals[i].Err)
		}
	}
	if len(errs) == len(r.IDs) {
		return nil, fmt.Errorf("read token ring: %w", errors.Join(errs...))
	}
	return vals, nil
}

// errRead marks a slot error that is a failure to read, not bad content.
var errRead = errors.New("read failed")

func (r *Ring) readOne(ctx context.Context, id string) SlotValue {
	out, err := r.SM.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		if isNotFound(err) {
			return SlotValue{ID: id}
		}
		return SlotValue{ID: id, Err: fmt.Errorf("read slot %s: %w: %w", id, errRead, err)}
	}
	return slotFromValue(id, out.SecretString, out.CreatedDate)
}

func slotFromValue(id string, s *string, created *time.Time) SlotValue {
	v := SlotValue{ID: id, VersionCreated: aws.ToTime(created)}
	if s == nil {
		return v // binary or no value: nothing a reader can use
	}
	slot, err := ParseSlot(*s)
	switch {
	case errors.Is(err, ErrEmptySlot):
	case err != nil:
		v.Err = fmt.Errorf("slot %s: %w", id, err)
	default:
		v.Slot = slot
	}
	return v
}

// matchID finds the configured id a batch answer belongs to (by name, full
// ARN or requested id).
func matchID(ids []string, arn, name string) int {
	for i, id := range ids {
		if id == arn || id == name {
			return i
		}
	}
	// A configured ARN without the random suffix matches the full ARN's prefix.
	for i, id := range ids {
		if strings.HasPrefix(id, "arn:") && arn != "" && strings.HasPrefix(arn, id+"-") {
			return i
		}
	}
	return -1
}

func isNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException"
}

// unsupported reports whether err says the endpoint does not implement the operation.
func unsupported(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "UnknownOperationException", "InvalidAction", "NotImplemented", "UnsupportedOperation", "NotImplementedException":
		return true
	}
	return false
}

// Newest returns the highest-generation slot that is valid at now (treated
// as expired skew early), or false.
func Newest(vals []SlotValue, now time.Time, skew time.Duration) (SlotValue, bool) {
	var best SlotValue
	found := false
	for _, v := range vals {
		if v.Err != nil || !v.Slot.Valid(now, skew) {
			continue
		}
		if !found || v.Slot.Generation > best.Slot.Generation {
			best, found = v, true
		}
	}
	return best, found
}

// Latest returns the highest-generation slot holding a token, expired or
// not (the refresher's starting point), or false when every slot is empty.
func Latest(vals []SlotValue) (SlotValue, bool) {
	var best SlotValue
	found := false
	for _, v := range vals {
		if v.Err != nil || v.Slot.Empty() {
			continue
		}
		if !found || v.Slot.Generation > best.Slot.Generation {
			best, found = v, true
		}
	}
	return best, found
}
