package queue

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS: syncfs(2) is available (Linux 2.6.39; it reports writeback
// errors since 5.8).
const haveSyncFS = true

// syncFS writes back every dirty page and inode of the file system holding
// f and waits for it, including the device cache flush (syncfs(2)).
func syncFS(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// datasync flushes f's data and the metadata needed to read it back
// (fdatasync(2)), with the device cache flush.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}
