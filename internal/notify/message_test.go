package notify

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const ok = `{"ecpMessageID":"m1","distributionSeqNo":3,"payload":{"FileStoreNotification":{"currentAt":"2026-12-05T04:00:00Z",
"fileset":{"id":"fs1","bucketName":"bulk-ESG","packageId":"p1","name":"n","status":"READY","numFiles":1,
"availableTo":"2027-01-01T00:00:00Z","files":{"values":[{"id":"f1","filename":"a.gz","fileSizeInBytes":9}]}}}}}`
	tests := []struct {
		name, in, wantErr string
		check             func(t *testing.T, n Notification)
	}{
		{name: "ready", in: ok, check: func(t *testing.T, n Notification) {
			if n.MessageID != "m1" || n.SeqNo != 3 || !n.FileSet.Ready() || n.FileSet.Files[0] != (File{ID: "f1", FileName: "a.gz", Size: 9}) ||
				n.FileSet.AvailableTo.IsZero() || n.CurrentAt.IsZero() {
				t.Fatalf("got %+v", n)
			}
		}},
		{name: "not ready is parsed, not an error", in: strings.Replace(strings.Replace(ok, "READY", "PENDING", 1), `"id":"fs1",`, ``, 1),
			check: func(t *testing.T, n Notification) {
				if n.FileSet.Ready() {
					t.Fatal("PENDING reported ready")
				}
			}},
		{name: "seqNo absent", in: strings.Replace(ok, `"distributionSeqNo":3,`, ``, 1), check: func(t *testing.T, n Notification) {
			if n.SeqNo != 0 {
				t.Fatal(n.SeqNo)
			}
		}},
		{name: "no payload", in: `{"ecpMessageID":"m"}`, wantErr: `"payload.FileStoreNotification.fileset" is missing`},
		{name: "not JSON", in: `<xml/>`, wantErr: "not a JSON object"},
		{name: "wrong type", in: strings.Replace(ok, `"numFiles":1`, `"numFiles":"x"`, 1), wantErr: `numFiles`},
		{name: "ready without id", in: strings.Replace(ok, `"id":"fs1",`, ``, 1), wantErr: `fileset.id" is empty`},
		{name: "ready without bucket", in: strings.Replace(ok, `"bucketName":"bulk-ESG",`, ``, 1), wantErr: `fileset.bucketName" is empty`},
		{name: "file without id", in: strings.Replace(ok, `"id":"f1",`, ``, 1), wantErr: `values[0].id" is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrMalformed with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, n)
		})
	}
}

func TestParseSubscriptionHidesKey(t *testing.T) {
	const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	s, k, err := ParseSubscription(`{"subscriptionID":"s1","endpoint":"https://sqs.us-east-1.amazonaws.com/1/q","cryptographyKey":"` + key + `"}`)
	if err != nil || len(k) != 32 {
		t.Fatal(err)
	}
	if strings.Contains(s.String(), key) {
		t.Fatal("String shows the key")
	}
	for _, tt := range []struct{ in, want string }{
		{`{"endpoint":"https://x/q","cryptographyKey":"` + key + `"}`, `"subscriptionID" is required`},
		{`{"subscriptionID":"s","endpoint":"q","cryptographyKey":"` + key + `"}`, `"endpoint"`},
		{`{"subscriptionID":"s","endpoint":"https://x/q","cryptographyKey":"AA"}`, `"cryptographyKey"`},
		{`nope`, "not a JSON object"},
	} {
		if _, _, err := ParseSubscription(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), key) {
			t.Errorf("%s: err = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestParseQueueCredentials(t *testing.T) {
	for _, in := range []string{"", "{}"} {
		c, err := ParseQueueCredentials(in)
		if err != nil || !c.Empty() {
			t.Fatalf("%q: %v %v", in, c, err)
		}
	}
	c, err := ParseQueueCredentials(`{"endpoint":"https://x/q","accessKeyId":"AKIA","secretKey":"SK-SECRET","sessionToken":"ST-SECRET","generation":2}`)
	if err != nil || c.Generation != 2 {
		t.Fatal(c, err)
	}
	if s := c.String() + c.GoString(); strings.Contains(s, "SECRET") || strings.Contains(s, "AKIA") {
		t.Fatal("String shows credentials")
	}
	if _, err := ParseQueueCredentials(`{"endpoint":"https://x/q","accessKeyId":"AKIA","secretKey":"s"}`); err == nil || !strings.Contains(err.Error(), `"sessionToken"`) {
		t.Fatal(err)
	}
}
