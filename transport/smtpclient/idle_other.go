//go:build !unix

package smtpclient

import (
	"errors"
	"net"
	"time"
)

// socketIdle reports whether conn has nothing to read within a
// millisecond: without a non-blocking peek, a short read deadline.
func socketIdle(conn net.Conn) bool {
	conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := conn.Read(b[:])
	conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
