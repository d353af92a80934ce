package rdptest

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"io"
)

// The content of a simulated file is a pure function of its ID and a byte offset: byte i of file f
// is byte (i mod 8) of the little-endian word splitmix64(seed(f) + i/8). Any range can therefore be
// produced on the fly, without storing anything, and tests can hash what landed without keeping
// a copy.

func contentSeed(fileID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(fileID))
	return h.Sum64()
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// fillContent writes the content of the file with the given seed, starting at offset off, into p.
func fillContent(seed uint64, p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	word := uint64(off) / 8
	skip := int(uint64(off) % 8)
	var buf [8]byte
	if skip != 0 {
		binary.LittleEndian.PutUint64(buf[:], splitmix64(seed+word*0x9e3779b97f4a7c15))
		n := copy(p, buf[skip:])
		p = p[n:]
		word++
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, splitmix64(seed+word*0x9e3779b97f4a7c15))
		p = p[8:]
		word++
	}
	if len(p) > 0 {
		binary.LittleEndian.PutUint64(buf[:], splitmix64(seed+word*0x9e3779b97f4a7c15))
		copy(p, buf[:])
	}
}

// ContentAt fills p with the bytes of file fileID starting at offset off. The caller must keep
// off+len(p) within the file's size; bytes past the end are still generated (the function does
// not know the size).
func ContentAt(fileID string, p []byte, off int64) {
	fillContent(contentSeed(fileID), p, off)
}

// ContentReader is the deterministic content of one simulated file: an io.ReadSeeker and
// io.ReaderAt over size bytes that costs no memory.
type ContentReader struct {
	seed uint64
	size int64
	off  int64
}

var (
	_ io.ReadSeeker = (*ContentReader)(nil)
	_ io.ReaderAt   = (*ContentReader)(nil)
)

// Content returns the deterministic bytes of the file fileID of the given size (as served by the
// presigned-URL host and listed in GroundTruth).
func Content(fileID string, size int64) *ContentReader {
	return &ContentReader{seed: contentSeed(fileID), size: size}
}

// Size is the file's size.
func (c *ContentReader) Size() int64 { return c.size }

// Read implements io.Reader.
func (c *ContentReader) Read(p []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	if rem := c.size - c.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	fillContent(c.seed, p, c.off)
	c.off += int64(len(p))
	return len(p), nil
}

// ReadAt implements io.ReaderAt.
func (c *ContentReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("rdptest: negative offset")
	}
	if off >= c.size {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if rem := c.size - off; int64(n) > rem {
		n = int(rem)
		err = io.EOF
	}
	fillContent(c.seed, p[:n], off)
	return n, err
}

// Seek implements io.Seeker.
func (c *ContentReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = c.off + offset
	case io.SeekEnd:
		abs = c.size + offset
	default:
		return 0, errors.New("rdptest: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("rdptest: negative position")
	}
	c.off = abs
	return abs, nil
}

// ContentMD5 is the hex MD5 of the whole content of file fileID of the given size. It reads the
// content once (about 1 s per GiB).
func ContentMD5(fileID string, size int64) string {
	h := md5.New()
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(h, io.LimitReader(Content(fileID, size), size), buf); err != nil {
		panic(err) // cannot happen: the reader never fails
	}
	return hex.EncodeToString(h.Sum(nil))
}
