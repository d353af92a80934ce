package rdp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Paths of the CFS file-store notification API, as LSEG's FileNoti sample
// uses them (github.com/LSEG-API-Samples/FileNoti.Message.Distribution.Tools,
// msg_dist_tools/fileNotiMessages.py).
const (
	SubscriptionsPath    = "/message-services/v1/file-store/subscriptions"
	CloudCredentialsPath = "/auth/cloud-credentials/v1/"
)

// TransportAWSSQS is the only transport cfsync uses.
const TransportAWSSQS = "AWS-SQS"

// Subscription is a file-store notification subscription. Its
// CryptographyKey decrypts the queue's messages: never log it (String and
// GoString leave it out).
type Subscription struct {
	ID              string
	Endpoint        string          // SQS queue URL (transportInfo.endpoint)
	CryptographyKey string          // base64 AES key (transportInfo.cryptographyKey)
	Query           json.RawMessage // the filter, as RDP returns it
}

func (s Subscription) String() string {
	return fmt.Sprintf("subscription %s (queue %s)", s.ID, s.Endpoint)
}

// GoString hides the key.
func (s Subscription) GoString() string { return s.String() }

type subscriptionJSON struct {
	SubscriptionID string          `json:"subscriptionID"`
	Query          json.RawMessage `json:"query"`
	TransportInfo  struct {
		Endpoint        string `json:"endpoint"`
		CryptographyKey string `json:"cryptographyKey"`
	} `json:"transportInfo"`
}

func (j subscriptionJSON) sub() Subscription {
	return Subscription{ID: j.SubscriptionID, Endpoint: j.TransportInfo.Endpoint, CryptographyKey: j.TransportInfo.CryptographyKey, Query: j.Query}
}

// Filter fields of a file-store notification query.
const (
	fieldBucket  = "payload.FileStoreNotification.fileset.bucketName"
	fieldPackage = "payload.FileStoreNotification.fileset.packageId"
	fieldStatus  = "payload.FileStoreNotification.fileset.status"
)

type term map[string]map[string]string

type boolQuery struct {
	Bool struct {
		Must []term `json:"must"`
	} `json:"bool"`
}

// ReadyQuery is the filter for the READY file-sets of one package
// (packageID "" or "*": every package of the bucket), in the shape of the
// sample's requestBody/bucketAndPackageIdFilter.json.
func ReadyQuery(bucket, packageID string) json.RawMessage {
	var q boolQuery
	q.Bool.Must = append(q.Bool.Must, term{"term": {fieldBucket: bucket}})
	if packageID != "" && packageID != "*" {
		q.Bool.Must = append(q.Bool.Must, term{"term": {fieldPackage: packageID}})
	}
	q.Bool.Must = append(q.Bool.Must, term{"term": {fieldStatus: StatusReady}})
	b, _ := json.Marshal(q)
	return b
}

// Target returns the bucket and package a subscription's query filters on
// (package "*" when it names none); ok is false for a query of another shape.
func (s Subscription) Target() (bucket, packageID string, ok bool) {
	var q boolQuery
	if json.Unmarshal(s.Query, &q) != nil {
		return "", "", false
	}
	packageID = "*"
	for _, t := range q.Bool.Must {
		for field, v := range t["term"] {
			switch field {
			case fieldBucket:
				bucket = v
			case fieldPackage:
				packageID = v
			}
		}
	}
	return bucket, packageID, bucket != ""
}

// Subscribe creates a subscription delivering the notifications that match
// query to an AWS SQS queue (POST SubscriptionsPath). It is not retried: a
// retried POST could create a second subscription.
func (c *Client) Subscribe(ctx context.Context, query json.RawMessage) (*Subscription, error) {
	body, err := json.Marshal(map[string]any{"transport": map[string]string{"transportType": TransportAWSSQS}, "query": query})
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	var out subscriptionJSON
	if err := c.send(ctx, http.MethodPost, "subscribe", SubscriptionsPath, body, &out); err != nil {
		return nil, err
	}
	s := out.sub()
	if s.ID == "" || s.Endpoint == "" || s.CryptographyKey == "" {
		return nil, &DecodeError{Endpoint: "subscribe", Err: errors.New("subscriptionID, transportInfo.endpoint or transportInfo.cryptographyKey missing")}
	}
	return &s, nil
}

