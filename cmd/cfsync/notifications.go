package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cfsync/cfsync/internal/notify"
	"github.com/cfsync/cfsync/pkg/rdp"
)

func notificationsCommand() *command {
	return &command{
		name:    "notifications",
		args:    "subscribe|list|delete [--subscriptions ENTRY] [--secret ID] [flags]",
		summary: "Manage the CFS file-store notification subscription of the stack's SUBSCRIPTIONS entry.",
		details: `subscribe makes (or finds: it is idempotent) the subscription of READY file-sets for the
entry (bucket/packageId or bucket/*, one entry: a stack reads one subscription) and, with
--secret (default $NOTIFY_SUBSCRIPTION_SECRET_ID, the stack's NotificationSubscriptionSecretArn
output), stores its id, queue URL and cryptography key there. The key is printed nowhere.
list shows the account's subscriptions; delete removes the entry's (or --id's).`,
		examples: []string{
			"SUBSCRIPTIONS=bulk-ESG/4e94-… cfsync notifications subscribe --token-ring --secret arn:aws:secretsmanager:…",
			"cfsync notifications list --token-ring",
			"cfsync notifications delete --subscriptions bulk-ESG/4e94-… --token-ring",
		},
		rdp: true, json: true,
		setup: func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
			subs := a.envString(fs, "subscriptions", "SUBSCRIPTIONS", "the stack's `ENTRY` bucket/packageId or bucket/*")
			secret := a.envString(fs, "secret", "NOTIFY_SUBSCRIPTION_SECRET_ID", "subscribe: secret `ID` to store the subscription in")
			id := fs.String("id", "", "delete: the subscription `ID` to remove")
			return func(ctx context.Context, args []string) error {
				if len(args) != 1 || (args[0] != "subscribe" && args[0] != "list" && args[0] != "delete") {
					return usagef("want one subcommand: subscribe, list or delete")
				}
				n := &notesCmd{a: a, asJSON: a.json}
				var bucket, pkg string
				if args[0] == "subscribe" || (args[0] == "delete" && *id == "") {
					var err error
					if bucket, pkg, err = oneEntry(subs.value()); err != nil {
						return err
					}
				}
				return a.withSession(ctx, &a.rdp, func(s *rdpSession) error {
					n.c = s.client
					switch args[0] {
					case "subscribe":
						return n.subscribe(ctx, bucket, pkg, secret.value())
					case "list":
						return n.list(ctx)
					}
					return n.delete(ctx, bucket, pkg, *id)
				})
			}
		},
	}
}

// oneEntry parses the single SUBSCRIPTIONS entry a stack subscribes.
func oneEntry(list string) (bucket, pkg string, err error) {
	entries := splitList(list)
	if len(entries) != 1 {
		return "", "", usagef("want exactly one SUBSCRIPTIONS entry (bucket/packageId or bucket/*) for notifications, got %d", len(entries))
	}
	bucket, pkg, ok := strings.Cut(entries[0], "/")
	if !ok || bucket == "" || pkg == "" || strings.Contains(pkg, "/") {
		return "", "", usagef("subscription %q: want bucket/packageId or bucket/*", entries[0])
	}
	return bucket, pkg, nil
}

type notesCmd struct {
	a      *app
	c      *rdp.Client
	asJSON bool
}

type subscriptionRow struct {
	ID       string `json:"subscriptionID"`
	Bucket   string `json:"bucket"`
	Package  string `json:"packageId"`
	Endpoint string `json:"endpoint"`
	Action   string `json:"action,omitempty"`
}

func rowOf(s rdp.Subscription, action string) subscriptionRow {
	b, p, ok := s.Target()
	if !ok {
		b, p = "(other filter)", ""
	}
	return subscriptionRow{ID: s.ID, Bucket: b, Package: p, Endpoint: s.Endpoint, Action: action}
}

func (n *notesCmd) print(rows []subscriptionRow) error {
	return printList(n.a.stdout, n.asJSON, rows, []string{"SUBSCRIPTION", "BUCKET", "PACKAGE", "QUEUE", "ACTION"}, func(r subscriptionRow) []string {
		return []string{r.ID, r.Bucket, r.Package, r.Endpoint, r.Action}
	})
}

// matching returns the subscriptions filtering on bucket/pkg.
func (n *notesCmd) matching(ctx context.Context, bucket, pkg string) ([]rdp.Subscription, error) {
	all, err := n.c.Subscriptions(ctx)
	if err != nil {
		return nil, err
	}
	var out []rdp.Subscription
	for _, s := range all {
		if b, p, ok := s.Target(); ok && strings.EqualFold(b, bucket) && p == pkg {
			out = append(out, s)
		}
	}
	return out, nil
}

func (n *notesCmd) subscribe(ctx context.Context, bucket, pkg, secretID string) error {
	found, err := n.matching(ctx, bucket, pkg)
	if err != nil {
		return err
	}
	var sub rdp.Subscription
	action := "exists"
	if len(found) > 0 {
		sub = found[0]
	} else {
		created, err := n.c.Subscribe(ctx, rdp.ReadyQuery(bucket, pkg))
		if err != nil {
			return err
		}
		sub, action = *created, "created"
	}
	if secretID != "" {
		stored, err := n.store(ctx, secretID, sub)
		if err != nil {
			return err
		}
		action += ", " + stored
	}
	return n.print([]subscriptionRow{rowOf(sub, action)})
}

// store writes the subscription into its secret unless it already holds it.
func (n *notesCmd) store(ctx context.Context, secretID string, sub rdp.Subscription) (string, error) {
	cfg, err := n.a.aws(ctx)
	if err != nil {
		return "", err
	}
	sm := secretsmanager.NewFromConfig(cfg)
	if out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)}); err == nil {
		if cur, _, err := notify.ParseSubscription(aws.ToString(out.SecretString)); err == nil &&
			cur.SubscriptionID == sub.ID && cur.Endpoint == sub.Endpoint && cur.CryptographyKey == sub.CryptographyKey {
			return "secret already up to date", nil
		}
	}
	b, err := json.Marshal(notify.Subscription{SubscriptionID: sub.ID, Endpoint: sub.Endpoint, CryptographyKey: sub.CryptographyKey})
	if err != nil {
		return "", err
	}
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(secretID), SecretString: aws.String(string(b))}); err != nil {
		return "", fmt.Errorf("store the subscription in secret %s: %w", secretID, err)
	}
	return "secret written", nil
}

func (n *notesCmd) list(ctx context.Context) error {
	all, err := n.c.Subscriptions(ctx)
	if err != nil {
		return err
	}
	rows := []subscriptionRow{}
	for _, s := range all {
		rows = append(rows, rowOf(s, ""))
	}
	return n.print(rows)
}

func (n *notesCmd) delete(ctx context.Context, bucket, pkg, id string) error {
	var targets []rdp.Subscription
	if id != "" {
		targets = []rdp.Subscription{{ID: id}}
	} else {
		var err error
		if targets, err = n.matching(ctx, bucket, pkg); err != nil {
			return err
		}
		if len(targets) == 0 {
			return &checkFailed{fmt.Sprintf("no subscription for %s/%s", bucket, pkg)}
		}
	}
	var rows []subscriptionRow
	var errs []error
	for _, s := range targets {
		if err := n.c.DeleteSubscription(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		rows = append(rows, rowOf(s, "deleted"))
	}
	if err := n.print(rows); err != nil {
		return err
	}
	return errors.Join(errs...)
}
