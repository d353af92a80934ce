package samtemplate

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// starActions may (and must) use "Resource": "*": AWS offers no resource-level
// permissions for them (template.yaml explains each).
var starActions = []string{"xray:PutTraceSegments", "xray:PutTelemetryRecords", "secretsmanager:BatchGetSecretValue"}

var functionRoles = map[string]string{
	TokenRefresher: "TokenRefresherRole",
	FilesetPoller:  "FilesetPollerRole",
	Downloader:     "DownloaderRole",
}

// statement is one IAM policy statement with its lists normalized.
type statement struct {
	Sid       string
	Effect    string
	Actions   []string
	Resources []string
	Condition any
}

func asStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// roleStatements resolves the inline policy statements of an AWS::IAM::Role.
func roleStatements(t *testing.T, spec Template, res *Resolver, roleID string) []statement {
	t.Helper()
	r, ok := spec.Resource(roleID)
	if !ok || r.Type != "AWS::IAM::Role" {
		t.Fatalf("%s: not an AWS::IAM::Role in the template", roleID)
	}
	if _, ok := r.Properties["ManagedPolicyArns"]; ok {
		t.Errorf("%s attaches managed policies; write the permissions inline", roleID)
	}
	pols, err := res.Resolve(r.Properties["Policies"])
	if err != nil {
		t.Fatalf("%s: %v", roleID, err)
	}
	var out []statement
	for _, p := range pols.([]any) {
		for _, s := range get(p, "PolicyDocument", "Statement").([]any) {
			st := statement{Condition: get(s, "Condition")}
			st.Sid, _ = get(s, "Sid").(string)
			st.Effect, _ = get(s, "Effect").(string)
			st.Actions = asStrings(get(s, "Action"))
			st.Resources = asStrings(get(s, "Resource"))
			if get(s, "NotAction") != nil || get(s, "NotResource") != nil {
				t.Errorf("%s: NotAction/NotResource in %v", roleID, s)
			}
			out = append(out, st)
		}
	}
	return out
}

// grants flattens statements into sorted "action resource" pairs (a
// condition, if any, is appended as "if <condition>").
func grants(sts []statement) []string {
	var out []string
	for _, s := range sts {
		cond := ""
		if s.Condition != nil {
			cond = fmt.Sprintf(" if %v", s.Condition)
		}
		for _, a := range s.Actions {
			for _, r := range s.Resources {
				out = append(out, a+" "+r+cond)
			}
		}
	}
	sort.Strings(out)
	return out
}

func commonGrants(logGroup string) []string {
	return []string{
		"logs:CreateLogStream {" + logGroup + ".Arn}",
		"logs:PutLogEvents {" + logGroup + ".Arn}",
		"secretsmanager:BatchGetSecretValue *",
	}
}

// xrayGrants are granted only with Tracing=Active (X-Ray takes no resource ARN).
var xrayGrants = []string{"xray:PutTraceSegments *", "xray:PutTelemetryRecords *"}

func tableGrants() []string {
	var out []string
	for _, a := range []string{"GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "ConditionCheckItem"} {
		out = append(out, "dynamodb:"+a+" {StateTable.Arn}")
	}
	return out
}

// pollerTableGrants: what the poller's state calls use (no Query on the
// table, no deletes, no batch writes).
func pollerTableGrants() []string {
	var out []string
	for _, a := range []string{"GetItem", "BatchGetItem", "PutItem", "UpdateItem"} {
		out = append(out, "dynamodb:"+a+" {StateTable.Arn}")
	}
	return out
}

// nonFinalIndexGrant: the poller's sweep queries the sparse index of
// non-final files, and nothing else may touch an index.
const nonFinalIndexGrant = "dynamodb:Query {StateTable.Arn}/index/nonFinal-updatedAt"

func ringGrants(n int, actions ...string) []string {
	var out []string
	for _, a := range actions {
		for i := 1; i <= n; i++ {
			out = append(out, fmt.Sprintf("%s {TokenSlot%d}", a, i))
		}
	}
	return out
}

