package smtpclient

import (
	"net"
	"testing"
	"time"
)

// Idle is true for an open connection with nothing to read, false once
// the server has written something (a 421) or closed it.
func TestIdle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server func(net.Conn)
		idle   bool
	}{
		{"quiet", func(net.Conn) {}, true},
		{"421", func(c net.Conn) { c.Write([]byte("421 4.4.2 idle\r\n")) }, false},
		{"closed", func(c net.Conn) { c.Close() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := New(conn)
			defer c.Close()
			srv := <-accepted
			defer srv.Close()
			tc.server(srv)
			time.Sleep(50 * time.Millisecond)
			if got := c.Idle(); got != tc.idle {
				t.Errorf("Idle() = %v, want %v", got, tc.idle)
			}
		})
	}
}
