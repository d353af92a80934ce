package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/landing"
	"github.com/cfsync/cfsync/internal/state"
)

// landingCalls records which landing entry the downloader uses.
type landingCalls struct {
	mu    sync.Mutex
	calls []string // "FileDone <file> <file-set>" or "FileLanded <file>"
}

func (l *landingCalls) FileLanded(_ context.Context, fileID string) (landing.Outcome, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, "FileLanded "+fileID)
	return landing.Incomplete, nil
}

func (l *landingCalls) FileDone(_ context.Context, fileID, fileSetID string) (landing.Outcome, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, "FileDone "+fileID+" "+fileSetID)
	return landing.Incomplete, nil
}

// TestLandingStepWithoutReread: the landing step is told the file is DONE
// and the file-set its state item names, so it does not read the item
// again; a file this invocation did not find or make DONE (a continuation)
// runs no landing step — the invocation that lands it does; a file another
// invocation made DONE between the check and BeginDownload uses the step
// that reads the item.
func TestLandingStepWithoutReread(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *rig)
		run   func(t *testing.T, r *rig) []string
		want  []string
	}{
		{name: "landed now: the item's file-set", setup: func(r *rig) {
			r.addQueued("f1", "a.bin", 1000, true)
			r.st.files["f1"].FileSetID = "fs-of-the-item"
		}, want: []string{"FileDone f1 fs-of-the-item"}},
		{name: "new item: the message's file-set", setup: func(r *rig) { r.rdp.add("f1", "a.bin", 1000, true) },
			want: []string{"FileDone f1 fs1"}},
		{name: "DONE already: the item read at the start", setup: func(r *rig) {
			r.rdp.add("f1", "a.bin", 1000, true)
			r.st.files["f1"] = &state.FileItem{FileID: "f1", FileSetID: "fs-done", Status: state.StatusDone}
		}, want: []string{"FileDone f1 fs-done"}},
		{name: "continuation: no landing step", setup: func(r *rig) {
			r.rdp.add("f1", "big.bin", 30*MiB, true)
			r.rdp.Delay = func(int64) time.Duration { return ms(1000) } // no range completes in the invocation
		}, run: func(t *testing.T, r *rig) []string {
			failed := r.handleOne(t, msgFor("f1"), 1, ms(500))
			if len(r.snd.messages()) != 1 {
				t.Fatalf("messages %v, want a continuation", r.snd.messages())
			}
			return failed
		}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			lc := &landingCalls{}
			r.h.landing = lc
			tt.setup(r)
			run := tt.run
			if run == nil {
				run = func(t *testing.T, r *rig) []string { return r.handleOne(t, msgFor("f1"), 1, 0) }
			}
			if failed := run(t, r); len(failed) != 0 {
				t.Fatalf("failed %v\n%s", failed, r.logs.String())
			}
			if !slices.Equal(lc.calls, tt.want) {
				t.Errorf("landing calls %v, want %v", lc.calls, tt.want)
			}
		})
	}
}