func sorted(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	sort.Strings(out)
	return out
}

// grantParams are what the functions' exact grants depend on.
type grantParams struct {
	slots           int    // TokenSlots
	cred            string // the credentials secret
	objects, bucket string // the landing objects' and bucket's ARNs
	traced          bool   // Tracing=Active
}

// exactGrants are every function's grants, sorted, in a stack with p.
func exactGrants(p grantParams) map[string][]string {
	var xray []string
	if p.traced {
		xray = xrayGrants
	}
	return map[string][]string{
		TokenRefresher: sorted(commonGrants("TokenRefresherLogGroup"), xray, tableGrants(),
			[]string{"secretsmanager:GetSecretValue " + p.cred, "secretsmanager:DescribeSecret " + p.cred},
			ringGrants(p.slots, "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:DescribeSecret")),
		FilesetPoller: sorted(commonGrants("FilesetPollerLogGroup"), xray, pollerTableGrants(), []string{nonFinalIndexGrant},
			ringGrants(p.slots, "secretsmanager:GetSecretValue"),
			[]string{"sqs:SendMessage {DownloadQueue.Arn}"}),
		Downloader: sorted(commonGrants("DownloaderLogGroup"), xray, tableGrants(),
			ringGrants(p.slots, "secretsmanager:GetSecretValue"),
			[]string{"sqs:ReceiveMessage {DownloadQueue.Arn}", "sqs:DeleteMessage {DownloadQueue.Arn}",
				"sqs:GetQueueAttributes {DownloadQueue.Arn}", "sqs:SendMessage {DownloadQueue.Arn}"},
			[]string{
				"s3:PutObject " + p.objects, "s3:GetObject " + p.objects,
				"s3:AbortMultipartUpload " + p.objects, "s3:ListMultipartUploadParts " + p.objects,
				"s3:ListBucket " + p.bucket,
				// internal/landing: the "FileSet Landed" event, on the default bus, source cfsync only.
				"events:PutEvents arn:aws:events:us-east-1:123456789012:event-bus/default if map[StringEquals:map[events:source:cfsync]]",
			}),
	}
}

// TestIAMExactGrants pins every permission of every function for the default
// parameters and two variations: the whole least-privilege design in one table.
func TestIAMExactGrants(t *testing.T) {
	tpl := loadRepoTemplate(t)
	cred := "arn:aws:secretsmanager:us-east-1:123456789012:secret:rdp-AbCdEf"
	defaults := grantParams{slots: 3, cred: "{CredentialsSecret}", objects: "arn:aws:s3:::{DestBucket}/*", bucket: "arn:aws:s3:::{DestBucket}"}
	traced := defaults
	traced.traced = true
	tests := []struct {
		name      string
		overrides map[string]string
		want      grantParams
	}{
		{"defaults", nil, defaults},
		{"existing bucket and secret, prefix, one slot", map[string]string{
			"TokenSlots": "1", "DestBucketName": "my-bucket", "DestPrefix": "cfs/", "CredentialsSecretArn": cred,
		}, grantParams{slots: 1, cred: cred, objects: "arn:aws:s3:::my-bucket/cfs/*", bucket: "arn:aws:s3:::my-bucket"}},
		{"tracing active: the X-Ray write actions too", map[string]string{"Tracing": "Active"}, traced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, res := specialize(t, tpl, tt.overrides)
			for fn, want := range exactGrants(tt.want) {
				got := grants(roleStatements(t, spec, res, functionRoles[fn]))
				if !slices.Equal(got, want) {
					t.Errorf("%s grants:\n  got  %s\n  want %s", fn, strings.Join(got, "\n       "), strings.Join(want, "\n       "))
				}
			}
		})
	}
}

