package samtemplate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/testenv"
)

// What DeployToMoto changes, and why (moto 5.2.1's CloudFormation):
//
//  1. The SAM transform runs locally (aws-sam-translator via python3): moto
//     does not implement AWS::Serverless-2016-10-31.
//  2. Conditions are evaluated here and the template specialized for the
//     parameter values (see [Template.Specialize]): moto compares a Number
//     parameter with a string in Fn::Equals as unequal (TokenSlots=3 would
//     create slot 4) and keeps AWS::NoValue as null inside lists.
//  3. AWS::SecretsManager::Secret is not supported by moto's CloudFormation:
//     each secret is created through the Secrets Manager API (name
//     "<stack>-<logical id>", same SecretString, Description and KmsKeyId) and
//     every Ref to it (and ${Id} in Fn::Sub) is replaced by its ARN.
//  4. Function code is replaced by a dummy inline ZipFile: no code is built or
//     uploaded; the demo runs the bootstraps itself.
//  5. Resource types moto cannot create are removed, with the DependsOn
//     entries naming them (motoSkipped says why each is safe to skip).
//
// Moto accepts but ignores some properties the template sets (verified
// against moto 5.2.1): DynamoDB TimeToLiveSpecification, PITR and SSE; the
// bucket's PublicAccessBlock, OwnershipControls, Lifecycle and EventBridge
// notification; Lambda Architectures and TracingConfig.
var motoSkipped = map[string]string{
	"AWS::Scheduler::Schedule":       "not in moto's CloudFormation; the demo invokes the functions itself",
	"AWS::CloudWatch::Alarm":         "not in moto's CloudFormation; alarms read metrics moto does not produce",
	"AWS::Lambda::EventInvokeConfig": "not in moto's CloudFormation; only affects asynchronous retries",
	"AWS::S3::BucketPolicy":          "not in moto's CloudFormation; moto does not enforce bucket policies",
	"AWS::SNS::Subscription":         "not in moto's CloudFormation; no e-mail is sent locally",
}

// motoCreated are the resource types moto's CloudFormation creates; a type in
// neither list makes DeployToMoto fail, so a new resource type gets a decision.
var motoCreated = map[string]bool{
	"AWS::Lambda::Function":           true,
	"AWS::Lambda::EventSourceMapping": true,
	"AWS::IAM::Role":                  true,
	"AWS::SQS::Queue":                 true,
	"AWS::DynamoDB::Table":            true,
	"AWS::S3::Bucket":                 true,
	"AWS::SNS::Topic":                 true,
	"AWS::Logs::LogGroup":             true,
}

const secretType = "AWS::SecretsManager::Secret"

// MotoOptions configures [Deploy].
type MotoOptions struct {
	Endpoint     string            // moto_server URL, e.g. http://127.0.0.1:5000 (required)
	StackName    string            // default "cfsync"
	Region       string            // default "us-east-1"
	Params       map[string]string // template parameter values; the rest take their defaults
	TemplatePath string            // default: [Path]
	Timeout      time.Duration     // stack creation wait; default 2 minutes
}

// MotoStack describes a stack Deploy created.
type MotoStack struct {
	StackName string
	Params    map[string]string       // every parameter's effective value
	Outputs   map[string]string       // the template's Outputs
	Resources map[string]string       // logical id → physical id (secrets included)
	Functions map[string]MotoFunction // by logical id (TokenRefresher, FilesetPoller, Downloader)
	Skipped   map[string]string       // logical id → type of resources moto did not create
}

// MotoFunction is one deployed function.
type MotoFunction struct {
	Name       string            // physical function name
	CodeURI    string            // CodeUri in template.yaml, e.g. functions/downloader
	Env        map[string]string // environment variables as moto's Lambda stored them
	Timeout    int               // seconds, as deployed
	MemorySize int               // MB, as deployed
}

// DeployToMoto deploys template.yaml into the moto_server at endpoint as stack
// "cfsync" (region us-east-1) with the given parameter values and returns the
// stack's outputs. See [Deploy] for the details it also returns.
func DeployToMoto(ctx context.Context, endpoint string, params map[string]string) (map[string]string, error) {
	st, err := Deploy(ctx, MotoOptions{Endpoint: endpoint, Params: params})
	if err != nil {
		return nil, err
	}
	return st.Outputs, nil
}

// Deploy transforms template.yaml, adapts it to moto (see the list at the top
// of moto.go), creates the stack in moto's CloudFormation and waits for
// CREATE_COMPLETE.
func Deploy(ctx context.Context, opts MotoOptions) (*MotoStack, error) {
	st, err := deploy(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("deploy to moto: %w", err)
	}
	return st, nil
}

