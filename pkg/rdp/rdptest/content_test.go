package rdptest

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"testing"
)

func TestContentDeterministic(t *testing.T) {
	const size = 1<<20 + 13
	a := make([]byte, size)
	b := make([]byte, size)
	if _, err := io.ReadFull(Content("file-1", size), a); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(Content("file-1", size), b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("same file, different bytes")
	}
	other := make([]byte, size)
	_, _ = io.ReadFull(Content("file-2", size), other)
	if bytes.Equal(a[:64], other[:64]) {
		t.Fatal("different files, same bytes")
	}
	if bytes.Count(a, []byte{0}) > size/100 {
		t.Fatal("content does not look random")
	}
	// Any slice, at any alignment, equals the slice of the whole.
	for _, r := range [][2]int{{0, 1}, {1, 9}, {7, 8}, {8, 16}, {3, 70001}, {size - 5, size}, {12345, 12345 + 64<<10}} {
		got := make([]byte, r[1]-r[0])
		ContentAt("file-1", got, int64(r[0]))
		if !bytes.Equal(got, a[r[0]:r[1]]) {
			t.Fatalf("ContentAt[%d:%d] differs", r[0], r[1])
		}
		n, err := Content("file-1", size).ReadAt(got, int64(r[0]))
		if n != len(got) || (err != nil && err != io.EOF) || !bytes.Equal(got, a[r[0]:r[1]]) {
			t.Fatalf("ReadAt[%d:%d]: %d %v", r[0], r[1], n, err)
		}
	}
	// Seek then read; reading past the end is EOF.
	c := Content("file-1", size)
	if _, err := c.Seek(-10, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(c)
	if !bytes.Equal(tail, a[size-10:]) {
		t.Fatal("tail after Seek differs")
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read at end: %d %v", n, err)
	}
	if _, err := c.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("negative seek accepted")
	}
	if n, err := c.ReadAt(make([]byte, 20), size-10); n != 10 || err != io.EOF {
		t.Fatalf("ReadAt across the end: %d %v", n, err)
	}
	sum := md5.Sum(a)
	if ContentMD5("file-1", size) != hex.EncodeToString(sum[:]) || ContentMD5("file-1", size) == ContentMD5("file-1", size-1) {
		t.Fatal("ContentMD5 is not the md5 of the content")
	}
}

func BenchmarkFillContent(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		ContentAt("bench", buf, int64(i)*int64(len(buf)))
	}
}
