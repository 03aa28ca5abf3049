//go:build unix

package disk

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on f, so that two processes
// never share one cache directory (each would delete the other's temporary
// files and journal over the other's index).
func lockDir(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("lock %s (is another ferrule using this directory?): %w", f.Name(), err)
	}
	return nil
}
