package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/internal/tokenring"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
)

// TestNeverLogsSecrets captures everything the handler writes (debug logs,
// EMF metrics), returns (results, errors) and stores in the state table over
// runs that take every path, and asserts that no password, client_id,
// client secret or token appears in any of it (docs/design.md#invariants).
func TestNeverLogsSecrets(t *testing.T) {
	const (
		user, password, appKey = "machine-user-x", "Pa55-word-7f3a9", "appkey-5e1d0c2b9a"
		saID, saSecret         = "svc-4b7c1e", "client-secret-91ab"
		portalRT               = "portal-refresh-token-6d2f"
	)
	clk := rdptest.NewClock(t0)
	sim := rdptest.NewServer(rdptest.Options{Now: clk.Now, PasswordGrantLimit: 2})
	defer sim.Close()
	sim.AddUser(user, password, appKey)
	sim.AddServiceAccount(saID, saSecret)

	var out bytes.Buffer
	ids := []string{"ring-0", "ring-1", "ring-2"}
	h, sm, table := newSimHandler(t, clk, sim, ids, &out, func(o *Options) { o.MinWriteInterval = time.Minute })
	setCreds := func(s string) { sm.Create(credsSecretID, &s) }
	var returned []string
	run := func(evt string) {
		res, err := h.Handle(context.Background(), json.RawMessage(evt))
		b, _ := json.Marshal(res)
		returned = append(returned, string(b))
		if err != nil {
			returned = append(returned, err.Error(), fmt.Sprintf("%+v %#v", err, err))
		}
		clk.Advance(2 * time.Minute)
	}
	v1 := fmt.Sprintf(`{"username":%q,"password":%q,"client_id":%q}`, user, password, appKey)

	setCreds(v1)
	run(`{}`)                                // password grant
	run(`{"action":"refresh","force":true}`) // refresh grant
	sim.RevokeSessions(user)                 // refresh token dies
	run(`{"force":true}`)                    // invalid_grant, then password grant
	run(`{"action":"revoke"}`)               // revoke
	run(`{}`)                                // held
	run(`{"action":"refresh","force":true}`) // sign on again
	setCreds(strings.Replace(v1, password, password+"-wrong", 1))
	clk.Advance(time.Hour)
	run(`{"force":true}`) // wrong password
	run(`{"force":true}`) // wrong password again (force skips the failure backoff)
	run(`{"force":true}`) // third password grant within 5 minutes: 429 (PasswordGrantLimit 2)
	setCreds(fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	clk.Advance(time.Hour)
	run(`{"force":true}`) // missing client_id
	setCreds(fmt.Sprintf(`{"username":%q,"password":%q,"client_id":%q,`, user, password, appKey))
	run(`{"force":true}`) // not JSON
	setCreds(fmt.Sprintf(`{"client_id":%q,"client_secret":%q}`, saID, saSecret+"x"))
	clk.Advance(time.Hour)
	run(`{"force":true}`) // v2 secret wrong
	setCreds(fmt.Sprintf(`{"client_id":%q,"client_secret":%q}`, saID, saSecret))
	clk.Advance(time.Hour)
	run(`{"force":true}`) // v2 ok
	setCreds(fmt.Sprintf(`{"client_id":%q,"refresh_token":%q}`, appKey, portalRT))
	clk.Advance(time.Hour)
	run(`{"force":true}`) // pre-issued token unknown to the simulator: invalid_grant

	secrets := []string{user, password, appKey, saID, saSecret, portalRT}
	for _, w := range sm.Writes() {
		s, err := tokenring.ParseSlot(w.Value)
		if err != nil {
			continue
		}
		secrets = append(secrets, s.AccessToken)
		if s.RefreshToken != "" {
			secrets = append(secrets, s.RefreshToken)
		}
	}
	if len(secrets) < 12 {
		t.Fatalf("only %d secrets collected: the scenario did not issue enough tokens", len(secrets))
	}
	stateDump := table.dump()
	haystacks := map[string]string{"output": out.String(), "results and errors": strings.Join(returned, "\n"), "state table": stateDump}
	for where, hay := range haystacks {
		for _, s := range secrets {
			if strings.Contains(hay, s) {
				t.Errorf("%s contains a secret (%q...)", where, s[:4])
			}
		}
	}
	// The scenario really went through the failure paths.
	for _, want := range []string{"invalid_grant", "429", `field \"client_id\" is missing`, "invalid JSON at byte", "invalid_client", "session revoked"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q: the scenario missed a path", want)
		}
	}
	if c := sim.Counters(); c.Revokes != 1 || c.ClientCredentialsGrants != 2 {
		t.Errorf("counters = %+v", c)
	}
}
