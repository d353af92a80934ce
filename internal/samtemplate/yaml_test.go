package samtemplate

import (
	"strings"
	"testing"
)

func TestParseYAMLShortForms(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ref", `a: !Ref Bucket`, `{"a":{"Ref":"Bucket"}}`},
		{"ref keeps digits a string", `a: !Ref 1`, `{"a":{"Ref":"1"}}`},
		{"getatt dotted", `a: !GetAtt Queue.Arn`, `{"a":{"Fn::GetAtt":["Queue","Arn"]}}`},
		{"getatt dotted attribute", `a: !GetAtt Db.Endpoint.Address`, `{"a":{"Fn::GetAtt":["Db","Endpoint.Address"]}}`},
		{"getatt list", `a: !GetAtt [Queue, Arn]`, `{"a":{"Fn::GetAtt":["Queue","Arn"]}}`},
		{"sub string", `a: !Sub "arn:${AWS::Partition}:s3:::${B}/*"`, `{"a":{"Fn::Sub":"arn:${AWS::Partition}:s3:::${B}/*"}}`},
		{"sub with map", "a: !Sub\n  - x${V}\n  - V: !Ref P", `{"a":{"Fn::Sub":["x${V}",{"V":{"Ref":"P"}}]}}`},
		{"if nested", `a: !If [C, !Ref X, !Ref AWS::NoValue]`, `{"a":{"Fn::If":["C",{"Ref":"X"},{"Ref":"AWS::NoValue"}]}}`},
		{"condition functions", `c: !And [!Condition A, !Not [!Equals [!Ref P, "1"]]]`,
			`{"c":{"Fn::And":[{"Condition":"A"},{"Fn::Not":[{"Fn::Equals":[{"Ref":"P"},"1"]}]}]}}`},
		{"join select split", `a: !Join [",", [!Select [0, !Split ["/", !Ref P]], b]]`,
			`{"a":{"Fn::Join":[",",[{"Fn::Select":[0,{"Fn::Split":["/",{"Ref":"P"}]}]},"b"]]}}`},
		{"base64 and getazs", "a: !Base64 x\nb: !GetAZs ''", `{"a":{"Fn::Base64":"x"},"b":{"Fn::GetAZs":""}}`},
		{"plain scalars", "i: 3\nf: 1.5\nb: true\ns: \"OFF\"\nn: null\nd: 2012-10-17", `{"b":true,"d":"2012-10-17","f":1.5,"i":3,"n":null,"s":"OFF"}`},
		{"anchors and merge keys", "x: &base {a: 1}\ny:\n  <<: *base\n  b: 2\nz: *base", `{"x":{"a":1},"y":{"a":1,"b":2},"z":{"a":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseYAML([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ToJSON(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseYAMLErrors(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"unknown tag", `a: !Reff X`, "unknown CloudFormation tag !Reff"},
		{"getatt without attribute", `a: !GetAtt Queue`, "want Resource.Attribute"},
		{"duplicate key", "a: 1\na: 2", `duplicate key "a"`},
		{"bad yaml", "a: [1, 2", "parse template yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseYAML([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
