// Package awsconf loads the AWS SDK configuration the functions share.
//
// The standard AWS_ENDPOINT_URL (honoured by the SDK itself) points every
// client at a local emulator; when it is set, S3 uses path-style addressing
// so an IP endpoint such as http://127.0.0.1:5000 works.
package awsconf

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Load returns the default SDK config (region, credentials and endpoint from
// the environment, as in Lambda).
func Load(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	return cfg, nil
}

// S3Options returns the S3 client options for the environment: path-style
// addressing when AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) points at an emulator.
func S3Options() []func(*s3.Options) {
	if os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != "" {
		return []func(*s3.Options){func(o *s3.Options) { o.UsePathStyle = true }}
	}
	return nil
}
