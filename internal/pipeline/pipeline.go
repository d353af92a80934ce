// Package pipeline runs the whole cfsync pipeline on one machine, with the
// same machinery as production minus AWS and LSEG: the resources come from
// template.yaml deployed into moto_server's CloudFormation, the functions
// (three, and the notification-reader with the template parameter
// Notifications=true) are the built bootstrap binaries running under AWS's
// Lambda Runtime Interface Emulator (internal/lambdarun), and this package
// plays the parts of AWS that call them: EventBridge Scheduler (the
// refresher, the poller and the reader on a schedule) and the SQS event
// source mapping of the downloader
// (batches with receipt handles and ApproximateReceiveCount, partial batch
// responses, failed messages left for redelivery and moto's DLQ redrive).
//
// It is used by the demo (cmd/cfsync-local), the end-to-end tests (test/e2e)
// and the cold-start benchmark. It never logs: the functions' logs go to
// Config.LogWriter and Logs.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"golang.org/x/sync/errgroup"

	"github.com/cfsync/cfsync/internal/lambdarun"
	"github.com/cfsync/cfsync/internal/repo"
	"github.com/cfsync/cfsync/internal/samtemplate"
	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/testenv"
)

// Region is the AWS region of the local stack.
const Region = testenv.Region

// Config configures a Pipeline. Only Credentials is required.
type Config struct {
	// Root is the repository root (template.yaml, functions/); default: found
	// from the working directory upwards.
	Root string
	// MotoEndpoint is a running moto_server to use (tests share one per
	// test); empty: Start starts one and Close stops it.
	MotoEndpoint string
	// Binaries are prebuilt bootstraps by function name; the missing ones are
	// built into BinDir (default: a temporary directory removed by Close).
	Binaries map[string]string
	BinDir   string
	// Trimpath builds with -trimpath, exactly as make build (slower on a
	// cold build cache; see BuildFunctions).
	Trimpath bool
	// StackName is the CloudFormation stack (default "cfsync-local"); several
	// pipelines can share one moto_server with different stack names.
	StackName string
	// Params are template parameter values (Subscriptions, RdpBaseUrl,
	// DestPrefix, LogLevel, TokenSlots, …; StackParams gives the two every
	// run needs); the rest keep their defaults.
	Params map[string]string
	// Credentials is the JSON written into the stack's credentials secret
	// (docs/configuration.md#the-credentials-secret-rdp_credentials_secret_id: v1, v2 or pre-issued refresh token).
	Credentials string
	// CommonEnv holds extra KEY=value entries for every function, applied
	// after the environment template.yaml gives it.
	CommonEnv []string
	// Env holds extra KEY=value entries per function name, applied after
	// CommonEnv; a key that is not a function name is an error.
	Env map[string][]string
	// Timeouts override the template's function timeouts, by function name.
	Timeouts map[string]time.Duration
	// RefreshEvery, PollEvery and ReadEvery are the schedules of the
	// refresher, the poller and the notification-reader (the template's
	// rate(1 minute), rate(15 minutes) and rate(1 minute), possibly
	// compressed); zero: not scheduled (invoke them with Invoke).
	RefreshEvery, PollEvery, ReadEvery time.Duration
	// NoEventSource leaves the download queue alone (tests drive it).
	NoEventSource bool
	// StartPaused starts the schedules and the event source paused (their
	// Resume starts them), so a test can order the first invocations.
	StartPaused bool
	// DownloaderConcurrency (default: the template's ScalingConfig
	// MaximumConcurrency) and BatchSize (default: the template's BatchSize)
	// shape the SQS event source.
	DownloaderConcurrency, BatchSize int
	// VisibilityTimeout, when positive, is requested with every receive, so a
	// failed message is redelivered after it rather than after the queue's
	// 30 minutes. Keep it above the downloader's timeout.
	VisibilityTimeout time.Duration
	// LogWriter, when set, returns the writer that receives a function's log
	// lines (nil: kept in memory only, see Logs).
	LogWriter func(function string) io.Writer
	// OnInvoke, when set, is called after every scheduled invocation and every
	// downloader batch (res.Err set for a failed invocation).
	OnInvoke func(function string, res lambdarun.Result, err error)
	// Prepare, when set, runs after the stack is deployed and its credentials
	// secret written, before the functions start: it may write the stack's
	// other secrets and add to Env (e.g. the notification subscription, the
	// reader's queue endpoint). An error stops Start.
	Prepare func(ctx context.Context, p *Pipeline) error
}

