package rdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestSubscriptionsAPI(t *testing.T) {
	var got []string
	var body struct {
		Transport struct{ TransportType string } `json:"transport"`
		Query     json.RawMessage
	}
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI())
		switch r.Method {
		case http.MethodPost:
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				t.Errorf("POST body: %v", err)
			}
			fmt.Fprint(w, `{"subscriptionID":"s1","query":{},"transportInfo":{"transportType":"AWS-SQS","endpoint":"https://sqs.us-east-1.amazonaws.com/1/q","cryptographyKey":"KEY"}}`)
		case http.MethodGet:
			fmt.Fprintf(w, `{"subscriptions":[{"subscriptionID":"s1","query":%s,"transportInfo":{"endpoint":"https://q","cryptographyKey":"KEY"}}]}`, ReadyQuery("bulk-ESG", "p1"))
		case http.MethodDelete:
			if r.ContentLength != 0 {
				t.Errorf("DELETE with a %d-byte body", r.ContentLength)
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	ctx := context.Background()
	s, err := c.Subscribe(ctx, ReadyQuery("bulk-ESG", "p1"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "s1" || s.CryptographyKey != "KEY" || strings.Contains(s.String()+s.GoString(), "KEY") {
		t.Fatalf("subscription %v", s)
	}
	if body.Transport.TransportType != "AWS-SQS" {
		t.Fatalf("POST body transport %+v", body.Transport)
	}
	if !strings.Contains(string(body.Query), `"payload.FileStoreNotification.fileset.packageId":"p1"`) ||
		!strings.Contains(string(body.Query), `"payload.FileStoreNotification.fileset.status":"READY"`) {
		t.Fatalf("query %s", body.Query)
	}
	subs, err := c.Subscriptions(ctx)
	if err != nil || len(subs) != 1 {
		t.Fatal(subs, err)
	}
	if b, p, ok := subs[0].Target(); !ok || b != "bulk-ESG" || p != "p1" {
		t.Fatalf("target %s %s %v", b, p, ok)
	}
	if err := c.DeleteSubscription(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if got[2] != "DELETE "+SubscriptionsPath+"?subscriptionID=s1" {
		t.Fatalf("delete sent %q", got[2])
	}
	if b, p, _ := (Subscription{Query: ReadyQuery("b", "*")}).Target(); b != "b" || p != "*" {
		t.Fatalf("bucket-wide target %s %s", b, p)
	}
}

func TestSubscribeErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"401", 401, `{"error":{"id":"x","code":"401","message":"token expired","status":"Unauthorized"}}`, ErrUnauthorized},
		{"missing key", 200, `{"subscriptionID":"s1","transportInfo":{"endpoint":"https://q"}}`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			_, err := c.Subscribe(context.Background(), ReadyQuery("b", "p"))
			var de *DecodeError
			if tt.want != nil && !errors.Is(err, tt.want) || tt.want == nil && !errors.As(err, &de) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestDeleteSubscriptionErrors: DELETE's answer body is ignored when it
// succeeds and decoded into a typed error when it does not.
func TestDeleteSubscriptionErrors(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("subscriptionID") == "gone" {
			w.WriteHeader(http.StatusNotFound)
		}
		fmt.Fprint(w, `{"error":{"id":"x","code":"404","message":"no such subscription","status":404}}`)
	}))
	ctx := context.Background()
	if err := c.DeleteSubscription(ctx, "s1"); err != nil {
		t.Fatalf("200 with a body: %v", err)
	}
	if err := c.DeleteSubscription(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("404: err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteSubscription(ctx, " "); err == nil || !strings.Contains(err.Error(), "subscription id") {
		t.Fatalf("blank id: err = %v", err)
	}
}

func TestCloudCredentialsFor(t *testing.T) {
	var auth, endpoint string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != CloudCredentialsPath {
			http.NotFound(w, r)
			return
		}
		auth, endpoint = r.Header.Get("Authorization"), r.URL.Query().Get("endpoint")
		if auth != "Bearer AT" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"id":"x","code":"401","message":"token expired","status":"Unauthorized"}}`)
			return
		}
		fmt.Fprint(w, `{"endpoint":"x","credentials":{"accessKeyId":"AK","secretKey":"SECRET","sessionToken":"ST","expiration":"2026-12-05T05:00:00Z"}}`)
	}))
	cr, err := c.CloudCredentialsFor(context.Background(), "AT", "https://sqs.us-east-1.amazonaws.com/1/q")
	if err != nil {
		t.Fatal(err)
	}
	if cr.AccessKeyID != "AK" || cr.SecretKey != "SECRET" || cr.SessionToken != "ST" || cr.Expiration.IsZero() {
		t.Fatalf("%#v", *cr)
	}
	if endpoint != "https://sqs.us-east-1.amazonaws.com/1/q" {
		t.Fatalf("endpoint %q", endpoint)
	}
	if s := fmt.Sprintf("%v %#v %+v", cr, cr, *cr); strings.Contains(s, "SECRET") || strings.Contains(s, "ST") && strings.Contains(s, "sessionToken") {
		t.Fatalf("credentials printed: %s", s)
	}
	if _, err := c.CloudCredentialsFor(context.Background(), "bad", "https://q"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("401: err = %v", err)
	}
}
