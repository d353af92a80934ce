package rdptest

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cfsync/cfsync/internal/randid"
)

// CFS file-store notifications, as LSEG's FileNoti sample tool shows them
// (github.com/LSEG-API-Samples/FileNoti.Message.Distribution.Tools):
// subscriptions under /message-services/v1/file-store/subscriptions with an
// AWS-SQS transport, temporary queue credentials from
// /auth/cloud-credentials/v1/?endpoint=, and AES-GCM sealed message bodies
// (base64 of 16 bytes of authenticated data whose last 12 are the nonce,
// the cipher text, and the 16-byte tag).
//
// The simulator does not host the queue: the caller supplies one (a queue
// in the local AWS emulator) through a NotificationQueues, and may put a
// CredentialGate (notifications_gate.go) in front of it, since the emulator
// checks no credentials.

// Endpoint names of the notification API (keys of Counters.Requests are
// not used for them; see NotificationCounters).
const (
	EPSubscriptions    = "/message-services/v1/file-store/subscriptions"
	EPSubscriptionByID = "/message-services/v1/file-store/subscriptions/{id}"
	EPCloudCredentials = "GET /auth/cloud-credentials/v1/"
)

// NotificationQueues is where the simulator's subscriptions deliver.
// CreateQueue makes the queue of a new subscription and returns its URL;
// Send puts one message body on a queue.
type NotificationQueues interface {
	CreateQueue(subscriptionID string) (queueURL string, err error)
	Send(queueURL, body string) error
}

// NotificationFaults are faults of the delivery. Counters count down as
// they fire.
type NotificationFaults struct {
	Duplicate     int // the next n notifications are delivered twice
	Reorder       int // the next n notifications are held back and delivered after the one that follows
	Lose          int // the next n notifications are never delivered
	Undecryptable int // before each of the next n notifications, a message sealed with another key is delivered
}

// NotificationCounters is what the notification side has done.
type NotificationCounters struct {
	Subscriptions     int // live subscriptions
	Published         int // notifications delivered (duplicates included, garbage excluded)
	Lost              int // notifications dropped by the Lose fault
	Garbage           int // undecryptable messages delivered
	SendErrors        int // NotificationQueues.Send failures
	CloudCredentials  int // credentials handed out
	CredentialsDenied int // gate rejections (expired or unknown credentials)
}

type subscription struct {
	id, endpoint, key string
	query             json.RawMessage
	seqNo             int64
}

type cloudCred struct {
	secret, session string
	endpoint        string
	exp             time.Time
}

type notifier struct {
	mu     sync.Mutex
	queues NotificationQueues
	ttl    time.Duration
	subs   map[string]*subscription
	creds  map[string]*cloudCred // by access key id
	faults NotificationFaults
	held   *pendingNote
	out    chan pendingNote
	done   chan struct{}
	idle   sync.WaitGroup
	c      NotificationCounters
}

type pendingNote struct {
	queueURL, body string
	garbage        bool
}

// EnableNotifications turns on the notification API, delivering to queues.
// Cloud credentials live ttl (simulator clock; default 1h). Call it once,
// before any subscription.
func (s *Server) EnableNotifications(queues NotificationQueues, ttl time.Duration) {
	if ttl <= 0 {
		ttl = time.Hour
	}
	n := &notifier{queues: queues, ttl: ttl, subs: map[string]*subscription{}, creds: map[string]*cloudCred{},
		out: make(chan pendingNote, 1<<16), done: make(chan struct{})}
	s.mu.Lock()
	s.notes = n
	s.mu.Unlock()
	go n.deliver(s.closing)
}

// SetNotificationFaults replaces the delivery faults.
func (s *Server) SetNotificationFaults(f NotificationFaults) {
	if n := s.notifier(); n != nil {
		n.mu.Lock()
		n.faults = f
		n.mu.Unlock()
	}
}

// ExpireCloudCredentials makes every queue credential handed out so far
// expired (the gate then answers ExpiredToken).
func (s *Server) ExpireCloudCredentials() {
	n := s.notifier()
	if n == nil {
		return
	}
	now := s.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.creds {
		c.exp = now.Add(-time.Second)
	}
}

