package rdp_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cfsync/cfsync/pkg/rdp"
	"github.com/cfsync/cfsync/pkg/rdp/rdptest"
	"golang.org/x/oauth2"
)

// bearerClient returns an rdp.Client whose file-store calls carry a token the
// simulator issued (without counting as an auth request).
func bearerClient(t *testing.T, sim *rdptest.Server, opts ...rdp.Option) *rdp.Client {
	t.Helper()
	access, _ := sim.IssueTokens(rdptest.DefaultUser, rdptest.DefaultAppKey)
	hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: access, TokenType: "Bearer"})}}
	c, err := rdp.NewClient(append([]rdp.Option{rdp.WithBaseURL(sim.URL()), rdp.WithHTTPClient(hc), rdp.WithNoRetrySleep()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuthGrantsAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		opts      rdptest.Options
		setup     func(sim *rdptest.Server)
		grant     func(c *rdp.Client, sim *rdptest.Server) (*rdp.Token, error)
		wantTTL   time.Duration
		wantErr   error
		wantAsErr any
	}{
		{name: "password grant, expires_in as string", grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: rdptest.DefaultPassword, ClientID: rdptest.DefaultAppKey, TakeExclusiveSignOnControl: true})
		}, wantTTL: 600 * time.Second},
		{name: "password grant, expires_in as number", opts: rdptest.Options{ExpiresInNumber: true, AccessTokenTTL: 300 * time.Second}, grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: rdptest.DefaultPassword, ClientID: rdptest.DefaultAppKey})
		}, wantTTL: 300 * time.Second},
		{name: "wrong password is invalid credentials", grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: "nope", ClientID: rdptest.DefaultAppKey})
		}, wantErr: rdp.ErrInvalidCredentials, wantAsErr: new(*rdp.AuthError)},
		{name: "unknown app key is unauthorized client", grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: rdptest.DefaultPassword, ClientID: "bogus"})
		}, wantErr: rdp.ErrUnauthorizedClient},
		{name: "session quota without exclusive sign-on", setup: func(sim *rdptest.Server) {
			sim.IssueTokens(rdptest.DefaultUser, rdptest.DefaultAppKey) // a live session
		}, grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: rdptest.DefaultPassword, ClientID: rdptest.DefaultAppKey})
		}, wantErr: rdp.ErrSessionQuota, wantAsErr: new(*rdp.AuthError)},
		{name: "exclusive sign-on takes over a live session", setup: func(sim *rdptest.Server) {
			sim.IssueTokens(rdptest.DefaultUser, rdptest.DefaultAppKey)
		}, grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: rdptest.DefaultPassword, ClientID: rdptest.DefaultAppKey, TakeExclusiveSignOnControl: true})
		}, wantTTL: 600 * time.Second},
		{name: "refresh grant rotates the refresh token", grant: func(c *rdp.Client, sim *rdptest.Server) (*rdp.Token, error) {
			rt := sim.IssueRefreshToken(rdptest.DefaultUser, rdptest.DefaultAppKey)
			tok, err := c.RefreshGrant(ctx, rdptest.DefaultAppKey, rt)
			if err != nil {
				return nil, err
			}
			if tok.RefreshToken == "" || tok.RefreshToken == rt {
				t.Errorf("refresh token not rotated")
			}
			// the old refresh token is dead now
			if _, err := c.RefreshGrant(ctx, rdptest.DefaultAppKey, rt); !errors.Is(err, rdp.ErrInvalidGrant) {
				t.Errorf("reusing the old refresh token: %v, want invalid_grant", err)
			}
			return tok, nil
		}, wantTTL: 600 * time.Second},
		{name: "v2 client credentials", grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.ClientCredentialsGrant(ctx, rdptest.DefaultServiceID, rdptest.DefaultServiceSecret, "")
		}, wantTTL: 7199 * time.Second},
		{name: "v2 wrong secret", grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			return c.ClientCredentialsGrant(ctx, rdptest.DefaultServiceID, "wrong", "")
		}, wantAsErr: new(*rdp.AuthError)},
		{name: "auth 429 is typed with Retry-After and not retried", setup: func(sim *rdptest.Server) {
			sim.Inject(rdptest.Fault{Kind: rdptest.FaultTooManyRequests, PathPrefix: "/auth/", RetryAfter: 42 * time.Second})
		}, grant: func(c *rdp.Client, _ *rdptest.Server) (*rdp.Token, error) {
			tok, err := c.ClientCredentialsGrant(ctx, rdptest.DefaultServiceID, rdptest.DefaultServiceSecret, "")
			var rl *rdp.RateLimitError
			if errors.As(err, &rl) && rl.RetryAfter != 42*time.Second {
				t.Errorf("RetryAfter = %s, want 42s", rl.RetryAfter)
			}
			return tok, err
		}, wantErr: rdp.ErrRateLimited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := rdptest.NewClock(time.Time{})
			tt.opts.Now = clock.Now
			sim := rdptest.New(t, tt.opts)
			if tt.setup != nil {
				tt.setup(sim)
			}
			c, err := rdp.NewClient(rdp.WithBaseURL(sim.URL()), rdp.WithClock(clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			before := sim.Counters().AuthRequests
			tok, err := tt.grant(c, sim)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantAsErr != nil && !errors.As(err, tt.wantAsErr) {
				t.Fatalf("err = %v (%T), want %T", err, err, tt.wantAsErr)
			}
			if tt.wantErr == nil && tt.wantAsErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tok.ExpiresIn() != tt.wantTTL || !tok.Expiry.Equal(clock.Now().Add(tt.wantTTL)) {
					t.Errorf("expiry %s (ttl %s), want now+%s", tok.Expiry, tok.ExpiresIn(), tt.wantTTL)
				}
				if strings.Contains(tok.String()+err2s(err), tok.AccessToken) {
					t.Error("token printed")
				}
			}
			if err != nil && strings.Contains(err.Error(), rdptest.DefaultPassword) {
				t.Error("error contains the password")
			}
			// Auth calls are never retried automatically.
			if n := sim.Counters().AuthRequests - before; n > 3 {
				t.Errorf("%d auth requests: auth calls must not be retried", n)
			}
		})
	}
}

