package main

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge what arrives on c at once
// instead of delaying the ACK (TCP_QUICKACK, which Linux resets by itself,
// so it is set again after every command). Without it, a server that keeps
// Nagle's algorithm on (Postfix) and writes two TLS records in a row (its
// TLS 1.3 session tickets, then the EHLO reply) waits for this client's
// delayed ACK, 40 ms per connection; Go servers disable Nagle and are not
// affected.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
