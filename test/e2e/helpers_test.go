package e2e

import (
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// The leak scan and the budget count are what several end-to-end tests rely
// on to fail: check that they can.
func TestFindLeaks(t *testing.T) {
	needles := map[string]string{"password": "hunter2-secret", "token": "tok_abc123", "sig": "X-Amz-Signature="}
	tests := []struct {
		name string
		hay  map[string][]string
		want []leak
	}{
		{"clean", map[string][]string{"log": {`{"msg":"ok"}`, "token written, generation 3"}}, nil},
		{"password in a log", map[string][]string{"log": {"fine", `{"err":"bad hunter2-secret"}`}}, []leak{{"password", "log line 2"}}},
		{"presigned URL in an error", map[string][]string{"results": {`GET http://s3/x?X-Amz-Signature=abc`}}, []leak{{"sig", "results line 1"}}},
		{"two in one line", map[string][]string{"db": {"tok_abc123 hunter2-secret"}}, []leak{{"password", "db line 1"}, {"token", "db line 1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := findLeaks(needles, tt.hay)
			if len(got) != len(tt.want) {
				t.Fatalf("leaks %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("leak %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestMaxAuthIn5Min(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(offsets ...time.Duration) []rdptest.AuthRecord {
		var log []rdptest.AuthRecord
		for _, o := range offsets {
			log = append(log, rdptest.AuthRecord{Time: t0.Add(o)})
		}
		return log
	}
	tests := []struct {
		name string
		log  []rdptest.AuthRecord
		want int
	}{
		{"none", nil, 0},
		{"one", at(0), 1},
		{"all in one window", at(0, time.Minute, 4*time.Minute), 3},
		{"spread out", at(0, 3*time.Minute, 6*time.Minute, 9*time.Minute), 2},
		{"window edge excluded", at(0, 5*time.Minute), 1},
		{"burst later", at(0, 10*time.Minute, 10*time.Minute+time.Second, 11*time.Minute), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maxAuthIn5Min(tt.log); got != tt.want {
				t.Errorf("maxAuthIn5Min = %d, want %d", got, tt.want)
			}
		})
	}
}
