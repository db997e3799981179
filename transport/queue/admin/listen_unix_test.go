//go:build unix

package admin

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The socket is never reachable by others, not even between its bind and
// Listen's chmod: under umask 0 it is created with mode 0600.
func TestListenModeAtBind(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	var atBind os.FileMode
	chmod = func(path string, mode os.FileMode) error {
		if fi, err := os.Lstat(path); err == nil {
			atBind = fi.Mode().Perm()
		}
		return os.Chmod(path, mode)
	}
	defer func() { chmod = os.Chmod }()
	l, err := Listen(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if atBind != 0o600 {
		t.Errorf("socket mode %v between bind and chmod, want 0600", atBind)
	}
}
