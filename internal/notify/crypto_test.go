package notify

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// vectors.json was produced by testdata/gen_vectors.py with Python's
// `cryptography` AES-GCM, independently of this package.
type vectors struct {
	K             string `json:"key"`
	K128          string `json:"key128"`
	Wrong         string `json:"wrong_key"`
	Plain         string `json:"plain"`
	Body          string `json:"body"`
	BodyAES128    string `json:"body_aes128"`
	BodyEmpty     string `json:"body_empty_plain"`
	BodyTampered  string `json:"body_tampered"`
	BodyTruncated string `json:"body_truncated"`
	BodyTooShort  string `json:"body_too_short"`
	BodyNotJSON   string `json:"body_not_json"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustKey(t *testing.T, b64 string) []byte {
	t.Helper()
	k, err := ParseKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDecryptVectors(t *testing.T) {
	v := loadVectors(t)
	tests := []struct {
		name, key, body, want string
		wantErr               string
	}{
		{name: "AES-256", key: v.K, body: v.Body, want: v.Plain},
		{name: "AES-128", key: v.K128, body: v.BodyAES128, want: v.Plain},
		{name: "empty plain text", key: v.K, body: v.BodyEmpty, want: ""},
		{name: "wrong key", key: v.Wrong, body: v.Body, wantErr: "authentication failed"},
		{name: "key of another size", key: v.K128, body: v.Body, wantErr: "authentication failed"},
		{name: "tampered", key: v.K, body: v.BodyTampered, wantErr: "authentication failed"},
		{name: "truncated by one byte", key: v.K, body: v.BodyTruncated, wantErr: "authentication failed"},
		{name: "shorter than aad and tag", key: v.K, body: v.BodyTooShort, wantErr: "shorter than"},
		{name: "not base64", key: v.K, body: "not*base64!", wantErr: "not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decrypt(mustKey(t, tt.key), tt.body)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrUndecryptable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrUndecryptable containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), tt.body) {
					t.Fatal("error quotes the message body")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("plain = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecryptedVectorParses(t *testing.T) {
	v := loadVectors(t)
	plain, err := Decrypt(mustKey(t, v.K), v.Body)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	if n.FileSet.ID != "4e94-6d63-fea0bf8b-b4b6-2c2b1d9a3c11" || len(n.FileSet.Files) != 2 || n.SeqNo != 7 {
		t.Fatalf("parsed %+v", n)
	}
	if _, err := Parse(mustDecrypt(t, v.K, v.BodyNotJSON)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("not JSON: err = %v, want ErrMalformed", err)
	}
}

func mustDecrypt(t *testing.T, key, body string) []byte {
	t.Helper()
	p, err := Decrypt(mustKey(t, key), body)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseKey(t *testing.T) {
	for _, tt := range []struct{ name, in, wantErr string }{
		{"32 bytes", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", ""},
		{"not base64", "%%%", `"cryptographyKey": not base64`},
		{"wrong size", "AAEC", `"cryptographyKey": 3 bytes`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKey(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