// NotificationCounters returns a snapshot.
func (s *Server) NotificationCounters() NotificationCounters {
	n := s.notifier()
	if n == nil {
		return NotificationCounters{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.c
	c.Subscriptions = len(n.subs)
	return c
}

// WaitNotifications waits until every notification published so far has
// been handed to the queues (or timeout); it reports whether they were.
func (s *Server) WaitNotifications(timeout time.Duration) bool {
	n := s.notifier()
	if n == nil {
		return true
	}
	ch := make(chan struct{})
	go func() { n.idle.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (s *Server) notifier() *notifier {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notes
}

func (n *notifier) deliver(closing <-chan struct{}) {
	for {
		select {
		case <-closing:
			return
		case p := <-n.out:
			err := n.queues.Send(p.queueURL, p.body)
			n.mu.Lock()
			switch {
			case err != nil:
				n.c.SendErrors++
			case p.garbage:
				n.c.Garbage++
			default:
				n.c.Published++
			}
			n.mu.Unlock()
			n.idle.Done()
		}
	}
}

// notifyLocked publishes a READY file-set to every matching subscription.
// The caller holds s.mu.
func (s *Server) notifyLocked(fs *fileSet) {
	n := s.notes
	if n == nil || !strings.EqualFold(fs.status, "READY") || fs.deleted {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, sub := range n.subs {
		if !sub.matches(fs) {
			continue
		}
		sub.seqNo++
		body, err := seal(sub.key, s.notificationJSON(sub, fs))
		if err != nil {
			n.c.SendErrors++
			continue
		}
		n.publishLocked(sub, body)
	}
}

// publishLocked applies the faults and queues the deliveries.
func (n *notifier) publishLocked(sub *subscription, body string) {
	f := &n.faults
	if f.Undecryptable > 0 {
		f.Undecryptable--
		other := base64.StdEncoding.EncodeToString(randomBytes(32))
		if g, err := seal(other, []byte(`{"payload":{}}`)); err == nil {
			n.enqueueLocked(pendingNote{queueURL: sub.endpoint, body: g, garbage: true})
		}
	}
	if f.Lose > 0 {
		f.Lose--
		n.c.Lost++
		return
	}
	p := pendingNote{queueURL: sub.endpoint, body: body}
	if f.Reorder > 0 && n.held == nil {
		f.Reorder--
		n.held = &p
		return
	}
	n.enqueueLocked(p)
	if f.Duplicate > 0 {
		f.Duplicate--
		n.enqueueLocked(p)
	}
	if n.held != nil && *n.held != p {
		n.enqueueLocked(*n.held)
		n.held = nil
	}
}

func (n *notifier) enqueueLocked(p pendingNote) {
	n.idle.Add(1)
	n.out <- p
}

func (sub *subscription) matches(fs *fileSet) bool {
	var q struct {
		Bool struct {
			Must []map[string]map[string]string `json:"must"`
		} `json:"bool"`
	}
	if json.Unmarshal(sub.query, &q) != nil {
		return false
	}
	for _, t := range q.Bool.Must {
		for field, v := range t["term"] {
			var got string
			switch field {
			case "payload.FileStoreNotification.fileset.bucketName":
				got = fs.bucket
			case "payload.FileStoreNotification.fileset.packageId":
				got = fs.packageID
			case "payload.FileStoreNotification.fileset.status":
				got = fs.status
			default:
				continue // other filters (attributes) are not simulated: they match
			}
			if !strings.EqualFold(got, v) {
				return false
			}
		}
	}
	return true
}

func (s *Server) notificationJSON(sub *subscription, fs *fileSet) []byte {
	var files []map[string]any
	for _, f := range fs.files {
		if f.deleted {
			continue
		}
		files = append(files, map[string]any{"id": f.id, "filename": f.name, "fileSizeInBytes": f.size,
			"href": s.apiURL + "/file-store/v1/files/" + f.id + "/stream"})
	}
	pkgName := ""
	if p := s.pkgByID[fs.packageID]; p != nil {
		pkgName = p.name
	}
	b, _ := json.Marshal(map[string]any{
		"ecpMessageID": "urn:uuid:" + randid.UUID(), "distributionSeqNo": sub.seqNo,
		"payload": map[string]any{"FileStoreNotification": map[string]any{
			"currentAt": fmtTime(s.now()),
			"fileset": map[string]any{"id": fs.id, "bucketName": fs.bucket, "packageId": fs.packageID, "packageName": pkgName,
				"name": fs.name, "status": fs.status, "numFiles": len(files), "availableFrom": fmtTime(fs.from),
				"availableTo": fmtTime(fs.to), "files": map[string]any{"values": nonNil(files)}},
		}},
	})
	return b
}

// seal encrypts plain with the base64 key in the FileNoti layout.
func seal(key string, plain []byte) (string, error) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return "", err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	aad := randomBytes(16)
	out := append(append([]byte{}, aad...), gcm.Seal(nil, aad[4:], plain, aad)...)
	return base64.StdEncoding.EncodeToString(out), nil
}

// ---- HTTP ----

func (s *Server) registerNotifications(mux *http.ServeMux) {
	mux.HandleFunc("POST "+EPSubscriptions, s.notesAuth(handleSubscribe))
	mux.HandleFunc("GET "+EPSubscriptions, s.notesAuth(handleListSubscriptions))
	mux.HandleFunc("DELETE "+EPSubscriptions, s.notesAuth(handleDeleteSubscription))
	mux.HandleFunc("PUT /message-services/v1/file-store/subscriptions/{id}", s.notesAuth(handleUpdateSubscription))
	mux.HandleFunc(EPCloudCredentials, s.handleCloudCredentials)
}

// notesAuth wraps a subscriptions handler: it answers 404 when notifications
// are off and 401 for a bad bearer token, else calls h with the notifier.
func (s *Server) notesAuth(h func(w http.ResponseWriter, r *http.Request, n *notifier)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := s.notifier()
		if n == nil {
			gatewayError(w, http.StatusNotFound, "Resource not found")
			return
		}
		if s.fileStoreAuth(w, r) {
			h(w, r, n)
		}
	}
}

func subJSON(sub *subscription) map[string]any {
	return map[string]any{"subscriptionID": sub.id, "query": sub.query,
		"transportInfo": map[string]string{"transportType": "AWS-SQS", "endpoint": sub.endpoint, "cryptographyKey": sub.key}}
}

func handleSubscribe(w http.ResponseWriter, r *http.Request, n *notifier) {
	var req struct {
		Transport struct {
			TransportType string `json:"transportType"`
		} `json:"transport"`
		Query json.RawMessage `json:"query"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Transport.TransportType != "AWS-SQS" {
		gatewayError(w, http.StatusBadRequest, "transport.transportType must be AWS-SQS")
		return
	}
	if len(req.Query) == 0 {
		req.Query = json.RawMessage(`{}`)
	}
	sub := &subscription{id: randid.UUID(), key: base64.StdEncoding.EncodeToString(randomBytes(32)), query: req.Query}
	endpoint, err := n.queues.CreateQueue(sub.id)
	if err != nil {
		gatewayError(w, http.StatusInternalServerError, "cannot create the queue")
		return
	}
	sub.endpoint = endpoint
	n.mu.Lock()
	n.subs[sub.id] = sub
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, subJSON(sub))
}

func handleListSubscriptions(w http.ResponseWriter, r *http.Request, n *notifier) {
	id := r.URL.Query().Get("subscriptionID")
	n.mu.Lock()
	list := []map[string]any{}
	for _, sub := range n.subs {
		if id == "" || sub.id == id {
			list = append(list, subJSON(sub))
		}
	}
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": list})
}

func handleDeleteSubscription(w http.ResponseWriter, r *http.Request, n *notifier) {
	id := r.URL.Query().Get("subscriptionID")
	n.mu.Lock()
	defer n.mu.Unlock()
	if id == "" {
		n.subs = map[string]*subscription{}
	} else if _, ok := n.subs[id]; !ok {
		gatewayError(w, http.StatusNotFound, "subscription not found")
		return
	}
	delete(n.subs, id)
	w.WriteHeader(http.StatusNoContent)
}

func handleUpdateSubscription(w http.ResponseWriter, r *http.Request, n *notifier) {
	var req struct {
		Query json.RawMessage `json:"query"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	n.mu.Lock()
	defer n.mu.Unlock()
	sub, ok := n.subs[r.PathValue("id")]
	if !ok {
		gatewayError(w, http.StatusNotFound, "subscription not found")
		return
	}
	if len(req.Query) > 0 {
		sub.query = req.Query
	}
	writeJSON(w, http.StatusOK, subJSON(sub))
}

func (s *Server) handleCloudCredentials(w http.ResponseWriter, r *http.Request) {
	n := s.notifier()
	s.mu.Lock()
	msg := s.bearerLocked(r, s.now())
	status := http.StatusOK
	if msg != "" {
		status = http.StatusUnauthorized
	}
	endpoint := r.URL.Query().Get("endpoint")
	var known bool
	if n != nil && status == http.StatusOK {
		n.mu.Lock()
		for _, sub := range n.subs {
			known = known || sub.endpoint == endpoint
		}
		n.mu.Unlock()
		if !known {
			status = http.StatusForbidden
		}
	}
	if n == nil {
		status = http.StatusNotFound
	}
	s.recordAuthLocked(r, "cloud-credentials", "", status, "")
	s.mu.Unlock()
	switch status {
	case http.StatusUnauthorized:
		gatewayError(w, status, msg)
		return
	case http.StatusForbidden, http.StatusNotFound:
		gatewayError(w, status, "no such endpoint")
		return
	}
	akid := "ASIASIM" + strings.ToUpper(randid.Hex(8))
	c := &cloudCred{secret: randid.Hex(20), session: "FwoGZXIvYXdzE" + randid.Hex(32), endpoint: endpoint, exp: s.now().Add(n.ttl)}
	n.mu.Lock()
	n.creds[akid] = c
	n.c.CloudCredentials++
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"endpoint": endpoint,
		"credentials": map[string]string{"accessKeyId": akid, "secretKey": c.secret, "sessionToken": c.session}})
}

// checkCredential is the gate's check of an access key id: "" when good,
// else the AWS error code.
func (s *Server) checkCredential(akid string) string {
	n := s.notifier()
	if n == nil {
		return "InvalidClientTokenId"
	}
	now := s.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.creds[akid]
	switch {
	case !ok:
		n.c.CredentialsDenied++
		return "InvalidClientTokenId"
	case !now.Before(c.exp):
		n.c.CredentialsDenied++
		return "ExpiredToken"
	}
	return ""
}

var errNoNotifications = errors.New("rdptest: notifications are not enabled")
