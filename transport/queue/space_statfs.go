//go:build linux || darwin || freebsd || dragonfly

package queue

import (
	"fmt"
	"math"
	"syscall"
)

// DiskFree returns the bytes available to an unprivileged process on the
// file system holding dir: statfs(2) f_bavail × f_bsize, the figure df(1)
// shows as available and the one Postfix compares with queue_minfree.
// Where the system has no statfs it returns an error wrapping
// errors.ErrUnsupported.
func DiskFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("queue: statfs %s: %w", dir, err)
	}
	avail, bsize := int64(st.Bavail), int64(st.Bsize)
	if avail <= 0 || bsize <= 0 {
		return 0, nil
	}
	if avail > math.MaxInt64/bsize {
		return math.MaxInt64, nil
	}
	return avail * bsize, nil
}
