package config

import "time"

// Common is read by every function.
type Common struct {
	RDPBaseURL     string   `env:"RDP_BASE_URL" default:"https://api.refinitiv.com"`
	TokenSecretIDs []string `env:"TOKEN_SECRET_IDS" required:"true" min:"1"`
	StateTable     string   `env:"STATE_TABLE" required:"true"`
	LogLevel       string   `env:"LOG_LEVEL" default:"info"`
}

// Shared returns the Common part of a function's configuration (promoted to
// every struct that embeds Common).
func (c *Common) Shared() *Common { return c }

// Reader is read by the functions that use tokens but never log in.
type Reader struct {
	TokenSkew time.Duration `env:"TOKEN_SKEW" default:"30s"`
}

// Worker is read by the functions that move files (poller, downloader,
// notification reader): they use the ring's tokens and feed or drain the
// download queue.
type Worker struct {
	Common
	Reader
	DownloadQueueURL string `env:"DOWNLOAD_QUEUE_URL" required:"true"`
}

// FileTTL is read by the functions that create file items (poller,
// notification reader).
type FileTTL struct {
	// FileTTLMargin: a file item's DynamoDB TTL is its file-set's availableTo plus this.
	FileTTLMargin time.Duration `env:"FILE_TTL_MARGIN" default:"168h" nonzero:"true"`
}

// Refresher configures functions/token-refresher.
type Refresher struct {
	Common
	// Reader: TOKEN_SKEW, the readers' setting, tells the refresher when the
	// ring holds no token they can use (a failed run, see ErrNoUsableToken).
	Reader
	CredentialsSecretID    string        `env:"RDP_CREDENTIALS_SECRET_ID" required:"true"`
	RefreshMargin          time.Duration `env:"TOKEN_REFRESH_MARGIN" default:"2m"`
	SecretMinWriteInterval time.Duration `env:"SECRET_MIN_WRITE_INTERVAL" default:"10m"`
	AuthBudget             int           `env:"AUTH_BUDGET" default:"20" min:"1"`
	// SessionMaxLifetime is how long a v1 session (password grant) can be
	// refreshed: the refresher signs on again before it ends.
	SessionMaxLifetime time.Duration `env:"RDP_SESSION_MAX_LIFETIME" default:"18h" min:"10m"`
	// AuthBackoffBase is the first backoff after a failed auth request,
	// doubled per consecutive failure up to AuthBackoffMax (persisted across runs).
	AuthBackoffBase time.Duration `env:"AUTH_BACKOFF_BASE" default:"1m" min:"1s"`
	AuthBackoffMax  time.Duration `env:"AUTH_BACKOFF_MAX" default:"30m" min:"1s"`
	// Push notifications (both set, or both empty: off): the subscription
	// secret and the secret the refresher keeps the queue's cloud credentials
	// in, renewed QueueCredentialsRefresh after the last fetch.
	NotifySubscriptionSecretID string        `env:"NOTIFY_SUBSCRIPTION_SECRET_ID"`
	NotifyCredentialsSecretID  string        `env:"NOTIFY_CREDENTIALS_SECRET_ID"`
	QueueCredentialsRefresh    time.Duration `env:"QUEUE_CREDENTIALS_REFRESH" default:"30m" min:"1m"`
}

// Poller configures functions/fileset-poller.
type Poller struct {
	Worker
	PollerKnobs
}

// PollerKnobs are the poller's own settings (its Settings embed them).
type PollerKnobs struct {
	FileTTL
	Subscriptions []string `env:"SUBSCRIPTIONS"`
	// PollOverlap is subtracted from a package's watermark to form modifiedSince.
	PollOverlap time.Duration `env:"POLL_OVERLAP" default:"1h" nonzero:"true"`
	// FullReconcileEvery: every N-th poll of a package ignores the watermark.
	FullReconcileEvery int `env:"FULL_RECONCILE_EVERY" default:"24" min:"1"`
	// ExpiryWarning: a file not DONE whose file-set's availableTo is closer than this is reported.
	ExpiryWarning time.Duration `env:"EXPIRY_WARNING" default:"24h" nonzero:"true"`
	// PollPageSize is the file-sets page size asked for (the API's maximum is 100).
	PollPageSize int `env:"POLL_PAGE_SIZE" default:"100" min:"1" max:"100"`
	// StuckAfter: a file not DONE or FAILED, not updated for this long and
	// with a free download lease, has its message sent again by the poll's
	// sweep. Well above the download queue's visibility (30 min) ×
	// maxReceiveCount (5) = 2.5 h and the downloader's deferral delays.
	StuckAfter time.Duration `env:"STUCK_AFTER" default:"6h" nonzero:"true"`
	// SweepLimit bounds the stale files one poll sweeps.
	SweepLimit int `env:"SWEEP_LIMIT" default:"200" min:"1"`
}

// Downloader configures functions/downloader.
type Downloader struct {
	Worker
	DownloaderKnobs
}

