package samtemplate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
)

func TestDeployToMoto(t *testing.T) {
	needPython(t)
	moto, cfg := testenv.MotoConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	sm := secretsmanager.NewFromConfig(cfg)
	ddb := dynamodb.NewFromConfig(cfg)
	sq := sqs.NewFromConfig(cfg)

	// What an operator brings for the "existing" case: a bucket and a credentials secret.
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("existing-dest")}); err != nil {
		t.Fatal(err)
	}
	cred, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("rdp-credentials"), SecretString: aws.String(`{"client_id":"x","client_secret":"y"}`)})
	if err != nil {
		t.Fatal(err)
	}
	tpl := loadRepoTemplate(t)

	tests := []struct {
		stack         string
		params        map[string]string
		slots         int
		createsBucket bool
		createsCred   bool
	}{
		{"cfsync-defaults", nil, 3, true, true},
		{"cfsync-existing", map[string]string{
			"TokenSlots": "1", "DestBucketName": "existing-dest", "DestPrefix": "cfs/",
			"CredentialsSecretArn": aws.ToString(cred.ARN), "Subscriptions": "bulk-ESG/pkg-1,bulk-ESG/*",
			"AlarmEmail": "ops@example.com", "LogLevel": "debug",
		}, 1, false, false},
		{"cfsync-five-kms", map[string]string{
			"TokenSlots": "5", "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		}, 5, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.stack, func(t *testing.T) {
			st, err := Deploy(ctx, MotoOptions{Endpoint: moto.Endpoint, StackName: tt.stack, Params: tt.params})
			if err != nil {
				t.Fatal(err)
			}
			out := st.Outputs
			for _, name := range tpl.Outputs() {
				_, has := out[name]
				wantHas := !strings.HasPrefix(name, "TokenSlot") || name <= fmt.Sprintf("TokenSlot%dArn", tt.slots)
				wantHas = wantHas && !strings.HasPrefix(name, "Notification") // Notifications=false
				if has != wantHas {
					t.Errorf("output %s present = %v, want %v", name, has, wantHas)
				}
			}

			// DynamoDB: the exact key schema the code depends on.
			tbl, err := ddb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(out["StateTableName"])})
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]ddbtypes.KeyType{}
			for _, k := range tbl.Table.KeySchema {
				keys[aws.ToString(k.AttributeName)] = k.KeyType
			}
			if len(keys) != 2 || keys["pk"] != ddbtypes.KeyTypeHash || keys["sk"] != ddbtypes.KeyTypeRange {
				t.Errorf("key schema = %v, want pk HASH, sk RANGE", keys)
			}
			for _, a := range tbl.Table.AttributeDefinitions {
				if a.AttributeType != ddbtypes.ScalarAttributeTypeS {
					t.Errorf("attribute %s is %s, want S", aws.ToString(a.AttributeName), a.AttributeType)
				}
			}
			// The sparse index the poller's sweep queries, as deployed.
			if gsis := tbl.Table.GlobalSecondaryIndexes; len(gsis) != 1 || aws.ToString(gsis[0].IndexName) != state.NonFinalIndex {
				t.Errorf("global secondary indexes = %+v, want %s", gsis, state.NonFinalIndex)
			} else {
				st := state.New(ddb, out["StateTableName"])
				if err := st.QueryNonFinal(ctx, time.Time{}, 1, func(*state.FileItem) error { return nil }); err != nil {
					t.Errorf("query the deployed index: %v", err)
				}
			}
			if tbl.Table.BillingModeSummary == nil || tbl.Table.BillingModeSummary.BillingMode != ddbtypes.BillingModePayPerRequest {
				t.Errorf("billing mode = %+v, want PAY_PER_REQUEST", tbl.Table.BillingModeSummary)
			}

			// SQS: redrive to the DLQ after 5 receives, visibility, DLQ retention.
			qa, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(out["DownloadQueueUrl"]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
			if err != nil {
				t.Fatal(err)
			}
			var redrive struct {
				DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
				MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(qa.Attributes["RedrivePolicy"]), &redrive); err != nil {
				t.Fatalf("RedrivePolicy %q: %v", qa.Attributes["RedrivePolicy"], err)
			}
			if redrive.DeadLetterTargetArn != out["DeadLetterQueueArn"] || strings.Trim(string(redrive.MaxReceiveCount), `"`) != "5" {
				t.Errorf("redrive = %+v, want %s after 5", redrive, out["DeadLetterQueueArn"])
			}
			if got := qa.Attributes["VisibilityTimeout"]; got != "1800" {
				t.Errorf("VisibilityTimeout = %s, want 1800", got)
			}
			dq, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(out["DeadLetterQueueUrl"]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameMessageRetentionPeriod}})
			if err != nil {
				t.Fatal(err)
			}
			if got := dq.Attributes["MessageRetentionPeriod"]; got != "1209600" {
				t.Errorf("DLQ retention = %s, want 1209600 (14 days)", got)
			}

			// S3: the bucket exists (created, or the operator's).
			if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(out["DestBucketName"])}); err != nil {
				t.Errorf("bucket %s: %v", out["DestBucketName"], err)
			}
			if got := out["DestBucketName"] == "existing-dest"; got == tt.createsBucket {
				t.Errorf("DestBucketName = %s, createsBucket %v", out["DestBucketName"], tt.createsBucket)
			}

			// Secrets: N ring slots holding the {} placeholder, plus the credentials placeholder if created.
			ring := strings.Split(out["TokenSecretIds"], ",")
			if len(ring) != tt.slots {
				t.Fatalf("TokenSecretIds has %d ids, want %d", len(ring), tt.slots)
			}
			batch, err := sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: ring})
			if err != nil {
				t.Fatal(err)
			}
			if len(batch.SecretValues) != tt.slots || len(batch.Errors) != 0 {
				t.Errorf("BatchGetSecretValue: %d values, errors %v", len(batch.SecretValues), batch.Errors)
			}
			for _, v := range batch.SecretValues {
				if aws.ToString(v.SecretString) != "{}" {
					t.Errorf("slot %s holds %q, want {}", aws.ToString(v.ARN), aws.ToString(v.SecretString))
				}
			}
			list, err := sm.ListSecrets(ctx, &secretsmanager.ListSecretsInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{tt.stack + "-"}}}})
			if err != nil {
				t.Fatal(err)
			}
			wantSecrets := tt.slots
			if tt.createsCred {
				wantSecrets++
			}
			if len(list.SecretList) != wantSecrets {
				t.Errorf("stack secrets = %d, want %d", len(list.SecretList), wantSecrets)
			}
			if !tt.createsCred && out["CredentialsSecretArn"] != aws.ToString(cred.ARN) {
				t.Errorf("CredentialsSecretArn = %s, want the operator's %s", out["CredentialsSecretArn"], aws.ToString(cred.ARN))
			}

			// Functions: the environment moto's Lambda holds is the template's, resolved.
			wantEnv := map[string]map[string]string{
				TokenRefresher: {"RDP_CREDENTIALS_SECRET_ID": out["CredentialsSecretArn"]},
				FilesetPoller:  {"DOWNLOAD_QUEUE_URL": out["DownloadQueueUrl"], "SUBSCRIPTIONS": st.Params["Subscriptions"]},
				Downloader: {"DOWNLOAD_QUEUE_URL": out["DownloadQueueUrl"], "DEST_BUCKET": out["DestBucketName"],
					"DEST_PREFIX": st.Params["DestPrefix"]},
			}
			for fn, vars := range wantEnv {
				f, ok := st.Functions[fn]
				if !ok {
					t.Fatalf("function %s not deployed", fn)
				}
				if f.Name != out[fn+"Name"] {
					t.Errorf("%s name %s, output says %s", fn, f.Name, out[fn+"Name"])
				}
				if !strings.HasPrefix(f.CodeURI, "functions/") {
					t.Errorf("%s CodeURI = %q", fn, f.CodeURI)
				}
				if res, _ := tpl.Resource(fn); fmt.Sprint(f.Timeout, f.MemorySize) != fmt.Sprint(res.Properties["Timeout"], res.Properties["MemorySize"]) {
					t.Errorf("%s deployed with timeout %d s, memory %d MB; the template says %v s, %v MB", fn, f.Timeout, f.MemorySize, res.Properties["Timeout"], res.Properties["MemorySize"])
				}
				vars["TOKEN_SECRET_IDS"] = out["TokenSecretIds"]
				vars["STATE_TABLE"] = out["StateTableName"]
				vars["LOG_LEVEL"] = st.Params["LogLevel"]
				vars["RDP_BASE_URL"] = "https://api.refinitiv.com"
				tmplEnv, err := tpl.FunctionEnv(fn)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := SortedKeys(f.Env), SortedKeys(tmplEnv); !slices.Equal(got, want) {
					t.Errorf("%s env names = %v, want %v", fn, got, want)
				}
				for k, v := range vars {
					if f.Env[k] != v {
						t.Errorf("%s %s = %q, want %q", fn, k, f.Env[k], v)
					}
				}
			}
			for _, typ := range []string{"AWS::Scheduler::Schedule", "AWS::CloudWatch::Alarm"} {
				if !slices.Contains(mapValues(st.Skipped), typ) {
					t.Errorf("Skipped %v lacks %s", st.Skipped, typ)
				}
			}
		})
	}

	t.Run("DeployToMoto", func(t *testing.T) {
		out, err := DeployToMoto(ctx, moto.Endpoint, map[string]string{"TokenSlots": "2"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := out["TokenSlot2Arn"]; !ok {
			t.Error("TokenSlot2Arn missing")
		}
		if _, ok := out["TokenSlot3Arn"]; ok {
			t.Error("TokenSlot3Arn present with TokenSlots=2")
		}
		if _, err := DeployToMoto(ctx, moto.Endpoint, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("second deploy of stack cfsync: err = %v, want already exists", err)
		}
	})
	t.Run("bad parameter", func(t *testing.T) {
		_, err := Deploy(ctx, MotoOptions{Endpoint: moto.Endpoint, StackName: "bad", Params: map[string]string{"TokenSlots": "9"}})
		if err == nil || !strings.Contains(err.Error(), "TokenSlots") {
			t.Errorf("err = %v, want a TokenSlots error", err)
		}
	})
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestMotoTemplate checks the moto adaptation without a moto server.
func TestMotoTemplate(t *testing.T) {
	spec := Template{
		"Resources": map[string]any{
			"Slot":  map[string]any{"Type": secretType, "Properties": map[string]any{"SecretString": "{}"}},
			"Fn":    map[string]any{"Type": "AWS::Lambda::Function", "DependsOn": []any{"Sched", "Q"}, "Properties": map[string]any{"Code": map[string]any{"S3Bucket": "b", "S3Key": "k"}, "Environment": map[string]any{"Variables": map[string]any{"IDS": map[string]any{"Fn::Join": []any{",", []any{map[string]any{"Ref": "Slot"}, map[string]any{"Fn::Sub": "x-${Slot}"}}}}}}}},
			"Q":     map[string]any{"Type": "AWS::SQS::Queue"},
			"Sched": map[string]any{"Type": "AWS::Scheduler::Schedule", "Properties": map[string]any{"Target": map[string]any{"Arn": map[string]any{"Fn::GetAtt": []any{"Fn", "Arn"}}}}},
		},
	}
	body, skipped, err := motoTemplate(spec, map[string]string{"Slot": "arn:slot"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Resource("Slot"); ok {
		t.Error("secret resource kept")
	}
	if _, ok := got.Resource("Sched"); ok || skipped["Sched"] != "AWS::Scheduler::Schedule" {
		t.Errorf("schedule not skipped: %v", skipped)
	}
	fn, _ := got.Resource("Fn")
	if d := fn.Raw["DependsOn"]; fmt.Sprint(d) != "[Q]" {
		t.Errorf("DependsOn = %v, want [Q]", d)
	}
	if code := fmt.Sprint(fn.Properties["Code"]); !strings.Contains(code, "ZipFile") || strings.Contains(code, "S3Bucket") {
		t.Errorf("Code = %s", code)
	}
	ids, err := ToJSON(get(fn.Properties, "Environment", "Variables", "IDS"))
	if err != nil {
		t.Fatal(err)
	}
	if string(ids) != `{"Fn::Join":[",",["arn:slot",{"Fn::Sub":"x-arn:slot"}]]}` {
		t.Errorf("IDS = %s", ids)
	}

	// A resource type nobody decided on, or a reference to a skipped resource, is an error.
	for name, bad := range map[string]Template{
		"unknown type":       {"Resources": map[string]any{"X": map[string]any{"Type": "AWS::EC2::VPC"}}},
		"ref to skipped one": {"Resources": map[string]any{"A": map[string]any{"Type": "AWS::CloudWatch::Alarm"}, "Q": map[string]any{"Type": "AWS::SQS::Queue", "Properties": map[string]any{"QueueName": map[string]any{"Ref": "A"}}}}},
	} {
		if _, _, err := motoTemplate(bad, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
