//go:build unix

package disk

import "syscall"

// blockSize is the block size of the file system holding dir (4096 if it
// cannot be found).
func blockSize(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Bsize <= 0 {
		return 4096
	}
	return int64(st.Bsize)
}