func deploy(ctx context.Context, opts MotoOptions) (*MotoStack, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	sam, values, spec, err := loadSpec(ctx, opts)
	if err != nil {
		return nil, err
	}
	cfg := testenv.AWSConfig(opts.Endpoint, opts.Region)
	cf := cloudformation.NewFromConfig(cfg)
	if _, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(opts.StackName)}); err == nil {
		return nil, fmt.Errorf("stack %s already exists", opts.StackName)
	}
	st := &MotoStack{
		StackName: opts.StackName,
		Params:    map[string]string{},
		Outputs:   map[string]string{},
		Resources: map[string]string{},
		Functions: map[string]MotoFunction{},
		Skipped:   map[string]string{},
	}
	for _, p := range sam.Parameters() {
		st.Params[p.Name] = values[p.Name]
	}
	// 3. Secrets through the API.
	sm := secretsmanager.NewFromConfig(cfg)
	res := &Resolver{Params: values}
	for _, r := range spec.ResourcesOfType(secretType) {
		arn, err := createSecret(ctx, sm, res, opts.StackName, r)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", r.ID, err)
		}
		st.Resources[r.ID] = arn
	}
	body, skipped, err := motoTemplate(spec, st.Resources)
	if err != nil {
		return nil, err
	}
	st.Skipped = skipped
	if err := createStack(ctx, cf, opts, st, body); err != nil {
		return nil, err
	}
	if err := readFunctions(ctx, lambda.NewFromConfig(cfg), sam, spec, st); err != nil {
		return nil, err
	}
	return st, nil
}

// setDefaults fills the options left empty.
func (opts *MotoOptions) setDefaults() error {
	if opts.Endpoint == "" {
		return errors.New("no endpoint")
	}
	if opts.StackName == "" {
		opts.StackName = "cfsync"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.TemplatePath == "" {
		p, err := Path()
		if err != nil {
			return err
		}
		opts.TemplatePath = p
	}
	return nil
}

// loadSpec loads the SAM template, resolves its parameters, transforms it
// and specializes the result to those parameter values.
func loadSpec(ctx context.Context, opts MotoOptions) (sam Template, values map[string]string, spec Template, err error) {
	sam, err = Load(opts.TemplatePath)
	if err != nil {
		return nil, nil, nil, err
	}
	in := map[string]string{
		"AWS::Region":    opts.Region,
		"AWS::StackName": opts.StackName,
		"AWS::StackId":   fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/00000000-0000-0000-0000-000000000000", opts.Region, DefaultPseudoParameters["AWS::AccountId"], opts.StackName),
	}
	for k, v := range opts.Params {
		in[k] = v
	}
	values, err = sam.ParameterValues(in)
	if err != nil {
		return nil, nil, nil, err
	}
	cfn, err := Translate(ctx, sam, values)
	if err != nil {
		return nil, nil, nil, err
	}
	spec, _, err = cfn.Specialize(values)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("specialize: %w", err)
	}
	return sam, values, spec, nil
}

// createStack creates the stack from body, waits for CREATE_COMPLETE and
// records its outputs and physical resource ids in st.
func createStack(ctx context.Context, cf *cloudformation.Client, opts MotoOptions, st *MotoStack, body []byte) error {
	var cfParams []cfntypes.Parameter
	for _, name := range SortedKeys(st.Params) {
		cfParams = append(cfParams, cfntypes.Parameter{ParameterKey: aws.String(name), ParameterValue: aws.String(st.Params[name])})
	}
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String(opts.StackName),
		TemplateBody: aws.String(string(body)),
		Parameters:   cfParams,
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam, cfntypes.CapabilityCapabilityNamedIam},
	}, func(o *cloudformation.Options) {
		// moto creates the resources inside CreateStack and answers 500 when
		// one fails; a retry would only report "already exists".
		o.RetryMaxAttempts = 1
	}); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "StatusCode: 500") {
			hint = " (moto_server failed while creating a resource; its log has the traceback)"
		}
		return fmt.Errorf("create stack: %w%s%s", err, hint, failedEvents(ctx, cf, opts.StackName))
	}
	stack, err := waitCreate(ctx, cf, opts.StackName, opts.Timeout)
	if err != nil {
		return err
	}
	for _, o := range stack.Outputs {
		st.Outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	rs, err := cf.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(opts.StackName)})
	if err != nil {
		return fmt.Errorf("describe stack resources: %w", err)
	}
	for _, r := range rs.StackResources {
		st.Resources[aws.ToString(r.LogicalResourceId)] = aws.ToString(r.PhysicalResourceId)
	}
	return nil
}