// Subscriptions lists the account's file-store subscriptions (GET SubscriptionsPath).
func (c *Client) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var out struct {
		Subscriptions []subscriptionJSON `json:"subscriptions"`
	}
	if err := c.getJSON(ctx, "list subscriptions", SubscriptionsPath, &out); err != nil {
		return nil, err
	}
	subs := make([]Subscription, 0, len(out.Subscriptions))
	for _, s := range out.Subscriptions {
		subs = append(subs, s.sub())
	}
	return subs, nil
}

// DeleteSubscription removes one subscription (DELETE ?subscriptionID=).
func (c *Client) DeleteSubscription(ctx context.Context, id string) error {
	if strings.TrimSpace(id) == "" {
		return errors.New("delete subscription: subscription id is required")
	}
	ref := SubscriptionsPath + "?" + url.Values{"subscriptionID": {id}}.Encode()
	return c.send(ctx, http.MethodDelete, "delete subscription", ref, nil, nil)
}

// CloudCredentials are the temporary AWS credentials of a subscription's
// queue. Never log them (String leaves them out).
type CloudCredentials struct {
	AccessKeyID  string
	SecretKey    string
	SessionToken string
	// Expiration is set only when RDP's answer carries one (the sample reads
	// none; cfsync does not rely on it).
	Expiration time.Time
}

func (c CloudCredentials) String() string { return "rdp.CloudCredentials{…}" }

// GoString hides the credentials.
func (c CloudCredentials) GoString() string { return c.String() }

// CloudCredentialsFor asks for temporary credentials of the queue endpoint
// (GET CloudCredentialsPath?endpoint=…) with the given access token. It is
// an /auth call: only the token-refresher makes it, and it is not retried.
func (c *Client) CloudCredentialsFor(ctx context.Context, accessToken, endpoint string) (*CloudCredentials, error) {
	const op = "get cloud credentials"
	if accessToken == "" || endpoint == "" {
		return nil, fmt.Errorf("%s: access token and endpoint are required", op)
	}
	u := c.base.ResolveReference(&url.URL{Path: CloudCredentialsPath, RawQuery: url.Values{"endpoint": {endpoint}}.Encode()})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	var out struct {
		Credentials struct {
			AccessKeyID  string `json:"accessKeyId"`
			SecretKey    string `json:"secretKey"`
			SessionToken string `json:"sessionToken"`
			Expiration   string `json:"expiration"`
		} `json:"credentials"`
	}
	if err := c.do(c.authHTTP, req, op, &out); err != nil {
		return nil, err
	}
	cr := out.Credentials
	if cr.AccessKeyID == "" || cr.SecretKey == "" || cr.SessionToken == "" {
		return nil, &DecodeError{Endpoint: op, Err: errors.New("credentials.accessKeyId, secretKey or sessionToken missing")}
	}
	res := &CloudCredentials{AccessKeyID: cr.AccessKeyID, SecretKey: cr.SecretKey, SessionToken: cr.SessionToken}
	res.Expiration, _ = time.Parse(time.RFC3339, cr.Expiration)
	return res, nil
}

// send makes one non-retried request with a JSON body through the
// file-store client (which adds the bearer token).
func (c *Client) send(ctx context.Context, method, op, ref string, body []byte, v any) error {
	u, err := c.resolve(ref)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(c.http, req, op, v)
}

// do sends req with hc and decodes a 2xx JSON answer into v (v nil: the
// body is ignored).
func (c *Client) do(hc *http.Client, req *http.Request, op string, v any) error {
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := hc.Do(req)
	if err != nil {
		if req.Context().Err() != nil {
			return req.Context().Err()
		}
		return fmt.Errorf("%s: %w", op, scrubURLError(err))
	}
	return c.readJSON(resp, op, v)
}
