//go:build !linux

package queue

import (
	"errors"
	"os"
)

// haveSyncFS: no syncfs(2) here; every file is fsynced on its own.
const haveSyncFS = false

func syncFS(*os.File) error { return errors.ErrUnsupported }

// datasync is fsync(2) where fdatasync(2) is not used.
func datasync(f *os.File) error { return f.Sync() }