// readFunctions records each deployed function's name, code directory,
// environment, timeout and memory in st.
func readFunctions(ctx context.Context, lc *lambda.Client, sam, spec Template, st *MotoStack) error {
	codeURIs := map[string]string{}
	for _, f := range sam.Functions() {
		codeURIs[f.ID], _ = f.Properties["CodeUri"].(string)
	}
	for _, f := range spec.ResourcesOfType("AWS::Lambda::Function") {
		mf, err := deployedFunction(ctx, lc, st.Resources[f.ID])
		if err != nil {
			return fmt.Errorf("function %s: %w", f.ID, err)
		}
		mf.CodeURI = codeURIs[f.ID]
		st.Functions[f.ID] = mf
	}
	return nil
}

func createSecret(ctx context.Context, sm *secretsmanager.Client, res *Resolver, stack string, r Resource) (string, error) {
	props, err := res.Resolve(r.Properties)
	if err != nil {
		return "", err
	}
	p, _ := props.(map[string]any)
	known := map[string]bool{"Name": true, "Description": true, "SecretString": true, "KmsKeyId": true, "Tags": true}
	for k := range p {
		if !known[k] {
			return "", fmt.Errorf("property %s is not supported by the moto path", k)
		}
	}
	in := &secretsmanager.CreateSecretInput{Name: aws.String(stack + "-" + r.ID)}
	if s, ok := p["Name"].(string); ok {
		in.Name = aws.String(s)
	}
	if s, ok := p["Description"].(string); ok {
		in.Description = aws.String(s)
	}
	if s, ok := p["SecretString"].(string); ok {
		in.SecretString = aws.String(s)
	}
	if s, ok := p["KmsKeyId"].(string); ok {
		in.KmsKeyId = aws.String(s)
	}
	out, err := sm.CreateSecret(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create secret: %w", err)
	}
	return aws.ToString(out.ARN), nil
}

// motoTemplate applies steps 3-5 to a specialized CloudFormation template and
// returns its JSON body and the skipped resources (logical id → type).
func motoTemplate(spec Template, secretARNs map[string]string) ([]byte, map[string]string, error) {
	t := spec.Clone()
	resources := t.section("Resources")
	skipped := map[string]string{}
	for _, r := range t.Resources() {
		if r.Type == secretType {
			delete(resources, r.ID)
			continue
		}
		if _, ok := motoSkipped[r.Type]; ok {
			skipped[r.ID] = r.Type
			delete(resources, r.ID)
			continue
		}
		if !motoCreated[r.Type] {
			return nil, nil, fmt.Errorf("resource %s: type %s is neither known to work in moto nor listed as skipped (samtemplate/moto.go)", r.ID, r.Type)
		}
	}
	replaced := replaceRefs(map[string]any(t), secretARNs).(map[string]any)
	t = Template(replaced)
	resources = t.section("Resources")
	for _, r := range t.Resources() {
		if deps := dependsOn(r.Raw); deps != nil {
			var keep []any
			for _, d := range deps {
				if _, gone := skipped[d]; gone {
					continue
				}
				if _, gone := secretARNs[d]; gone {
					continue
				}
				keep = append(keep, d)
			}
			if len(keep) == 0 {
				delete(r.Raw, "DependsOn")
			} else {
				r.Raw["DependsOn"] = keep
			}
		}
		for _, ref := range References(r.Raw) {
			if _, gone := skipped[ref]; gone {
				return nil, nil, fmt.Errorf("resource %s refers to %s, which moto cannot create", r.ID, ref)
			}
		}
		if r.Type == "AWS::Lambda::Function" {
			r.Properties["Code"] = map[string]any{"ZipFile": "cfsync: code is not deployed to moto; the demo runs the bootstraps"}
		}
		resources[r.ID] = r.Raw
	}
	for name, o := range t.section("Outputs") {
		for _, ref := range References(o) {
			if _, gone := skipped[ref]; gone {
				return nil, nil, fmt.Errorf("output %s refers to %s, which moto cannot create", name, ref)
			}
		}
	}
	body, err := json.Marshal(map[string]any(t))
	if err != nil {
		return nil, nil, fmt.Errorf("marshal moto template: %w", err)
	}
	return body, skipped, nil
}

