package rdptest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// BenchmarkS3Range measures presigned-host range serving over loopback HTTP: 8 MiB ranges of a
// 10 GiB file.
func BenchmarkS3Range(b *testing.B) {
	const rangeSize = 8 << 20
	s := New(b, Options{})
	at, _ := s.IssueTokens(DefaultUser, DefaultAppKey)
	f := s.AddFileSet(FileSetSpec{Bucket: DefaultBucket, PackageID: DefaultPackageID, Name: "bench",
		Files: []FileSpec{{Name: "big.bin", Size: 10 << 30}}}).Files[0]
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	req, _ := http.NewRequest("GET", s.URL()+"/file-store/v1/files/"+f.ID+"/stream?doNotRedirect=true", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var stream struct{ URL string }
	err = json.NewDecoder(res.Body).Decode(&stream)
	res.Body.Close()
	if err != nil || stream.URL == "" {
		b.Fatalf("stream: %v", err)
	}
	u := stream.URL
	get := func(i int) error {
		off := int64(i%1000) * rangeSize
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+rangeSize-1))
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		n, err := io.Copy(io.Discard, res.Body)
		if err == nil && (res.StatusCode != 206 || n != rangeSize) {
			err = fmt.Errorf("status %d, %d bytes", res.StatusCode, n)
		}
		return err
	}
	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(rangeSize)
		for i := 0; b.Loop(); i++ {
			if err := get(i); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(rangeSize)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if err := get(i); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
