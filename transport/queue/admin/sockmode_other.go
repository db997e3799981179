//go:build !unix

package admin

import "syscall"

// ownerOnly does nothing here: Listen's chmod sets the mode.
func ownerOnly(_, _ string, _ syscall.RawConn) error { return nil }