// TestIAMRules checks the least-privilege rules for every ring size, with and
// without a KMS key, an existing bucket and an existing credentials secret.
func TestIAMRules(t *testing.T) {
	tpl := loadRepoTemplate(t)
	key := "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	cred := "arn:aws:secretsmanager:us-east-1:123456789012:secret:rdp-AbCdEf"
	type variant struct {
		name      string
		overrides map[string]string
	}
	var variants []variant
	for n := 1; n <= 5; n++ {
		variants = append(variants,
			variant{fmt.Sprintf("slots=%d", n), map[string]string{"TokenSlots": fmt.Sprint(n)}},
			variant{fmt.Sprintf("slots=%d kms existing", n), map[string]string{"TokenSlots": fmt.Sprint(n), "KmsKeyArn": key, "DestBucketName": "b-1", "CredentialsSecretArn": cred}})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			spec, res := specialize(t, tpl, v.overrides)
			params, _ := tpl.ParameterValues(v.overrides)
			slots := 0
			fmt.Sscan(params["TokenSlots"], &slots)
			credRes := "{CredentialsSecret}"
			if params["CredentialsSecretArn"] != "" {
				credRes = cred
			}
			ring := map[string]bool{}
			for i := 1; i <= slots; i++ {
				ring[fmt.Sprintf("{TokenSlot%d}", i)] = true
			}
			// No function gets a SAM-generated role or policies: they would add
			// managed policies with "Resource": "*".
			for _, f := range spec.Functions() {
				if _, ok := f.Properties["Policies"]; ok {
					t.Errorf("%s uses Policies; use its explicit role", f.ID)
				}
				role, _ := f.Properties["Role"].(map[string]any)
				if got := fmt.Sprint(role["Fn::GetAtt"]); got != fmt.Sprint([]any{functionRoles[f.ID], "Arn"}) {
					t.Errorf("%s Role = %v, want its own %s", f.ID, f.Properties["Role"], functionRoles[f.ID])
				}
			}
			for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"} {
				if rs := spec.ResourcesOfType(typ); len(rs) > 0 {
					t.Errorf("unexpected %s resources: %v", typ, rs[0].ID)
				}
			}
			for fn, roleID := range functionRoles {
				sts := roleStatements(t, spec, res, roleID)
				ringSeen := map[string]map[string]bool{} // action → slots
				kmsSeen := false
				for _, s := range sts {
					if s.Effect != "Allow" {
						t.Errorf("%s: %s statement %s", fn, s.Effect, s.Sid)
					}
					for _, a := range s.Actions {
						if strings.Contains(a, "*") {
							t.Errorf("%s: wildcard action %s", fn, a)
						}
						for _, r := range s.Resources {
							if r == "*" && !slices.Contains(starActions, a) {
								t.Errorf(`%s: %s on "*"; only %v may use "*"`, fn, a, starActions)
							}
							if r != "*" && slices.Contains(starActions, a) && a != "secretsmanager:BatchGetSecretValue" {
								t.Errorf("%s: %s on %s", fn, a, r)
							}
							if ring[r] {
								if ringSeen[a] == nil {
									ringSeen[a] = map[string]bool{}
								}
								ringSeen[a][r] = true
							} else if strings.HasPrefix(r, "{TokenSlot") {
								t.Errorf("%s: %s on %s, which the ring of %d does not have", fn, a, r, slots)
							}
							if r == credRes && fn != TokenRefresher {
								t.Errorf("%s can %s the credentials secret; only the refresher may read it", fn, a)
							}
							if r == credRes && a != "secretsmanager:GetSecretValue" && a != "secretsmanager:DescribeSecret" {
								t.Errorf("%s: %s on the credentials secret (read only)", fn, a)
							}
							if strings.HasPrefix(a, "secretsmanager:") && r != "*" && !ring[r] && r != credRes {
								t.Errorf("%s: %s on unexpected secret %s", fn, a, r)
							}
							if strings.HasPrefix(a, "dynamodb:") && r != "{StateTable.Arn}" && (a+" "+r != nonFinalIndexGrant || fn != FilesetPoller) {
								t.Errorf("%s: %s on %s, want the state table", fn, a, r)
							}
							if strings.HasPrefix(a, "sqs:") && r != "{DownloadQueue.Arn}" {
								t.Errorf("%s: %s on %s, want the download queue", fn, a, r)
							}
							if strings.HasPrefix(a, "s3:") && fn != Downloader {
								t.Errorf("%s: %s; only the downloader writes to S3", fn, a)
							}
							if strings.HasPrefix(a, "kms:") {
								kmsSeen = true
								if r != params["KmsKeyArn"] {
									t.Errorf("%s: %s on %s, want the KmsKeyArn", fn, a, r)
								}
								if !strings.Contains(fmt.Sprint(s.Condition), "kms:ViaService") {
									t.Errorf("%s: %s without a kms:ViaService condition", fn, a)
								}
							}
						}
					}
				}
				// The ring: every slot readable by everyone; writable by the refresher only.
				for _, a := range []string{"secretsmanager:GetSecretValue"} {
					if len(ringSeen[a]) != slots {
						t.Errorf("%s: %s on %d ring slots, want %d", fn, a, len(ringSeen[a]), slots)
					}
				}
				writes := len(ringSeen["secretsmanager:PutSecretValue"])
				if fn == TokenRefresher && writes != slots {
					t.Errorf("refresher can write %d of %d ring slots", writes, slots)
				}
				if fn != TokenRefresher && writes != 0 {
					t.Errorf("%s can write the token ring", fn)
				}
				if kmsSeen != (params["KmsKeyArn"] != "") {
					t.Errorf("%s: kms permissions present = %v with KmsKeyArn=%q", fn, kmsSeen, params["KmsKeyArn"])
				}
			}
		})
	}
}

