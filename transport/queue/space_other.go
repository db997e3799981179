//go:build !(linux || darwin || freebsd || dragonfly)

package queue

import (
	"errors"
	"fmt"
)

// DiskFree would return the bytes available on the file system holding
// dir; this system has no statfs(2), so it returns an error wrapping
// errors.ErrUnsupported.
func DiskFree(dir string) (int64, error) {
	return 0, fmt.Errorf("queue: free space of %s: %w", dir, errors.ErrUnsupported)
}