// Resources are the stack's resources the pipeline and its users need.
type Resources struct {
	Bucket, Prefix             string
	QueueURL, QueueARN         string
	DLQURL                     string
	StateTable                 string
	CredentialsSecret          string
	NotifySubscriptionSecret   string // with Notifications=true
	TokenSecretIDs             []string
	FunctionNames              map[string]string // physical names by function
	EventSourceMappingDisabled []string          // moto's own ESM uuids, disabled (see Start)
}

// Pipeline is a running local pipeline.
type Pipeline struct {
	Config   Config
	Endpoint string              // moto_server
	Moto     *testenv.MotoServer // nil when Config.MotoEndpoint was given
	Stack    *samtemplate.MotoStack
	Res      Resources
	AWS      aws.Config
	S3       *s3.Client
	SQS      *sqs.Client
	DynamoDB *dynamodb.Client
	Secrets  *secretsmanager.Client
	State    *state.Table
	Binaries map[string]string

	Refresher  *lambdarun.Runner
	Poller     *lambdarun.Runner
	Reader     *lambdarun.Runner // nil unless deployed (Deployed)
	Downloader *lambdarun.Pool

	RefreshSchedule *Schedule // nil when not scheduled
	PollSchedule    *Schedule
	ReadSchedule    *Schedule
	Events          *EventSource // nil with NoEventSource

	Started time.Time // when the functions were up

	cancel    context.CancelFunc // ends the functions
	stopLoops context.CancelFunc // ends the schedules and the event source
	loops     sync.WaitGroup
	tmpDir    string
	closeMu   sync.Once
}

// Start brings the pipeline up: moto_server (unless given), the function
// builds, the stack from template.yaml, the credentials secret,
// Config.Prepare, the functions, and (per Config) the schedules and the SQS
// event source. ctx bounds only the start-up; Close stops everything.
func Start(ctx context.Context, cfg Config) (p *Pipeline, err error) {
	if strings.TrimSpace(cfg.Credentials) == "" {
		return nil, errors.New("start pipeline: Config.Credentials is required")
	}
	if err := checkEnvKeys(cfg.Env); err != nil {
		return nil, fmt.Errorf("start pipeline: %w", err)
	}
	if cfg.Root == "" {
		if cfg.Root, err = repo.Root(); err != nil {
			return nil, fmt.Errorf("start pipeline: %w", err)
		}
	}
	if cfg.StackName == "" {
		cfg.StackName = "cfsync-local"
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p = &Pipeline{Config: cfg, cancel: cancel, Binaries: map[string]string{}}
	defer func() {
		if err != nil {
			p.Close()
			p = nil
		}
	}()

	if cfg.MotoEndpoint != "" {
		p.Endpoint = cfg.MotoEndpoint
	} else {
		if p.Moto, err = testenv.StartMoto(ctx, cfg.Root); err != nil {
			return p, fmt.Errorf("start pipeline: %w", err)
		}
		p.Endpoint = p.Moto.Endpoint
	}
	p.AWS = AWSConfig(p.Endpoint)
	p.S3 = s3.NewFromConfig(p.AWS, func(o *s3.Options) { o.UsePathStyle = true })
	p.SQS = sqs.NewFromConfig(p.AWS)
	p.DynamoDB = dynamodb.NewFromConfig(p.AWS)
	p.Secrets = secretsmanager.NewFromConfig(p.AWS)

	if err = p.buildAndDeploy(ctx); err != nil {
		return p, fmt.Errorf("start pipeline: %w", err)
	}

	if _, err = p.Secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(p.Res.CredentialsSecret), SecretString: aws.String(cfg.Credentials),
	}); err != nil {
		return p, fmt.Errorf("start pipeline: write the credentials secret: %w", err)
	}
	if cfg.Prepare != nil {
		if err = cfg.Prepare(ctx, p); err != nil {
			return p, fmt.Errorf("start pipeline: prepare: %w", err)
		}
	}

	if err = p.startFunctions(ctx, runCtx); err != nil {
		return p, fmt.Errorf("start pipeline: %w", err)
	}
	p.Started = time.Now()
	loopCtx, stopLoops := context.WithCancel(runCtx)
	p.stopLoops = stopLoops
	p.startLoops(loopCtx)
	return p, nil
}