// TestTransformedTemplateIAM looks at the roles after the SAM transform, so
// the roles SAM generates itself (the schedules') are checked too.
func TestTransformedTemplateIAM(t *testing.T) {
	needPython(t)
	tpl := loadRepoTemplate(t)
	params, err := tpl.ParameterValues(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfn, err := Translate(context.Background(), tpl, params)
	if err != nil {
		t.Fatal(err)
	}
	spec, conds, err := cfn.Specialize(params)
	if err != nil {
		t.Fatal(err)
	}
	res := symbolic(spec, params, conds)
	roles := spec.ResourcesOfType("AWS::IAM::Role")
	var ids []string
	for _, r := range roles {
		ids = append(ids, r.ID)
	}
	want := []string{"DownloaderRole", "FilesetPollerFunctionScheduleRole", "FilesetPollerRole", "TokenRefresherFunctionScheduleRole", "TokenRefresherRole"}
	if !slices.Equal(ids, want) {
		t.Fatalf("roles after the transform = %v, want %v", ids, want)
	}
	for _, r := range roles {
		sts := roleStatements(t, spec, res, r.ID)
		for _, s := range sts {
			for _, a := range s.Actions {
				for _, rs := range s.Resources {
					if rs == "*" && !slices.Contains(starActions, a) {
						t.Errorf(`%s: %s on "*"`, r.ID, a)
					}
				}
			}
		}
		if fn, ok := strings.CutSuffix(r.ID, "ScheduleRole"); ok {
			if got, want := grants(sts), []string{"lambda:InvokeFunction {" + fn + ".Arn}"}; !slices.Equal(got, want) {
				t.Errorf("%s grants %v, want %v", r.ID, got, want)
			}
		}
	}
	for _, f := range spec.ResourcesOfType("AWS::Lambda::Function") {
		role, _ := res.ResolveString(f.Properties["Role"])
		if role != "{"+functionRoles[f.ID]+".Arn}" {
			t.Errorf("%s runs as %s, want %s", f.ID, role, functionRoles[f.ID])
		}
	}
}