func dependsOn(raw map[string]any) []string {
	switch d := raw["DependsOn"].(type) {
	case string:
		return []string{d}
	case []any:
		var out []string
		for _, e := range d {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// replaceRefs replaces {"Ref": id} and ${id} inside Fn::Sub strings by the
// literal value for every id in vals.
func replaceRefs(v any, vals map[string]string) any {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			x[i] = replaceRefs(e, vals)
		}
		return x
	case map[string]any:
		if len(x) == 1 {
			if id, ok := x["Ref"].(string); ok {
				if val, ok := vals[id]; ok {
					return val
				}
			}
			if sub, ok := x["Fn::Sub"]; ok {
				switch s := sub.(type) {
				case string:
					x["Fn::Sub"] = subReplace(s, vals)
				case []any:
					if len(s) == 2 {
						if str, ok := s[0].(string); ok {
							s[0] = subReplace(str, vals)
						}
						s[1] = replaceRefs(s[1], vals)
					}
				}
				return x
			}
		}
		for k, e := range x {
			x[k] = replaceRefs(e, vals)
		}
		return x
	default:
		return v
	}
}

func subReplace(s string, vals map[string]string) string {
	for id, val := range vals {
		s = strings.ReplaceAll(s, "${"+id+"}", val)
	}
	return s
}

// References lists the logical ids (and parameter names) v refers to through
// Ref, Fn::GetAtt and Fn::Sub, sorted and without duplicates. Pseudo
// parameters (AWS::…) are left out.
func References(v any) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if len(x) == 1 {
				if id, ok := x["Ref"].(string); ok {
					seen[id] = true
					return
				}
				if ga, ok := x["Fn::GetAtt"]; ok {
					switch a := ga.(type) {
					case []any:
						if len(a) > 0 {
							if id, ok := a[0].(string); ok {
								seen[id] = true
							}
						}
					case string:
						id, _, _ := strings.Cut(a, ".")
						seen[id] = true
					}
					return
				}
				if sub, ok := x["Fn::Sub"]; ok {
					text, vars := "", map[string]any{}
					switch s := sub.(type) {
					case string:
						text = s
					case []any:
						if len(s) == 2 {
							text, _ = s[0].(string)
							vars, _ = s[1].(map[string]any)
							walk(s[1])
						}
					}
					for _, name := range subVariables(text) {
						if _, local := vars[name]; !local {
							id, _, _ := strings.Cut(name, ".")
							seen[id] = true
						}
					}
					return
				}
			}
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	var out []string
	for id := range seen {
		if !strings.HasPrefix(id, "AWS::") {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// subVariables returns the ${…} names of an Fn::Sub string (not ${!literals}).
func subVariables(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return out
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			return out
		}
		if name := s[i+2 : i+j]; !strings.HasPrefix(name, "!") {
			out = append(out, name)
		}
		s = s[i+j+1:]
	}
}

func waitCreate(ctx context.Context, cf *cloudformation.Client, name string, timeout time.Duration) (*cfntypes.Stack, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
		if err != nil {
			return nil, fmt.Errorf("describe stack %s: %w", name, err)
		}
		if len(out.Stacks) != 1 {
			return nil, fmt.Errorf("describe stack %s: %d stacks", name, len(out.Stacks))
		}
		s := out.Stacks[0]
		switch s.StackStatus {
		case cfntypes.StackStatusCreateComplete:
			return &s, nil
		case cfntypes.StackStatusCreateInProgress:
		default:
			return nil, fmt.Errorf("stack %s: %s %s%s", name, s.StackStatus, aws.ToString(s.StackStatusReason), failedEvents(ctx, cf, name))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stack %s: still %s: %w", name, s.StackStatus, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func failedEvents(ctx context.Context, cf *cloudformation.Client, name string) string {
	out, err := cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range out.StackEvents {
		if strings.HasSuffix(string(e.ResourceStatus), "FAILED") {
			fmt.Fprintf(&b, "; %s: %s", aws.ToString(e.LogicalResourceId), aws.ToString(e.ResourceStatusReason))
		}
	}
	return b.String()
}

// deployedFunction reads a function's environment, timeout and memory
// from moto's Lambda API.
func deployedFunction(ctx context.Context, c *lambda.Client, name string) (MotoFunction, error) {
	out, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		return MotoFunction{}, fmt.Errorf("get function configuration %s: %w", name, err)
	}
	f := MotoFunction{Name: name, Env: map[string]string{}, Timeout: int(aws.ToInt32(out.Timeout)), MemorySize: int(aws.ToInt32(out.MemorySize))}
	if out.Environment != nil && out.Environment.Variables != nil {
		f.Env = out.Environment.Variables
	}
	return f, nil
}