// buildAndDeploy builds the functions not given in Config.Binaries and, at
// the same time, deploys template.yaml into moto and adopts its resources.
func (p *Pipeline) buildAndDeploy(ctx context.Context) error {
	var toBuild []string
	for _, f := range p.Deployed() {
		if b := p.Config.Binaries[f]; b != "" {
			p.Binaries[f] = b
		} else {
			toBuild = append(toBuild, f)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if len(toBuild) > 0 {
		g.Go(func() error {
			dir := p.Config.BinDir
			if dir == "" {
				tmp, err := os.MkdirTemp("", "cfsync-bin-")
				if err != nil {
					return fmt.Errorf("build functions: %w", err)
				}
				p.tmpDir, dir = tmp, tmp
			}
			bins, err := BuildFunctions(gctx, p.Config.Root, dir, p.Config.Trimpath, toBuild...)
			if err != nil {
				return err
			}
			maps.Copy(p.Binaries, bins)
			return nil
		})
	}
	g.Go(func() error {
		st, err := samtemplate.Deploy(gctx, samtemplate.MotoOptions{
			Endpoint: p.Endpoint, StackName: p.Config.StackName, Region: Region, Params: p.Config.Params,
			TemplatePath: p.Config.Root + "/" + samtemplate.FileName,
		})
		if err != nil {
			return err
		}
		p.Stack = st
		return p.adopt(gctx)
	})
	return g.Wait()
}

// AWSConfig is an SDK configuration for the moto_server at endpoint with
// dummy credentials (testenv.AWSConfig), retrying up to 5 attempts.
func AWSConfig(endpoint string) aws.Config {
	cfg := testenv.AWSConfig(endpoint, Region)
	cfg.RetryMaxAttempts = 5
	return cfg
}

// adopt reads the deployed stack: resources, function names, and
// the downloader's event source mapping, which it disables: moto "invokes"
// an enabled mapping's function on every SendMessage (it cannot run it),
// receiving the queue's messages and putting them back, which inflates
// their ApproximateReceiveCount and sends them to the DLQ early. The
// pipeline is the event source instead, with the mapping's BatchSize and
// MaximumConcurrency.
func (p *Pipeline) adopt(ctx context.Context) error {
	out := p.Stack.Outputs
	need := func(k string) (string, error) {
		v := out[k]
		if v == "" {
			return "", fmt.Errorf("stack %s has no output %s", p.Stack.StackName, k)
		}
		return v, nil
	}
	var err error
	r := Resources{Prefix: out["DestPrefix"], FunctionNames: map[string]string{}}
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&r.Bucket, "DestBucketName"}, {&r.QueueURL, "DownloadQueueUrl"}, {&r.QueueARN, "DownloadQueueArn"},
		{&r.DLQURL, "DeadLetterQueueUrl"}, {&r.StateTable, "StateTableName"}, {&r.CredentialsSecret, "CredentialsSecretArn"},
	} {
		if *f.dst, err = need(f.key); err != nil {
			return err
		}
	}
	ids, err := need("TokenSecretIds")
	if err != nil {
		return err
	}
	r.TokenSecretIDs = strings.Split(ids, ",")
	r.NotifySubscriptionSecret = out["NotificationSubscriptionSecretArn"]
	api := lambda.NewFromConfig(p.AWS)
	for _, f := range p.Deployed() {
		mf, ok := p.Stack.Functions[logicalIDs[f]]
		if !ok {
			return fmt.Errorf("stack %s has no function %s", p.Stack.StackName, logicalIDs[f])
		}
		r.FunctionNames[f] = mf.Name
	}
	esms, err := queueMappings(ctx, api, r.FunctionNames[Downloader], r.QueueARN)
	if err != nil {
		return err
	}
	for _, m := range esms {
		if p.Config.BatchSize == 0 && aws.ToInt32(m.BatchSize) > 0 {
			p.Config.BatchSize = int(aws.ToInt32(m.BatchSize))
		}
		if sc := m.ScalingConfig; p.Config.DownloaderConcurrency == 0 && sc != nil && aws.ToInt32(sc.MaximumConcurrency) > 0 {
			p.Config.DownloaderConcurrency = int(aws.ToInt32(sc.MaximumConcurrency))
		}
		if err := disableMapping(ctx, api, aws.ToString(m.UUID)); err != nil {
			return err
		}
		r.EventSourceMappingDisabled = append(r.EventSourceMappingDisabled, aws.ToString(m.UUID))
	}
	if len(r.EventSourceMappingDisabled) == 0 {
		return fmt.Errorf("stack %s: no event source mapping from the download queue to the downloader", p.Stack.StackName)
	}
	p.Res = r
	p.State = state.New(p.DynamoDB, r.StateTable)
	return nil
}

