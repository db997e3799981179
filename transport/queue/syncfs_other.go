//go:build !linux

package queue

import (
	"errors"
	"os"
)

// haveSyncFS: no syncfs(2) here; every file is fsynced on its own.
const haveSyncFS = false

func syncFS(*os.File) error { return errors.ErrUnsupported }
