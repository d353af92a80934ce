package testenv

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// FunctionTable is the state table a [Function] creates.
const FunctionTable = "cfsync-state"

// Function is what an in-process integration test of a cfsync function runs
// against: moto (see [MotoAWS]) with the state table, the RDP simulator, and
// a token of generation 1 for the simulator's default user in the first of
// the ring's Slots (the token-refresher's job, done by hand).
type Function struct {
	*AWS
	Sim   *rdptest.Server
	Table *state.Table
	Slots []string
	Token string
}

// NewFunction starts moto and the simulator (with opts) and seeds the ring
// of slots (their secrets created, the token in the first).
func NewFunction(t testing.TB, opts rdptest.Options, slots ...string) *Function {
	t.Helper()
	aw := MotoAWS(t)
	StateTable(t, aw.DB, FunctionTable)
	f := &Function{AWS: aw, Sim: rdptest.New(t, opts), Table: state.New(aw.DB, FunctionTable), Slots: slots}
	f.Token, _ = f.Sim.IssueTokens(rdptest.DefaultUser, rdptest.DefaultAppKey)
	aw.SeedRing(t, slots, f.Token, f.Sim.Options().AccessTokenTTL)
	return f
}

// NewQueue creates the SQS queue name and returns its URL.
func (f *Function) NewQueue(t testing.TB, name string) string {
	t.Helper()
	out, err := f.SQS.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// RDPClient is a real RDP client of baseURL ("": the simulator) whose API
// requests carry the ring's token through the real ring reader, as the
// functions' clients do; opts come after (e.g. a quick retry policy).
func (f *Function) RDPClient(t testing.TB, baseURL string, opts ...rdp.Option) *rdp.Client {
	t.Helper()
	if baseURL == "" {
		baseURL = f.Sim.URL()
	}
	reader := tokenring.NewReader(f.SM, f.Table, f.Slots, tokenring.ReaderOptions{})
	client, err := rdp.NewClient(append([]rdp.Option{rdp.WithBaseURL(baseURL), rdp.WithHTTPClient(reader.HTTPClient(nil))}, opts...)...)
	if err != nil {
		t.Fatalf("rdp client: %v", err)
	}
	return client
}
