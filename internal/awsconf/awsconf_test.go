package awsconf

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestS3OptionsPathStyleOnlyWithAnEmulator(t *testing.T) {
	apply := func() bool {
		var o s3.Options
		for _, f := range S3Options() {
			f(&o)
		}
		return o.UsePathStyle
	}
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	if apply() {
		t.Error("path-style without an emulator endpoint")
	}
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
	if !apply() {
		t.Error("no path-style with AWS_ENDPOINT_URL set")
	}
}
