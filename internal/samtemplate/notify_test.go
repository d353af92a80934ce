package samtemplate

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cfsync/cfsync/internal/testenv"
)

// With Notifications=true the stack gains the notification-reader, its two
// secrets and alarms, and the refresher is told the secrets; with the
// default (false) none of it exists (TestDeployToMoto) and the refresher's
// NOTIFY_* variables are empty.
func TestDeployNotificationsOn(t *testing.T) {
	moto := testenv.Moto(t)
	st, err := Deploy(context.Background(), MotoOptions{Endpoint: moto.Endpoint, StackName: "cfsync-notify", Params: map[string]string{"Notifications": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	reader, ok := st.Functions[NotificationReader]
	if !ok {
		t.Fatal("notification-reader not deployed")
	}
	want := []string{"DOWNLOAD_QUEUE_URL", "LOG_LEVEL", "NOTIFY_CREDENTIALS_SECRET_ID", "NOTIFY_SUBSCRIPTION_SECRET_ID", "RDP_BASE_URL", "STATE_TABLE", "TOKEN_SECRET_IDS"}
	if got := SortedKeys(reader.Env); !slices.Equal(got, want) {
		t.Errorf("reader env %v, want %v", got, want)
	}
	ref := st.Functions[TokenRefresher].Env
	if ref["NOTIFY_SUBSCRIPTION_SECRET_ID"] != reader.Env["NOTIFY_SUBSCRIPTION_SECRET_ID"] ||
		ref["NOTIFY_CREDENTIALS_SECRET_ID"] != reader.Env["NOTIFY_CREDENTIALS_SECRET_ID"] ||
		!strings.Contains(ref["NOTIFY_CREDENTIALS_SECRET_ID"], "NotificationCredentialsSecret") {
		t.Errorf("refresher and reader disagree on the secrets: %v / %v", ref, reader.Env)
	}
	if st.Outputs["NotificationSubscriptionSecretArn"] != ref["NOTIFY_SUBSCRIPTION_SECRET_ID"] {
		t.Errorf("output NotificationSubscriptionSecretArn = %q", st.Outputs["NotificationSubscriptionSecretArn"])
	}
}
