package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

const (
	benchFileSets = 10_000
	benchPackage  = "p-bench"
)

// BenchmarkPollNothingNew polls a package of 10,000 file-sets (one file each,
// published one a minute over ~7 days) whose files are all DONE already:
// a full reconciliation and an incremental poll, against moto_server and the
// RDP simulator. It reports pages fetched, DynamoDB requests and SQS sends
// per poll; ns/op is the wall time of one poll.
func BenchmarkPollNothingNew(b *testing.B) {
	e := newITEnv(b, rdptest.Options{AccessTokenTTL: 4 * time.Hour})
	ctx := context.Background()
	q := e.newQueue(b)

	// 10,000 file-sets, modified one minute apart, the newest a minute ago.
	now := time.Now().UTC()
	base := now.Add(-benchFileSets * time.Minute)
	var ids []string
	for i := range benchFileSets {
		ts := base.Add(time.Duration(i) * time.Minute)
		fs := e.Sim.AddFileSet(rdptest.FileSetSpec{
			Bucket: itBucket, PackageID: benchPackage, Name: fmt.Sprintf("bench %05d", i),
			Created: ts, Modified: ts, AvailableTo: ts.Add(30 * 24 * time.Hour),
			Files: []rdptest.FileSpec{{Name: fmt.Sprintf("bench-%05d.csv.gz", i), Size: 1}},
		})
		ids = append(ids, fs.Files[0].ID)
	}
	seedDone(b, e.DB, ids)

	db := &dbOps{}
	h, _ := e.handler(b, q, nil, "", itBucket+"/"+benchPackage)
	h.State = state.New(db.client(e.Config), testenv.FunctionTable)
	h.PollPageSize = testSettings().PollPageSize // the production default, 100
	h.FullReconcileEvery = 1 << 30               // no automatic full reconciliation inside the loop
	h.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	h.Metrics = nil
	// Establish the watermark (and check nothing is new).
	if res, err := h.Handle(ctx, json.RawMessage(`{"full":true}`)); err != nil || res.FilesQueued != 0 || res.FileSetsSeen != benchFileSets {
		b.Fatalf("warm-up poll: %+v, %v", res, err)
	}

	for _, bm := range []struct {
		name, event string
		maxPages    int
	}{
		{"full", `{"full":true}`, benchFileSets / 100},
		{"incremental", `{}`, 2},
	} {
		b.Run(bm.name, func(b *testing.B) {
			pages0, db0 := e.fileSetRequests(), db.total()
			polls := 0
			for b.Loop() {
				res, err := h.Handle(ctx, json.RawMessage(bm.event))
				if err != nil || res.FilesQueued != 0 {
					b.Fatalf("poll: %+v, %v", res, err)
				}
				polls++
			}
			pages := float64(e.fileSetRequests()-pages0) / float64(polls)
			if pages > float64(bm.maxPages) {
				b.Errorf("%s poll fetched %.1f pages, want ≤ %d", bm.name, pages, bm.maxPages)
			}
			b.ReportMetric(pages, "pages/op")
			b.ReportMetric(float64(db.total()-db0)/float64(polls), "ddb-requests/op")
		})
	}
}

// seedDone writes a DONE file item for every id (BatchWriteItem, 25 a call).
func seedDone(b *testing.B, db *dynamodb.Client, ids []string) {
	b.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	for start := 0; start < len(ids); start += 25 {
		var reqs []dtypes.WriteRequest
		for _, id := range ids[start:min(start+25, len(ids))] {
			av, err := attributevalue.MarshalMap(state.FileItem{
				PK: state.FilePK(id), SK: state.SKFile, FileID: id, FileSetID: "seeded", Bucket: itBucket, PackageID: benchPackage,
				Status: state.StatusDone, CreatedAt: now, UpdatedAt: now, DoneAt: now,
			})
			if err != nil {
				b.Fatal(err)
			}
			reqs = append(reqs, dtypes.WriteRequest{PutRequest: &dtypes.PutRequest{Item: av}})
		}
		for len(reqs) > 0 {
			out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]dtypes.WriteRequest{testenv.FunctionTable: reqs}})
			if err != nil {
				b.Fatal(err)
			}
			reqs = out.UnprocessedItems[testenv.FunctionTable]
		}
	}
}
