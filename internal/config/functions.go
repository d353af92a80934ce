package config

import "time"

// Common is read by every function.
type Common struct {
	RDPBaseURL     string   `env:"RDP_BASE_URL" default:"https://api.refinitiv.com"`
	TokenSecretIDs []string `env:"TOKEN_SECRET_IDS" required:"true" min:"1"`
	StateTable     string   `env:"STATE_TABLE" required:"true"`
	LogLevel       string   `env:"LOG_LEVEL" default:"info"`
}

// Reader is read by the functions that use tokens but never log in.
type Reader struct {
	TokenSkew time.Duration `env:"TOKEN_SKEW" default:"30s"`
}

// Refresher configures functions/token-refresher.
type Refresher struct {
	Common
	CredentialsSecretID    string        `env:"RDP_CREDENTIALS_SECRET_ID" required:"true"`
	RefreshMargin          time.Duration `env:"TOKEN_REFRESH_MARGIN" default:"2m"`
	SecretMinWriteInterval time.Duration `env:"SECRET_MIN_WRITE_INTERVAL" default:"10m"`
	AuthBudget             int           `env:"AUTH_BUDGET" default:"20" min:"1"`
}

// Poller configures functions/fileset-poller.
type Poller struct {
	Common
	Reader
	DownloadQueueURL string   `env:"DOWNLOAD_QUEUE_URL" required:"true"`
	Subscriptions    []string `env:"SUBSCRIPTIONS"`
}

// Downloader configures functions/downloader.
type Downloader struct {
	Common
	Reader
	DownloadQueueURL string `env:"DOWNLOAD_QUEUE_URL" required:"true"`
	DestBucket       string `env:"DEST_BUCKET" required:"true"`
	DestPrefix       string `env:"DEST_PREFIX"`
	PartSize         int64  `env:"PART_SIZE"`
	ParallelRanges   int    `env:"PARALLEL_RANGES" default:"4" min:"1"`
}
