//go:build !unix

package disk

// blockSize is the usual file system block size where statfs is not
// available.
func blockSize(string) int64 { return 4096 }