// DownloaderKnobs are the downloader's own settings (its Settings embed
// them).
type DownloaderKnobs struct {
	DestBucket string `env:"DEST_BUCKET" required:"true" nonzero:"true"`
	DestPrefix string `env:"DEST_PREFIX"`
	// PartSize overrides the multipart part size in bytes (S3: 5 MiB–5 GiB);
	// 0 chooses it from the file size (≥ 8 MiB, ≤ 10,000 parts).
	PartSize int64 `env:"PART_SIZE" zero:"unset" min:"5242880" max:"5368709120"`
	// SinglePutMax: a file up to this size whose ranges fit the
	// PARALLEL_RANGES buffers is fetched in parallel ranges into them and
	// stored with one PutObject instead of a multipart upload (its first
	// invocation only; 0: only files of one part). 32 MiB is the default
	// 4 × 8 MiB part buffers: no memory beyond what the guard accounts for.
	SinglePutMax int64 `env:"SINGLE_PUT_MAX" default:"33554432" min:"0"`
	// ParallelRanges is the number of byte ranges in flight per invocation,
	// shared by the messages of a batch; buffers are bounded by part size × it.
	ParallelRanges int `env:"PARALLEL_RANGES" default:"4" min:"1"`
	// MessageConcurrency bounds the messages of one batch processed at once.
	MessageConcurrency int `env:"MESSAGE_CONCURRENCY" default:"4" min:"1"`
	// DeadlineMargin: this long before the Lambda deadline no new range is
	// started; the upload is checkpointed and a continuation message enqueued.
	DeadlineMargin time.Duration `env:"DEADLINE_MARGIN" default:"45s"`
	// RangeReadTimeout: a range that delivers no byte for this long is
	// abandoned and retried (stall detection).
	RangeReadTimeout time.Duration `env:"RANGE_READ_TIMEOUT" default:"30s" min:"100ms"`
	// RangeAttempts bounds the attempts of one range (faults, 5xx, throttling).
	RangeAttempts int `env:"RANGE_ATTEMPTS" default:"6" min:"1"`
	// RetryBaseDelay and RetryMaxDelay shape the jittered exponential backoff
	// between attempts of a range (RETRY_MAX_DELAY ≥ RETRY_BASE_DELAY).
	RetryBaseDelay time.Duration `env:"RETRY_BASE_DELAY" default:"500ms"`
	RetryMaxDelay  time.Duration `env:"RETRY_MAX_DELAY" default:"20s"`
	// DeferBaseDelay and DeferMaxDelay: during an RDP outage (no usable token,
	// 429/5xx) the work is re-enqueued with a jittered delay of
	// DEFER_BASE_DELAY × 2^deferrals, at most DEFER_MAX_DELAY (≤ 15m, SQS's limit).
	DeferBaseDelay time.Duration `env:"DEFER_BASE_DELAY" default:"30s" min:"1ms"`
	DeferMaxDelay  time.Duration `env:"DEFER_MAX_DELAY" default:"15m" min:"1ms" max:"15m"`
	// CheckpointInterval: how often a running multipart upload saves its
	// progress (so a crash loses at most this much work).
	CheckpointInterval time.Duration `env:"CHECKPOINT_INTERVAL" default:"30s" min:"1s"`
	// MaxReceiveCount is the download queue's redrive maxReceiveCount: on
	// the receive that is the last before the DLQ, any failure of a file is
	// final (upload aborted, state FAILED with the reason).
	MaxReceiveCount int `env:"MAX_RECEIVE_COUNT" default:"5" min:"1"`

	// Fixed settings (no env tag: always the default tag).
	// MaxURLRefreshes bounds the new URLs asked of /stream per file and
	// invocation after 403s.
	MaxURLRefreshes int `default:"8" min:"1"`
	// MaxNoProgress: after this many consecutive invocations that completed
	// no part, the file fails instead of continuing.
	MaxNoProgress int `default:"3" min:"1"`
	// CleanupTimeout bounds the bookkeeping (checkpoint, abort, state, the
	// continuation message) done after the work context ended; it never
	// runs past the invocation's deadline.
	CleanupTimeout time.Duration `default:"10s" min:"1ms"`
}

// NotificationReader configures functions/notification-reader (push
// notifications, off unless the template's Notifications parameter is true).
type NotificationReader struct {
	Worker
	FileTTL
	ReaderKnobs
	// QueueEndpointURL overrides the SQS endpoint of LSEG's queue (local
	// emulator or the simulator's credential gate); empty in production.
	QueueEndpointURL string `env:"NOTIFY_QUEUE_ENDPOINT_URL"`
}

// ReaderKnobs are the notification reader's own settings (its Settings
// embed them).
type ReaderKnobs struct {
	SubscriptionSecretID string `env:"NOTIFY_SUBSCRIPTION_SECRET_ID" required:"true"`
	CredentialsSecretID  string `env:"NOTIFY_CREDENTIALS_SECRET_ID" required:"true"`
	// Wait is the long-poll wait per receive (SQS's longest is 20 s).
	Wait time.Duration `env:"NOTIFY_WAIT" default:"20s" nonzero:"true" max:"20s"`
	// DeadlineMargin: receiving stops this long before the invocation's deadline.
	DeadlineMargin time.Duration `env:"NOTIFY_DEADLINE_MARGIN" default:"10s" nonzero:"true"`
	// Visibility is the visibility timeout of received messages.
	Visibility time.Duration `env:"NOTIFY_VISIBILITY_TIMEOUT" default:"2m" min:"1s" max:"12h"`
}
