package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cfsync/cfsync/internal/testenv"
)

// TestRingHistory: every token version of every slot, the template's empty
// placeholder skipped; RingTokens lists their tokens once each; a slot
// version that is neither a token nor empty is an error naming the slot.
func TestRingHistory(t *testing.T) {
	a := testenv.MotoAWS(t)
	slots := []string{"slot-0", "slot-1"}
	a.SeedRing(t, slots, "tok-a", time.Hour)
	testenv.WriteSlot(t, a.SM, "slot-0", "tok-b", time.Hour, 2)
	testenv.WriteSlot(t, a.SM, "slot-1", "tok-b", time.Hour, 2)
	p := &Pipeline{Secrets: a.SM, Res: Resources{TokenSecretIDs: slots}}
	ctx := context.Background()
	hist, err := p.RingHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range hist {
		got = append(got, v.SecretID+" "+v.Slot.AccessToken)
		if v.Created.IsZero() {
			t.Errorf("%s %s: no creation time", v.SecretID, v.Slot.AccessToken)
		}
	}
	slices.Sort(got)
	if want := []string{"slot-0 tok-a", "slot-0 tok-b", "slot-1 tok-b"}; !slices.Equal(got, want) {
		t.Errorf("RingHistory = %q, want %q", got, want)
	}
	toks, err := p.RingTokens(ctx)
	slices.Sort(toks)
	if err != nil || !slices.Equal(toks, []string{"tok-a", "tok-b"}) {
		t.Errorf("RingTokens = %q, %v; want [tok-a tok-b]", toks, err)
	}
	a.CreateSecret(t, "slot-bad", aws.String("not a slot"))
	p.Res.TokenSecretIDs = append(p.Res.TokenSecretIDs, "slot-bad")
	if _, err := p.RingHistory(ctx); err == nil || !strings.Contains(err.Error(), "slot-bad") {
		t.Errorf("RingHistory with a corrupt slot = %v, want an error naming slot-bad", err)
	}
}