// checkEnvKeys makes sure every key of Config.Env names a function: an
// entry under another key (say "" meant for every function) would reach no
// function, silently.
func checkEnvKeys(env map[string][]string) error {
	for k := range env {
		if _, ok := logicalIDs[k]; !ok {
			return fmt.Errorf("Config.Env: %q is not a function (want one of %v; CommonEnv is for every function)", k, slices.Sorted(maps.Keys(logicalIDs)))
		}
	}
	return nil
}

// FunctionEnv is the environment a function's bootstrap gets: the variables
// template.yaml gives it (as deployed), moto's endpoint and dummy
// credentials, then Config.Env.
func (p *Pipeline) FunctionEnv(name string) []string {
	tmpl := p.Stack.Functions[logicalIDs[name]].Env
	var env []string
	for _, k := range slices.Sorted(maps.Keys(tmpl)) {
		env = append(env, k+"="+tmpl[k])
	}
	env = append(env, testenv.AWSEnv(p.Endpoint, Region)...)
	env = append(env, p.Config.CommonEnv...)
	return append(env, p.Config.Env[name]...)
}

// FunctionOptions are the lambdarun options of a function as the pipeline
// starts it.
func (p *Pipeline) FunctionOptions(name string) lambdarun.Options {
	fc := p.Stack.Functions[logicalIDs[name]]
	timeout := time.Duration(fc.Timeout) * time.Second
	if d := p.Config.Timeouts[name]; d > 0 {
		timeout = d
	}
	opts := lambdarun.Options{
		Name: p.Res.FunctionNames[name], Binary: p.Binaries[name], Env: p.FunctionEnv(name),
		Timeout: timeout, MemoryMB: fc.MemorySize,
	}
	if p.Config.LogWriter != nil {
		opts.LogWriter = p.Config.LogWriter(name)
	}
	return opts
}

// Deployed lists the functions of the pipeline's stack (see Deployed).
func (p *Pipeline) Deployed() []string { return Deployed(p.Config.Params) }

// runnerFields are the pipeline's fields of the functions that run as one
// process each (the downloader is a pool), by function name: the one list
// of them.
func (p *Pipeline) runnerFields() map[string]**lambdarun.Runner {
	return map[string]**lambdarun.Runner{Refresher: &p.Refresher, Poller: &p.Poller, Reader: &p.Reader}
}

// singleRunners are the running functions of runnerFields.
func (p *Pipeline) singleRunners() []*lambdarun.Runner {
	var rs []*lambdarun.Runner
	for _, f := range p.runnerFields() {
		if *f != nil {
			rs = append(rs, *f)
		}
	}
	return rs
}

func (p *Pipeline) startFunctions(ctx, runCtx context.Context) error {
	if p.Config.DownloaderConcurrency <= 0 {
		p.Config.DownloaderConcurrency = 2
	}
	g, _ := errgroup.WithContext(ctx)
	fields := p.runnerFields()
	for _, f := range p.Deployed() {
		if f == Downloader {
			g.Go(func() (err error) {
				p.Downloader, err = lambdarun.StartPool(runCtx, p.FunctionOptions(Downloader), p.Config.DownloaderConcurrency)
				return err
			})
			continue
		}
		g.Go(func() (err error) {
			*fields[f], err = lambdarun.Start(runCtx, p.FunctionOptions(f))
			return err
		})
	}
	return g.Wait()
}

func (p *Pipeline) startLoops(ctx context.Context) {
	on := p.Config.OnInvoke
	if p.Config.RefreshEvery > 0 {
		p.RefreshSchedule = &Schedule{Name: Refresher, Every: p.Config.RefreshEvery, Function: p.Refresher, OnResult: on}
	}
	if p.Config.PollEvery > 0 {
		p.PollSchedule = &Schedule{Name: Poller, Every: p.Config.PollEvery, Function: p.Poller, OnResult: on, After: p.RefreshSchedule}
	}
	if p.Config.ReadEvery > 0 && p.Reader != nil {
		p.ReadSchedule = &Schedule{Name: Reader, Every: p.Config.ReadEvery, Function: p.Reader, OnResult: on, After: p.RefreshSchedule}
	}
	if !p.Config.NoEventSource {
		p.Events = p.NewEventSource()
	}
	schedules := []*Schedule{p.RefreshSchedule, p.PollSchedule, p.ReadSchedule}
	if p.Config.StartPaused {
		for _, s := range schedules {
			if s != nil {
				s.Pause()
			}
		}
		if p.Events != nil {
			p.Events.Pause()
		}
	}
	for _, s := range schedules {
		if s != nil {
			p.loops.Go(func() { s.Run(ctx) })
		}
	}
	if p.Events != nil {
		p.loops.Go(func() { _ = p.Events.Run(ctx) })
	}
}

