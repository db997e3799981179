package transporttest

import (
	"bufio"
	"context"
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestStripSTARTTLS(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"250-mx", "250-STARTTLS", "250 SIZE"}, []string{"250-mx", "250 SIZE"}},
		{[]string{"250-mx", "250-SIZE", "250 STARTTLS"}, []string{"250-mx", "250 SIZE"}},
		{[]string{"250-mx", "250 starttls"}, []string{"250 mx"}},
		{[]string{"220 ready"}, []string{"220 ready"}},
	} {
		if got := stripSTARTTLS(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDialerRefusesNonLoopback(t *testing.T) {
	d := &Dialer{Map: map[string]string{"192.0.2.1:25": "192.0.2.99:25"}}
	for _, a := range []string{"192.0.2.1:25", "198.51.100.1:25"} {
		if c, err := d.DialContext(context.Background(), "tcp", a); err == nil {
			c.Close()
			t.Errorf("dialled %s", a)
		}
	}
	if _, err := StartProxy("198.51.100.1:25", StripSTARTTLS); err == nil {
		t.Error("proxy to a non-loopback upstream started")
	}
}

// The stripping proxy removes STARTTLS from what the client sees and
// refuses the command; the server behind it really offers STARTTLS.
func TestStrippingProxyDialogue(t *testing.T) {
	srv := NewTLSServer(t)
	p := NewStrippingProxy(t, srv.Addr)
	for _, addr := range []string{srv.Addr, p.Addr} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		r.ReadString('\n')
		c.Write([]byte("EHLO test.example\r\n"))
		var ehlo []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			ehlo = append(ehlo, strings.TrimSpace(l))
			if l[3] == ' ' {
				break
			}
		}
		offered := strings.Contains(strings.Join(ehlo, "\n"), "STARTTLS")
		if offered != (addr == srv.Addr) {
			t.Errorf("%s: STARTTLS offered = %v in %q", addr, offered, ehlo)
		}
		if addr == p.Addr {
			c.Write([]byte("STARTTLS\r\n"))
			l, _ := r.ReadString('\n')
			if !strings.HasPrefix(l, "502") {
				t.Errorf("STARTTLS through proxy: %q", l)
			}
		}
		c.Write([]byte("QUIT\r\n"))
		r.ReadString('\n')
		c.Close()
	}
	if !Contains(p.Seen(), "EHLO test.example", "STARTTLS") {
		t.Errorf("proxy recorded %q", p.Seen())
	}
}
