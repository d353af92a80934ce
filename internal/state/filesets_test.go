package state_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/state"
)

func TestFileSetLanding(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tbl.Now = func() time.Time { return now }

	if _, err := tbl.AddLanded(ctx, "fs1", "a"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("AddLanded on an unknown file-set: %v, want ErrNotFound", err)
	}
	if err := tbl.RecordFileSet(ctx, state.FileSetItem{FileSetID: "fs1"}); err == nil {
		t.Fatal("RecordFileSet without file ids: no error")
	}
	rec := state.FileSetItem{FileSetID: "fs1", Name: "ESG-Init", Bucket: "bulk-ESG", PackageID: "p1",
		Attributes: []state.Attribute{{Name: "ContentKey", Value: "3"}}, FileIDs: []string{"a", "b"}}
	if err := tbl.RecordFileSet(ctx, rec); err != nil {
		t.Fatal(err)
	}
	fs, err := tbl.AddLanded(ctx, "fs1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if fs.Complete() || !slices.Equal(fs.Landed, []string{"a"}) {
		t.Fatalf("after one of two files: complete=%v landed=%v", fs.Complete(), fs.Landed)
	}
	// Recording again (the next poll) keeps what has landed.
	if err := tbl.RecordFileSet(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.AddLanded(ctx, "fs1", "a"); err != nil { // a redelivery
		t.Fatal(err)
	}
	fs, err = tbl.AddLanded(ctx, "fs1", "b")
	if err != nil {
		t.Fatal(err)
	}
	if !fs.Complete() || fs.Name != "ESG-Init" || len(fs.Attributes) != 1 {
		t.Fatalf("after both files: %+v", fs)
	}

	if err := tbl.ClaimLanding(ctx, "fs1", "w1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := tbl.ClaimLanding(ctx, "fs1", "w2", now.Add(time.Minute)); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("second claim under a live lease: %v, want ErrConflict", err)
	}
	if err := tbl.ReleaseLanding(ctx, "fs1", "w2"); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("release by a non-owner: %v, want ErrConflict", err)
	}
	// The lease expires (the holder crashed): the next claim wins it.
	now = now.Add(2 * time.Minute)
	if err := tbl.ClaimLanding(ctx, "fs1", "w2", now.Add(time.Minute)); err != nil {
		t.Fatalf("claim after the lease expired: %v", err)
	}
	if err := tbl.MarkPublished(ctx, "fs1", "w1"); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("publish by the expired owner: %v, want ErrConflict", err)
	}
	if err := tbl.MarkPublished(ctx, "fs1", "w2"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if err := tbl.ClaimLanding(ctx, "fs1", "w3", now.Add(time.Minute)); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("claim after publishing: %v, want ErrConflict", err)
	}
	got, err := tbl.GetFileSet(ctx, "fs1")
	if err != nil {
		t.Fatal(err)
	}
	if got.PublishedAt == nil || got.LandingOwner != "" {
		t.Fatalf("published item: %+v", got)
	}
}

func TestReleaseLandingLetsTheNextClaimIn(t *testing.T) {
	tbl := newTestTable(t)
	ctx := context.Background()
	if err := tbl.RecordFileSet(ctx, state.FileSetItem{FileSetID: "fs", FileIDs: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	if err := tbl.ClaimLanding(ctx, "fs", "w1", until); err != nil {
		t.Fatal(err)
	}
	if err := tbl.ReleaseLanding(ctx, "fs", "w1"); err != nil {
		t.Fatal(err)
	}
	if err := tbl.ClaimLanding(ctx, "fs", "w2", until); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}
