package main

import "fmt"

// S3 multipart limits (docs/design.md#aws-limits; AWS S3 multipart limits).
const (
	MiB             = int64(1) << 20
	GiB             = int64(1) << 30
	minPartSize     = 5 * MiB // every part but the last
	maxPartSize     = 5 * GiB // any part
	maxParts        = 10_000  // parts per upload
	maxObjectSize   = 5 << 40 // 5 TiB, S3's largest object
	defaultPartSize = 8 * MiB // the smallest part size the downloader picks by itself
	partSizeRound   = 1 * MiB // chosen part sizes are whole MiB
)

// choosePartSize returns the part size for a file of the given size. With
// override > 0 (PART_SIZE) that size is used unless the file would then need
// more than 10,000 parts, in which case the smallest whole-MiB size that fits
// is used instead. Without an override it is max(8 MiB, size/10,000 rounded
// up to a MiB). The result is always within S3's 5 MiB–5 GiB.
func choosePartSize(size, override int64) (int64, error) {
	if size < 0 {
		return 0, fmt.Errorf("part size: negative file size %d", size)
	}
	if size > maxObjectSize {
		return 0, fmt.Errorf("part size: file of %d bytes is larger than S3's 5 TiB object limit", size)
	}
	if override != 0 && (override < minPartSize || override > maxPartSize) {
		return 0, fmt.Errorf("part size: PART_SIZE=%d outside S3's %d–%d bytes", override, minPartSize, maxPartSize)
	}
	fit := ceilDiv(size, maxParts)
	fit = ceilDiv(fit, partSizeRound) * partSizeRound
	ps := max(defaultPartSize, fit)
	if override > 0 {
		ps = max(override, fit)
	}
	return min(ps, maxPartSize), nil
}

// partCount is the number of parts of a file of size bytes (at least 1).
func partCount(size, partSize int64) int32 {
	if size <= 0 {
		return 1
	}
	return int32(ceilDiv(size, partSize))
}

// partLen is the length of part n (1-based).
func partLen(size, partSize int64, n int32) int64 {
	off := int64(n-1) * partSize
	return min(partSize, size-off)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
