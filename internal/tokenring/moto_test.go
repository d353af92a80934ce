package tokenring_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
)

// TestReaderAgainstMoto checks the reader against moto's Secrets Manager and
// DynamoDB: BatchGetSecretValue (which moto fails as a whole when a slot has
// no value), empty placeholders, writes with ClientRequestToken, and reports.
func TestReaderAgainstMoto(t *testing.T) {
	_, cfg := testenv.MotoConfig(t)
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(cfg)
	db := dynamodb.NewFromConfig(cfg)
	testenv.StateTable(t, db, "state")
	// ring-0: placeholder {}; ring-1: no value at all; ring-2: addressed by ARN.
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("ring-0"), SecretString: aws.String("{}")}); err != nil {
		t.Fatal(err)
	}
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("ring-1")}); err != nil {
		t.Fatal(err)
	}
	out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("ring-2"), SecretString: aws.String("{}")})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"ring-0", "ring-1", aws.ToString(out.ARN)}
	now := time.Now().UTC()
	table := state.New(db, "state")
	r := tokenring.NewReader(sm, table, ids, tokenring.ReaderOptions{})

	if _, err := r.Token(); !errors.Is(err, tokenring.ErrNoValidToken) {
		t.Fatalf("empty ring: %v, want ErrNoValidToken", err)
	}
	for i, s := range []tokenring.Slot{
		{AccessToken: "tok1", RefreshToken: "r1", ExpiresAt: now.Add(10 * time.Minute), IssuedAt: now, Generation: 1},
		{AccessToken: "tok2", RefreshToken: "r2", ExpiresAt: now.Add(10 * time.Minute), IssuedAt: now, Generation: 2},
	} {
		id := []string{aws.ToString(out.ARN), "ring-0"}[i]
		if err := tokenring.Write(ctx, sm, id, s); err != nil {
			t.Fatal(err)
		}
		// The same generation again is idempotent: no new version.
		if err := tokenring.Write(ctx, sm, id, s); err != nil {
			t.Fatalf("idempotent rewrite: %v", err)
		}
	}
	vers, err := sm.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: aws.String("ring-0")})
	if err != nil {
		t.Fatal(err)
	}
	if len(vers.Versions) != 2 { // the placeholder and generation 2
		t.Errorf("ring-0 has %d versions, want 2", len(vers.Versions))
	}
	tok, err := r.Token()
	if err != nil || tok.AccessToken != "tok2" {
		t.Fatalf("Token = %v, %v; want tok2", tok, err)
	}
	vals, err := (&tokenring.Ring{SM: sm, IDs: ids}).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !vals[1].Slot.Empty() || vals[1].Err != nil || vals[2].Slot.Generation != 1 || vals[0].VersionCreated.IsZero() {
		t.Errorf("ring read = %+v", vals)
	}

	// A 401 with nothing newer in the ring is reported for generation 2.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":{"code":"401","message":"token expired"}}`)
	}))
	defer srv.Close()
	_, err = r.HTTPClient(nil).Get(srv.URL + "/file-store/v1/file-sets")
	if !errors.Is(err, tokenring.ErrTokenInvalid) || !errors.Is(err, rdp.ErrUnauthorized) {
		t.Fatalf("GET: %v", err)
	}
	rep, err := table.GetTokenReport(ctx, 2)
	if err != nil || rep.Reports != 1 {
		t.Fatalf("report: %+v, %v", rep, err)
	}
}
