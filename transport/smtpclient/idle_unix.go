//go:build unix

package smtpclient

import (
	"net"
	"syscall"
)

// socketIdle reports whether conn, a TCP connection, has nothing to read
// and is not closed by the peer: a recv(2) with MSG_PEEK|MSG_DONTWAIT that
// finds no data (EAGAIN). Anything else (data, end of stream, an error)
// means the connection is not idle.
func socketIdle(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	idle := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		idle = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return idle
}
