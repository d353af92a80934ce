package samtemplate

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/cfsync/cfsync/internal/metrics"
	"github.com/cfsync/cfsync/internal/state"
)

// TestTemplateFacts pins the settings issue #4 and docs/design.md#data-flow, #aws-limits
// and 4 ask of template.yaml, one fact per row.
func TestTemplateFacts(t *testing.T) {
	tpl := loadRepoTemplate(t)
	param := func(name string) map[string]any {
		p, _ := get(tpl, "Parameters", name).(map[string]any)
		return p
	}
	res := func(id string, path ...string) any {
		return get(tpl, append([]string{"Resources", id}, path...)...)
	}
	num := func(v any) int64 {
		switch x := v.(type) {
		case int64:
			return x
		case float64:
			return int64(x)
		}
		return -1
	}
	downloaderTimeout := num(res(Downloader, "Properties", "Timeout"))
	tests := []struct {
		name string
		got  any
		want any
	}{
		// Globals
		{"runtime", get(tpl, "Globals", "Function", "Runtime"), "provided.al2023"},
		{"architecture", get(tpl, "Globals", "Function", "Architectures"), []any{"arm64"}},
		{"handler", get(tpl, "Globals", "Function", "Handler"), "bootstrap"},
		{"tracing", get(tpl, "Globals", "Function", "Tracing"), map[string]any{"Ref": "Tracing"}},
		{"tracing off by default (docs/cost.md)", []any{param("Tracing")["Default"], param("Tracing")["AllowedValues"]}, []any{"PassThrough", []any{"PassThrough", "Active"}}},
		{"JSON logs", get(tpl, "Globals", "Function", "LoggingConfig", "LogFormat"), "JSON"},
		// Parameters
		{"TokenSlots default", param("TokenSlots")["Default"], int64(3)},
		{"TokenSlots 1..5", param("TokenSlots")["AllowedValues"], []any{int64(1), int64(2), int64(3), int64(4), int64(5)}},
		{"RefreshSchedule default", param("RefreshSchedule")["Default"], "rate(1 minute)"},
		{"PollSchedule default", param("PollSchedule")["Default"], "rate(15 minutes)"},
		{"RdpBaseUrl default", param("RdpBaseUrl")["Default"], "https://api.refinitiv.com"},
		{"optional parameters default empty", []any{param("Subscriptions")["Default"], param("CredentialsSecretArn")["Default"],
			param("DestBucketName")["Default"], param("DestPrefix")["Default"], param("KmsKeyArn")["Default"], param("AlarmEmail")["Default"]},
			[]any{"", "", "", "", "", ""}},
		// Functions
		{"refresher code", res(TokenRefresher, "Properties", "CodeUri"), "functions/token-refresher"},
		{"poller code", res(FilesetPoller, "Properties", "CodeUri"), "functions/fileset-poller"},
		{"downloader code", res(Downloader, "Properties", "CodeUri"), "functions/downloader"},
		{"go build method", []any{res(TokenRefresher, "Metadata", "BuildMethod"), res(FilesetPoller, "Metadata", "BuildMethod"), res(Downloader, "Metadata", "BuildMethod")},
			[]any{"go1.x", "go1.x", "go1.x"}},
		{"refresher reserved concurrency", res(TokenRefresher, "Properties", "ReservedConcurrentExecutions"), int64(1)},
		{"refresher schedule", res(TokenRefresher, "Properties", "Events", "Schedule", "Type"), "ScheduleV2"},
		{"refresher schedule expression", res(TokenRefresher, "Properties", "Events", "Schedule", "Properties", "ScheduleExpression"), map[string]any{"Ref": "RefreshSchedule"}},
		{"poller schedule", res(FilesetPoller, "Properties", "Events", "Schedule", "Type"), "ScheduleV2"},
		{"poller schedule expression", res(FilesetPoller, "Properties", "Events", "Schedule", "Properties", "ScheduleExpression"), map[string]any{"Ref": "PollSchedule"}},
		{"downloader event", res(Downloader, "Properties", "Events", "Downloads", "Type"), "SQS"},
		{"downloader queue", res(Downloader, "Properties", "Events", "Downloads", "Properties", "Queue"), map[string]any{"Fn::GetAtt": []any{"DownloadQueue", "Arn"}}},
		{"partial batch responses", res(Downloader, "Properties", "Events", "Downloads", "Properties", "FunctionResponseTypes"), []any{"ReportBatchItemFailures"}},
		{"batch size set", num(res(Downloader, "Properties", "Events", "Downloads", "Properties", "BatchSize")) > 0, true},
		{"batching window set", num(res(Downloader, "Properties", "Events", "Downloads", "Properties", "MaximumBatchingWindowInSeconds")) >= 0, true},
		{"max concurrency", res(Downloader, "Properties", "Events", "Downloads", "Properties", "ScalingConfig", "MaximumConcurrency"), map[string]any{"Ref": "DownloaderMaxConcurrency"}},
		// Table
		{"table keys", res("StateTable", "Properties", "KeySchema"), []any{
			map[string]any{"AttributeName": "pk", "KeyType": "HASH"}, map[string]any{"AttributeName": "sk", "KeyType": "RANGE"}}},
		{"table attributes", res("StateTable", "Properties", "AttributeDefinitions"), []any{
			map[string]any{"AttributeName": "pk", "AttributeType": "S"}, map[string]any{"AttributeName": "sk", "AttributeType": "S"},
			map[string]any{"AttributeName": "nonFinal", "AttributeType": "S"}, map[string]any{"AttributeName": "updatedAt", "AttributeType": "S"}}},
		{"on demand", res("StateTable", "Properties", "BillingMode"), "PAY_PER_REQUEST"},
		{"ttl", res("StateTable", "Properties", "TimeToLiveSpecification"), map[string]any{"AttributeName": "ttl", "Enabled": true}},
		{"pitr", res("StateTable", "Properties", "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"), true},
		{"table sse", res("StateTable", "Properties", "SSESpecification", "SSEEnabled"), true},
		// Queues
		{"visibility >= 6 x downloader timeout", num(res("DownloadQueue", "Properties", "VisibilityTimeout")) >= 6*downloaderTimeout && downloaderTimeout > 0, true},
		{"redrive target", res("DownloadQueue", "Properties", "RedrivePolicy", "deadLetterTargetArn"), map[string]any{"Fn::GetAtt": []any{"DownloadDeadLetterQueue", "Arn"}}},
		{"redrive count", res("DownloadQueue", "Properties", "RedrivePolicy", "maxReceiveCount"), int64(5)},
		{"downloader knows the redrive count", res("DownloaderFunction", "Properties", "Environment", "Variables", "MAX_RECEIVE_COUNT"),
			fmt.Sprint(res("DownloadQueue", "Properties", "RedrivePolicy", "maxReceiveCount"))},
		{"DLQ 14 days", res("DownloadDeadLetterQueue", "Properties", "MessageRetentionPeriod"), int64(14 * 24 * 3600)},
		{"queue sse", res("DownloadQueue", "Properties", "SqsManagedSseEnabled"), map[string]any{"Fn::If": []any{"HasKmsKey", map[string]any{"Ref": "AWS::NoValue"}, true}}},
		{"DLQ sse", res("DownloadDeadLetterQueue", "Properties", "SqsManagedSseEnabled"), map[string]any{"Fn::If": []any{"HasKmsKey", map[string]any{"Ref": "AWS::NoValue"}, true}}},
		// Bucket
		{"bucket only when not given", res("DestBucket", "Condition"), "CreateBucket"},
		{"public access blocked", res("DestBucket", "Properties", "PublicAccessBlockConfiguration"), map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true}},
		{"bucket sse", res("DestBucket", "Properties", "BucketEncryption", "ServerSideEncryptionConfiguration", "0", "ServerSideEncryptionByDefault", "SSEAlgorithm"),
			map[string]any{"Fn::If": []any{"HasKmsKey", "aws:kms", "AES256"}}},
		{"abort multipart after 2 days", res("DestBucket", "Properties", "LifecycleConfiguration", "Rules", "0", "AbortIncompleteMultipartUpload", "DaysAfterInitiation"), int64(2)},
		{"eventbridge notifications", res("DestBucket", "Properties", "NotificationConfiguration", "EventBridgeConfiguration", "EventBridgeEnabled"), true},
		{"deny non-TLS", []any{
			res("DestBucketPolicy", "Properties", "PolicyDocument", "Statement", "0", "Effect"),
			res("DestBucketPolicy", "Properties", "PolicyDocument", "Statement", "0", "Condition", "Bool", "aws:SecureTransport"),
		}, []any{"Deny", false}},
		// Alarms
		// The EMF metrics as internal/metrics writes them: namespace, dimension Function.
		{"expiry alarm", []any{res("FilesNearingExpiryAlarm", "Properties", "Namespace"), res("FilesNearingExpiryAlarm", "Properties", "MetricName"),
			res("FilesNearingExpiryAlarm", "Properties", "Dimensions")},
			[]any{metrics.Namespace, "FilesNearingExpiry", []any{map[string]any{"Name": "Function", "Value": map[string]any{"Ref": FilesetPoller}}}}},
		{"DLQ alarm", res("DeadLetterQueueNotEmptyAlarm", "Properties", "Dimensions", "0", "Value"), map[string]any{"Fn::GetAtt": []any{"DownloadDeadLetterQueue", "QueueName"}}},
		{"refresher errors alarm", res("TokenRefresherErrorsAlarm", "Properties", "Dimensions", "0", "Value"), map[string]any{"Ref": TokenRefresher}},
		// Liveness: Lambda's Errors has a data point for every invocation, so missing data means no run.
		{"refresher liveness", []any{res("TokenRefresherErrorsAlarm", "Properties", "TreatMissingData"), res("TokenRefresherErrorsAlarm", "Properties", "Period")},
			[]any{"breaching", int64(60)}},
		{"poller liveness (PollSchedule up to hourly)", []any{res("FilesetPollerErrorsAlarm", "Properties", "TreatMissingData"), res("FilesetPollerErrorsAlarm", "Properties", "Period"),
			res("FilesetPollerErrorsAlarm", "Properties", "DatapointsToAlarm")}, []any{"breaching", int64(3600), int64(2)}},
		// Issue 11 alarms: metrics the functions really emit (grep internal/metrics calls).
		{"poller errors alarm", []any{res("FilesetPollerErrorsAlarm", "Properties", "Namespace"), res("FilesetPollerErrorsAlarm", "Properties", "MetricName"),
			res("FilesetPollerErrorsAlarm", "Properties", "Dimensions", "0", "Value")},
			[]any{"AWS/Lambda", "Errors", map[string]any{"Ref": FilesetPoller}}},
		{"stuck files alarm", []any{res("FilesStuckAlarm", "Properties", "Namespace"), res("FilesStuckAlarm", "Properties", "MetricName"),
			res("FilesStuckAlarm", "Properties", "Dimensions"), res("FilesStuckAlarm", "Properties", "TreatMissingData")},
			[]any{metrics.Namespace, "FilesStuck", []any{map[string]any{"Name": "Function", "Value": map[string]any{"Ref": FilesetPoller}}}, "notBreaching"}},
		// One metric for the poller's and the downloader's FAILED files: one alarm metric.
		{"failed files alarm", []any{res("FilesFailedAlarm", "Properties", "Namespace"), res("FilesFailedAlarm", "Properties", "MetricName"),
			res("FilesFailedAlarm", "Properties", "Dimensions"), res("FilesFailedAlarm", "Properties", "Metrics")},
			[]any{metrics.Namespace, "FilesFailed", []any{map[string]any{"Name": metrics.StackDimension, "Value": map[string]any{"Ref": "StateTable"}}}, nil}},
		{"sparse index of non-final files", []any{res("StateTable", "Properties", "GlobalSecondaryIndexes", "0", "IndexName"),
			res("StateTable", "Properties", "GlobalSecondaryIndexes", "0", "KeySchema")},
			[]any{state.NonFinalIndex, []any{map[string]any{"AttributeName": state.AttrNonFinal, "KeyType": "HASH"}, map[string]any{"AttributeName": state.AttrUpdatedAt, "KeyType": "RANGE"}}}},
		{"e-mail subscription", []any{res("AlarmEmailSubscription", "Condition"), res("AlarmEmailSubscription", "Properties", "Protocol")}, []any{"HasAlarmEmail", "email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}

	t.Run("every alarm notifies the topic", func(t *testing.T) {
		alarms := tpl.ResourcesOfType("AWS::CloudWatch::Alarm")
		if len(alarms) != 8 { // 2 of them only with Notifications=true
			t.Errorf("%d alarms, want 8", len(alarms))
		}
		for _, a := range alarms {
			if got := fmt.Sprint(a.Properties["AlarmActions"]); got != "[map[Ref:AlarmTopic]]" {
				t.Errorf("%s AlarmActions = %s", a.ID, got)
			}
		}
	})
	t.Run("functions log to their own group with retention", func(t *testing.T) {
		for _, f := range tpl.Functions() {
			if f.Properties["MemorySize"] == nil || f.Properties["Timeout"] == nil {
				t.Errorf("%s: MemorySize and Timeout are chosen per function", f.ID)
			}
			ref, _ := get(f.Properties, "LoggingConfig", "LogGroup", "Ref").(string)
			lg, ok := tpl.Resource(ref)
			if !ok || lg.Type != "AWS::Logs::LogGroup" || lg.Properties["RetentionInDays"] == nil {
				t.Errorf("%s logs to %q, want a log group with retention", f.ID, ref)
			}
		}
	})
	t.Run("outputs", func(t *testing.T) {
		want := []string{"DestBucketName", "DownloadQueueUrl", "DeadLetterQueueUrl", "StateTableName",
			"TokenRefresherFunctionName", "FilesetPollerFunctionName", "DownloaderFunctionName", "TokenSecretIds",
			"TokenSlot1Arn", "TokenSlot5Arn", "CredentialsSecretArn", "AlarmTopicArn"}
		for _, o := range want {
			if !slices.Contains(tpl.Outputs(), o) {
				t.Errorf("output %s missing", o)
			}
		}
	})
}