// NewEventSource returns an event source for the download queue and the
// downloader pool, configured as the pipeline's (not started).
func (p *Pipeline) NewEventSource() *EventSource {
	es := &EventSource{
		SQS: p.SQS, QueueURL: p.Res.QueueURL, QueueARN: p.Res.QueueARN, Region: Region,
		Function: p.Downloader, BatchSize: p.Config.BatchSize, Concurrency: p.Config.DownloaderConcurrency,
		VisibilityTimeout: p.Config.VisibilityTimeout,
	}
	if on := p.Config.OnInvoke; on != nil {
		es.OnBatch = func(b BatchReport) {
			res := lambdarun.Result{Err: b.FuncErr, Duration: b.Duration}
			on(Downloader, res, b.Err)
		}
	}
	return es
}

// Invoke invokes a function once with payload (the schedules keep running).
func (p *Pipeline) Invoke(ctx context.Context, function string, payload []byte) (lambdarun.Result, error) {
	f, err := p.running(function)
	if err != nil {
		return lambdarun.Result{}, fmt.Errorf("invoke: %w", err)
	}
	return f.Invoke(ctx, payload)
}

// runningFunction is a started function: a *lambdarun.Runner or, for the
// downloader, a *lambdarun.Pool.
type runningFunction interface {
	Invoker
	Logs() []string
}

var (
	_ runningFunction = (*lambdarun.Runner)(nil)
	_ runningFunction = (*lambdarun.Pool)(nil)
)

func (p *Pipeline) running(function string) (runningFunction, error) {
	if function == Downloader && p.Downloader != nil {
		return p.Downloader, nil
	}
	if f, ok := p.runnerFields()[function]; ok && *f != nil {
		return *f, nil
	}
	return nil, fmt.Errorf("function %q is not running (want one of %v)", function, p.Deployed())
}

// Logs returns every log line a function has written so far (none for a
// function that is not running).
func (p *Pipeline) Logs(function string) []string {
	f, err := p.running(function)
	if err != nil {
		return nil
	}
	return f.Logs()
}

// PIDs returns the process ids of the functions' running bootstraps and of
// moto_server when the pipeline started it.
func (p *Pipeline) PIDs() []int {
	var pids []int
	for _, r := range p.runners() {
		if pid := r.PID(); pid > 0 {
			pids = append(pids, pid)
		}
	}
	if p.Moto != nil {
		pids = append(pids, p.Moto.PID)
	}
	return pids
}

func (p *Pipeline) runners() []*lambdarun.Runner {
	rs := p.singleRunners()
	if p.Downloader != nil {
		rs = append(rs, p.Downloader.Runners()...)
	}
	return rs
}

// StopLoops stops the schedules and the event source and waits for the
// invocations they started (an invocation in progress is cut short and its
// messages return to the queue). The functions and moto stay up: Invoke,
// Progress and Verify still work. Close calls it.
func (p *Pipeline) StopLoops() {
	if p.stopLoops != nil {
		p.stopLoops()
	}
	p.loops.Wait()
}

// Close stops the loops, the functions (their processes are killed and
// reaped) and moto_server if the pipeline started it. It is idempotent.
func (p *Pipeline) Close() {
	p.closeMu.Do(func() {
		p.StopLoops()
		p.cancel()
		for _, r := range p.singleRunners() {
			r.Close()
		}
		if p.Downloader != nil {
			p.Downloader.Close()
		}
		if p.Moto != nil {
			p.Moto.Stop()
		}
		if p.tmpDir != "" {
			_ = os.RemoveAll(p.tmpDir)
		}
	})
}

// StackParams are the template parameters every run sets: the RDP base URL
// and the subscriptions ("bucket/packageId" entries).
func StackParams(baseURL string, subs ...string) map[string]string {
	return map[string]string{"RdpBaseUrl": baseURL, "Subscriptions": strings.Join(subs, ",")}
}
