package samtemplate

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// resolveYAML resolves the intrinsic functions of the YAML document in
// with r.
func resolveYAML(t *testing.T, r *Resolver, in string) (any, error) {
	t.Helper()
	v, err := ParseYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return r.Resolve(v)
}

func TestResolver(t *testing.T) {
	r := &Resolver{
		Params:     map[string]string{"P": "v", "List": "a,b,c", "AWS::Region": "eu-west-1", "AWS::Partition": "aws"},
		Conditions: map[string]bool{"Yes": true, "No": false},
		Ref:        func(id string) (string, error) { return "ref-" + id, nil },
		GetAtt:     func(id, attr string) (string, error) { return id + "-" + attr, nil },
	}
	tests := []struct {
		name string
		in   string // YAML
		want any
	}{
		{"ref parameter", `!Ref P`, "v"},
		{"ref resource", `!Ref Bucket`, "ref-Bucket"},
		{"getatt", `!GetAtt Q.Arn`, "Q-Arn"},
		{"sub", `!Sub "arn:${AWS::Partition}:s3:::${Bucket}/${P}/${Q.Arn}/${!Literal}"`, "arn:aws:s3:::ref-Bucket/v/Q-Arn/${Literal}"},
		{"sub with variables", "!Sub\n  - ${X}-${AWS::Region}\n  - X: !Ref P", "v-eu-west-1"},
		{"if true", `!If [Yes, a, b]`, "a"},
		{"if false", `!If [No, a, b]`, "b"},
		{"novalue dropped from list", `[a, !If [No, b, !Ref AWS::NoValue], c]`, []any{"a", "c"}},
		{"novalue dropped from map", `{k: !If [No, b, !Ref AWS::NoValue], j: x}`, map[string]any{"j": "x"}},
		{"novalue at the top is nil", `!If [No, b, !Ref AWS::NoValue]`, nil},
		{"join", `!Join [",", [a, !If [Yes, !Sub ",${P}", ""], !Ref Bucket]]`, "a,,v,ref-Bucket"},
		{"select split", `!Select [1, !Split [",", !Ref List]]`, "b"},
		{"base64", `!Base64 hi`, "aGk="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveYAML(t, r, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestResolverErrors(t *testing.T) {
	r := &Resolver{Params: map[string]string{"P": "v"}, Conditions: map[string]bool{}}
	tests := []struct{ name, in, want string }{
		{"unknown condition", `!If [Nope, a, b]`, `unknown condition "Nope"`},
		{"resource without resolver", `!Ref Bucket`, "Ref Bucket"},
		{"unknown function", `!GetAZs ""`, "unsupported intrinsic function Fn::GetAZs"},
		{"unterminated sub", `!Sub "x${P"`, "unterminated"},
		{"join of non-list", `!Join [",", !Ref P]`, "Fn::Join: v is not a list"},
		{"select from non-list", `!Select [0, !Ref P]`, "Fn::Select: v is not a list"},
		{"join of one argument", `!Join [","]`, "Fn::Join wants [delimiter, list]"},
		{"split of three arguments", `!Split [",", a, b]`, "Fn::Split wants [delimiter, string]"},
		{"select of a scalar", `!Select x`, "Fn::Select wants [index, list]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := resolveYAML(t, r, tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParameterValues(t *testing.T) {
	tpl := loadRepoTemplate(t)
	tests := []struct {
		name      string
		overrides map[string]string
		wantErr   string
		check     map[string]string
	}{
		{name: "defaults", check: map[string]string{
			"TokenSlots": "3", "RefreshSchedule": "rate(1 minute)", "PollSchedule": "rate(15 minutes)",
			"RdpBaseUrl": "https://api.refinitiv.com", "DestBucketName": "", "CredentialsSecretArn": "", "LogLevel": "info",
		}},
		{name: "override", overrides: map[string]string{"TokenSlots": "5", "DestPrefix": "cfs/"},
			check: map[string]string{"TokenSlots": "5", "DestPrefix": "cfs/"}},
		{name: "unknown parameter", overrides: map[string]string{"TokenSlot": "3"}, wantErr: "TokenSlot: not declared"},
		{name: "ring too large", overrides: map[string]string{"TokenSlots": "6"}, wantErr: "TokenSlots=\"6\": not one of"},
		{name: "secret name instead of ARN", overrides: map[string]string{"CredentialsSecretArn": "rdp-creds"}, wantErr: "CredentialsSecretArn"},
		{name: "prefix without slash", overrides: map[string]string{"DestPrefix": "cfs"}, wantErr: "DestPrefix"},
		{name: "bad email", overrides: map[string]string{"AlarmEmail": "ops"}, wantErr: "AlarmEmail"},
		{name: "bad bucket", overrides: map[string]string{"DestBucketName": "My_Bucket"}, wantErr: "DestBucketName"},
		{name: "concurrency below the SQS minimum", overrides: map[string]string{"DownloaderMaxConcurrency": "1"}, wantErr: "DownloaderMaxConcurrency=\"1\": below MinValue 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tpl.ParameterValues(tt.overrides)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.check {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestRingConditions(t *testing.T) {
	tpl := loadRepoTemplate(t)
	for n := 1; n <= 5; n++ {
		t.Run(fmt.Sprintf("TokenSlots=%d", n), func(t *testing.T) {
			params, err := tpl.ParameterValues(map[string]string{"TokenSlots": fmt.Sprint(n)})
			if err != nil {
				t.Fatal(err)
			}
			conds, err := tpl.Conditions(params)
			if err != nil {
				t.Fatal(err)
			}
			for k := 2; k <= 5; k++ {
				if got, want := conds[fmt.Sprintf("HasSlot%d", k)], k <= n; got != want {
					t.Errorf("HasSlot%d = %v, want %v", k, got, want)
				}
			}
		})
	}
}

func TestSpecializeDropsConditionalResources(t *testing.T) {
	tpl := loadRepoTemplate(t)
	tests := []struct {
		name      string
		overrides map[string]string
		present   []string
		absent    []string
	}{
		{"defaults", nil,
			[]string{"TokenSlot1", "TokenSlot3", "CredentialsSecret", "DestBucket", "DestBucketPolicy"},
			[]string{"TokenSlot4", "TokenSlot5", "AlarmEmailSubscription"}},
		{"existing bucket and secret, one slot, e-mail", map[string]string{
			"TokenSlots": "1", "DestBucketName": "my-bucket", "AlarmEmail": "ops@example.com",
			"CredentialsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rdp-AbCdEf",
		},
			[]string{"TokenSlot1", "AlarmEmailSubscription"},
			[]string{"TokenSlot2", "CredentialsSecret", "DestBucket", "DestBucketPolicy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, _ := specialize(t, tpl, tt.overrides)
			if _, ok := spec["Conditions"]; ok {
				t.Error("Conditions section kept")
			}
			for _, id := range tt.present {
				r, ok := spec.Resource(id)
				if !ok {
					t.Errorf("%s missing", id)
					continue
				}
				if r.Condition != "" {
					t.Errorf("%s keeps Condition %s", id, r.Condition)
				}
			}
			for _, id := range tt.absent {
				if _, ok := spec.Resource(id); ok {
					t.Errorf("%s present", id)
				}
			}
			// No Fn::If survives.
			body, err := ToJSON(map[string]any(spec))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), "Fn::If") || strings.Contains(string(body), "AWS::NoValue") {
				t.Error("Fn::If or AWS::NoValue left in the specialized template")
			}
		})
	}
}

func TestReferences(t *testing.T) {
	v, err := ParseYAML([]byte(`
a: !Ref Bucket
b: !GetAtt Queue.Arn
c: !Sub "${AWS::Region}-${Table}-${Fn.Arn}-${!Lit}"
d: !Sub ["${X}-${Y}", {X: !Ref Param}]
e: !Ref AWS::NoValue`))
	if err != nil {
		t.Fatal(err)
	}
	got := References(v)
	want := []string{"Bucket", "Fn", "Param", "Queue", "Table", "Y"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("References = %v, want %v", got, want)
	}
}
