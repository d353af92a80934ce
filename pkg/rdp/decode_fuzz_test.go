package rdp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"a","refresh_token":"r","expires_in":"600","scope":"trapi","token_type":"Bearer"}`,
		`{"access_token":"a","expires_in":7199,"token_type":"Bearer"}`,
		`{"access_token":"a","expires_in":"6e2"}`,
		`{"access_token":"","expires_in":"600"}`,
		`{"expires_in":null}`,
		`{"access_token":"a","expires_in":"-1"}`,
		`[]`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := DecodeToken(b, now)
		if err != nil {
			if tok != nil {
				t.Fatal("token and error")
			}
			return
		}
		if tok.AccessToken == "" || !tok.Expiry.After(now) {
			t.Fatalf("accepted unusable token: %v", tok)
		}
		if strings.Contains(tok.String(), tok.AccessToken) && len(tok.AccessToken) > 3 {
			t.Fatal("String() reveals the token")
		}
	})
}

func FuzzDecodePage(f *testing.F) {
	for _, s := range []string{
		`{"value":[{"id":"fs1","name":"n","bucketName":"bulk-ESG","packageId":"p","files":["f1"],"numFiles":1,"status":"READY","modified":"2026-01-01T00:00:00Z"}],"@nextLink":"/file-store/v1/file-sets?skipToken=x"}`,
		`{"value":[]}`,
		`{"value":null}`,
		`{"value":[{"id":1}]}`,
		`{"value":[{"modified":"yesterday"}]}`,
		`{}`, `null`, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		items, next, err := DecodePage[FileSet](b)
		if err != nil && (items != nil || next != "") {
			t.Fatal("items with error")
		}
	})
}

func FuzzParseAPIError(f *testing.F) {
	for _, s := range []string{
		`{"error":{"id":"i","code":"401","message":"token expired","status":"Unauthorized"}}`,
		`{"error":{"code":401}}`,
		`{"error":"invalid_grant","error_description":"x"}`,
		`{"message":"m"}`, `<html>`, ``,
	} {
		f.Add(401, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		err := ParseAPIError("op", status, b)
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != status {
			t.Fatalf("got %v", err)
		}
		_ = err.Error()
	})
}

func FuzzFileNameFromURL(f *testing.F) {
	for _, s := range []string{
		"https://h.s3.amazonaws.com/a/b/RFT-ESG%3A2021.jsonl.gz?X-Amz-Signature=x",
		"https://h/a%2Fb", "https://h/", "::", "https://h/%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := FileNameFromURL(s)
		if err != nil {
			return
		}
		if name == "" || strings.ContainsAny(name, ":/\\") || name == "." || name == ".." {
			t.Fatalf("bad name %q from %q", name, s)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/100", "bytes 5-5/*", "bytes 9-0/10", "bytes -1-2/3", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, ok := parseContentRange(s)
		if ok && (start < 0 || end < start || total < -1) {
			t.Fatalf("%q → %d %d %d", s, start, end, total)
		}
	})
}