func err2s(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRevokeEndsSession(t *testing.T) {
	sim := rdptest.New(t, rdptest.Options{})
	ctx := context.Background()
	c, _ := rdp.NewClient(rdp.WithBaseURL(sim.URL()))
	tok, err := c.PasswordGrant(ctx, rdp.PasswordGrant{Username: rdptest.DefaultUser, Password: rdptest.DefaultPassword, ClientID: rdptest.DefaultAppKey, TakeExclusiveSignOnControl: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, rdptest.DefaultAppKey, tok.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if sim.SessionLive(rdptest.DefaultUser) {
		t.Fatal("session still live after revoke")
	}
	if _, err := c.RefreshGrant(ctx, rdptest.DefaultAppKey, tok.RefreshToken); !errors.Is(err, rdp.ErrInvalidGrant) {
		t.Fatalf("refresh after revoke: %v, want invalid_grant", err)
	}
}

func TestFileStoreAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	clock := rdptest.NewClock(time.Time{})
	sim := rdptest.New(t, rdptest.Options{Now: clock.Now})
	sets := sim.AddFileSets(rdptest.DefaultBucket, rdptest.DefaultPackageID, 230, 1, 1024)
	c := bearerClient(t, sim)

	t.Run("packages", func(t *testing.T) {
		var got []rdp.Package
		for p, err := range c.Packages(ctx, "BULK-esg") { // bucket names are case-insensitive
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p)
		}
		if len(got) != 1 || got[0].PackageID != rdptest.DefaultPackageID {
			t.Fatalf("packages = %+v", got)
		}
	})
	t.Run("file-sets over 3 pages", func(t *testing.T) {
		sim.ResetCounters()
		pages := 0
		ids := map[string]bool{}
		for fs, err := range c.FileSetsWithPages(ctx, rdp.FileSetQuery{Bucket: rdptest.DefaultBucket, PackageID: rdptest.DefaultPackageID}, func() { pages++ }) {
			if err != nil {
				t.Fatal(err)
			}
			if fs.Status != rdp.StatusReady || len(fs.Files) != 1 || fs.Modified.IsZero() {
				t.Fatalf("file-set not decoded: %+v", fs)
			}
			ids[fs.ID] = true
		}
		if len(ids) != len(sets) || pages != 3 {
			t.Fatalf("%d file-sets over %d pages, want %d over 3", len(ids), pages, len(sets))
		}
		if got := sim.Counters().Requests[rdptest.EPFileSets]; got != 3 {
			t.Fatalf("simulator saw %d file-set requests, want 3", got)
		}
	})
	t.Run("modifiedSince filter", func(t *testing.T) {
		clock.Advance(2 * time.Minute)
		sim.TouchFileSet(sets[7].ID)
		var got []string
		for fs, err := range c.FileSets(ctx, rdp.FileSetQuery{Bucket: rdptest.DefaultBucket, PackageID: rdptest.DefaultPackageID, ModifiedSince: clock.Now().Add(-time.Minute)}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fs.ID)
		}
		if len(got) != 1 || got[0] != sets[7].ID {
			t.Fatalf("modifiedSince returned %v, want only %s", got, sets[7].ID)
		}
	})
	t.Run("files, file, stream URL, ranges", func(t *testing.T) {
		var files []rdp.File
		for f, err := range c.Files(ctx, sets[0].ID) {
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		if len(files) != 1 {
			t.Fatalf("files = %d", len(files))
		}
		f := files[0]
		if f.Size != 1024 || f.FileSetID != sets[0].ID || f.FileName == "" || f.Created.IsZero() || f.MD5 != "" {
			t.Fatalf("file = %+v (want RDP's listing fields and no md5)", f)
		}
		if _, err := c.File(ctx, f.ID); !errors.Is(err, rdp.ErrNotFound) {
			t.Fatalf("GET /files/{id}: %v, want ErrNotFound (RDP shows no such route)", err)
		}
		u, err := c.StreamURL(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u, sim.S3URL()) {
			t.Fatalf("stream URL on %s, want the S3 host", rdp.RedactURL(u))
		}
		size, err := c.Size(ctx, u)
		if err != nil || size != 1024 {
			t.Fatalf("size = %d, %v", size, err)
		}
		var whole bytes.Buffer
		for off := int64(0); off < size; off += 300 {
			r, err := c.GetRange(ctx, u, off, min(300, size-off))
			if err != nil {
				t.Fatal(err)
			}
			if r.TotalSize != size {
				t.Fatalf("TotalSize = %d", r.TotalSize)
			}
			_, _ = io.Copy(&whole, r.Body)
			r.Body.Close()
		}
		sum := md5.Sum(whole.Bytes())
		if hex.EncodeToString(sum[:]) != rdptest.ContentMD5(f.ID, size) {
			t.Fatal("ranged download does not match the md5")
		}
		if sim.Counters().AuthHeaderOnS3 != 0 {
			t.Fatal("an Authorization header reached the presigned host")
		}
	})
	t.Run("401 token expired", func(t *testing.T) {
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultUnauthorized, PathPrefix: rdp.FilesPath})
		_, err := c.StreamURL(ctx, sets[0].Files[0].ID)
		var ae *rdp.APIError
		if !errors.Is(err, rdp.ErrTokenExpired) || !errors.Is(err, rdp.ErrUnauthorized) || !errors.As(err, &ae) || ae.StatusCode != 401 {
			t.Fatalf("err = %v, want APIError 401 token expired", err)
		}
	})
	t.Run("429 honoured then success", func(t *testing.T) {
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultTooManyRequests, PathPrefix: rdp.FilesPath, RetryAfter: time.Second})
		if _, err := c.StreamURL(ctx, sets[0].Files[0].ID); err != nil {
			t.Fatalf("after a 429: %v", err)
		}
	})
	t.Run("503 then success", func(t *testing.T) {
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultUnavailable, PathPrefix: rdp.FilesPath, Times: 2})
		if _, err := c.StreamURL(ctx, sets[0].Files[0].ID); err != nil {
			t.Fatalf("after two 503s: %v", err)
		}
	})
	t.Run("connection reset then success", func(t *testing.T) {
		// Two resets: Go's transport silently retries a reset on a reused connection once.
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultReset, PathPrefix: rdp.FilesPath, Times: 2})
		if _, err := c.StreamURL(ctx, sets[0].Files[0].ID); err != nil {
			t.Fatalf("after two resets: %v", err)
		}
		if len(sim.PendingFaults()) != 0 {
			t.Fatal("the resets did not fire")
		}
	})
	t.Run("token source failure is not retried", func(t *testing.T) {
		failing := &http.Client{Transport: &oauth2.Transport{Source: failingSource{}}}
		fc, _ := rdp.NewClient(rdp.WithBaseURL(sim.URL()), rdp.WithHTTPClient(failing), rdp.WithNoRetrySleep())
		sim.ResetCounters()
		if _, err := fc.StreamURL(ctx, sets[0].Files[0].ID); err == nil || !strings.Contains(err.Error(), "no token in the ring") {
			t.Fatalf("err = %v", err)
		}
		if n := sim.Counters().Requests[rdptest.EPStream]; n != 0 {
			t.Fatalf("%d requests reached the API without a token", n)
		}
	})
	t.Run("deleted file is ErrNotFound", func(t *testing.T) {
		id := sets[1].Files[0].ID
		sim.DeleteFile(id)
		if _, err := c.StreamURL(ctx, id); !errors.Is(err, rdp.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("expired presigned URL is ErrURLExpired", func(t *testing.T) {
		id := sets[2].Files[0].ID
		sim.Inject(rdptest.Fault{Kind: rdptest.FaultExpiredURL, FileID: id})
		u, err := c.StreamURL(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetRange(ctx, u, 0, 10)
		if !errors.Is(err, rdp.ErrURLExpired) {
			t.Fatalf("err = %v, want ErrURLExpired", err)
		}
		if strings.Contains(err.Error(), "X-Amz") {
			t.Fatal("error reveals the presigned URL")
		}
	})
}

func TestContextCancelledAgainstSimulator(t *testing.T) {
	sim := rdptest.New(t, rdptest.Options{})
	sim.AddFileSets(rdptest.DefaultBucket, rdptest.DefaultPackageID, 5, 1, 10)
	c := bearerClient(t, sim)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range c.FileSets(ctx, rdp.FileSetQuery{Bucket: rdptest.DefaultBucket}) {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		return
	}
	t.Fatal("no error yielded")
}

type failingSource struct{}

func (failingSource) Token() (*oauth2.Token, error) { return nil, errors.New("no token in the ring") }
