//go:build unix

package admin

import "syscall"

// ownerOnly sets the mode of a socket to 0600 before its bind
// (net.ListenConfig.Control); Linux creates the socket file with it.
func ownerOnly(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) { syscall.Fchmod(int(fd), 0o600) })
}
