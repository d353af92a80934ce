package lambdamain

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cfsync/cfsync/internal/config"
)

type testConfig struct {
	config.Common
	config.Reader
}

func setEnv(t *testing.T, base string) {
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("TOKEN_SECRET_IDS", "slot-a,slot-b")
	t.Setenv("STATE_TABLE", "cfsync-state")
	t.Setenv("LOG_LEVEL", "debug")
	t.Setenv("RDP_BASE_URL", base)
}

func TestSetupWiresTheSharedClients(t *testing.T) {
	setEnv(t, "https://rdp.example")
	var cfg testConfig
	tuned := false
	env, err := Setup(context.Background(), "fn", &cfg, func(c *aws.Config) { tuned = c.Region == "eu-west-1" })
	if err != nil {
		t.Fatal(err)
	}
	if !tuned {
		t.Error("tune not applied to the loaded AWS config")
	}
	if env.Table == nil || env.Table.Name != "cfsync-state" || env.Secrets == nil || env.Log == nil || env.Metrics == nil {
		t.Errorf("env not wired: %+v", env)
	}
	if len(cfg.TokenSecretIDs) != 2 || env.Common.StateTable != "cfsync-state" {
		t.Errorf("config not loaded: %+v", cfg)
	}
	if _, err := env.TokenRDPClient(cfg.Reader); err != nil {
		t.Errorf("TokenRDPClient: %v", err)
	}
}

func TestSetupNamesTheBadField(t *testing.T) {
	setEnv(t, "https://rdp.example")
	t.Setenv("STATE_TABLE", "")
	var cfg testConfig
	_, err := Setup(context.Background(), "fn", &cfg)
	if err == nil || !strings.Contains(err.Error(), "STATE_TABLE") {
		t.Errorf("err = %v, want one naming STATE_TABLE", err)
	}
	setEnv(t, "https://rdp.example")
	t.Setenv("LOG_LEVEL", "loud")
	if _, err := Setup(context.Background(), "fn", &cfg); err == nil {
		t.Error("bad LOG_LEVEL accepted")
	}
}

func TestRDPClientNamesABadBaseURL(t *testing.T) {
	setEnv(t, "://not a url")
	var cfg testConfig
	env, err := Setup(context.Background(), "fn", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.RDPClient(); err == nil || !strings.Contains(err.Error(), "RDP_BASE_URL") {
		t.Errorf("err = %v, want one naming RDP_BASE_URL", err)
	}
}

type fakeHandler struct {
	env *Env
	cfg *testConfig
}

func (fakeHandler) Invoke(context.Context, []byte) ([]byte, error) { return nil, nil }

func TestNewHandlerBuildsFromTheLoadedConfig(t *testing.T) {
	setEnv(t, "https://rdp.example")
	h, err := NewHandler(context.Background(), "fn", func(env *Env, cfg *testConfig) (fakeHandler, error) {
		return fakeHandler{env, cfg}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.cfg.StateTable != "cfsync-state" || h.env.Table.Name != "cfsync-state" || h.env.Function != "fn" {
		t.Errorf("build got cfg %+v, env %+v", h.cfg, h.env)
	}
	t.Setenv("TOKEN_SECRET_IDS", "")
	built := false
	_, err = NewHandler(context.Background(), "fn", func(*Env, *testConfig) (fakeHandler, error) {
		built = true
		return fakeHandler{}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "TOKEN_SECRET_IDS") || built {
		t.Errorf("err = %v, built = %v; want an error naming TOKEN_SECRET_IDS before build", err, built)
	}
}

// TestStackWideMetricsCarryTheStateTable: Setup gives the recorder the
// stack's state table, so FilesFailed (poller and downloader) is one
// CloudWatch metric with the dimension StateTable, as FilesFailedAlarm reads it.
func TestStackWideMetricsCarryTheStateTable(t *testing.T) {
	setEnv(t, "https://rdp.example")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	var cfg testConfig
	env, err := Setup(context.Background(), "fn", &cfg)
	os.Stdout = stdout
	if err != nil {
		t.Fatal(err)
	}
	env.Metrics.Add("FilesFailed", 1)
	if err := env.Metrics.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	out, _ := io.ReadAll(r)
	if !strings.Contains(string(out), `"StateTable":"cfsync-state"`) || !strings.Contains(string(out), `"Dimensions":[["StateTable"]]`) {
		t.Errorf("FilesFailed not published by the stack's state table: %s", out)
	}
}
