package transport

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// TestPerClientConnectionLimit: one address holding its
// MaxConnectionsPerClient connections gets "421 4.7.0 ... Too many
// connections from your address" for one more, while a client from another
// address is served; a closed connection gives its slot back, and the table
// holds only addresses with live connections.
func TestPerClientConnectionLimit(t *testing.T) {
	ts := startServer(t, &Server{MaxConnectionsPerClient: 3, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
	var held []*dialogue
	for i := 0; i < 3; i++ {
		d := dialFrom(t, "127.0.0.1", ts.addr)
		if got := d.read(); !strings.HasPrefix(got, "220 ") {
			t.Fatalf("connection %d: %q", i+1, got)
		}
		held = append(held, d)
	}
	over := dialFrom(t, "127.0.0.1", ts.addr)
	if got := over.read(); !strings.HasPrefix(got, "421 4.7.0 ") || !strings.Contains(got, "Too many connections from your address") {
		t.Fatalf("4th connection from the same address: %q", got)
	}
	if _, err := over.tryRead(); err == nil {
		t.Error("4th connection not closed")
	}
	other := dialFrom(t, "127.0.0.2", ts.addr)
	other.greet()
	if got := other.sendMessage("a@example.org", "b@example.net", "Subject: x\r\n\r\nhi\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("client from another address: %q", got)
	}
	held[0].expect("QUIT", "221 ")
	held[0].conn.Close()
	waitFor(t, "slot given back", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.perClient[clientKey(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})] == 2
	})
	if got := dialFrom(t, "127.0.0.1", ts.addr).read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("after a close: %q", got)
	}
	ts.Close()
	waitFor(t, "table emptied", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.perClient) == 0
	})
}

// TestPerClientConnectionLimitSubmissions: on an implicit-TLS listener the
// connection over the limit is closed without a reply, as for the global cap.
func TestPerClientConnectionLimitSubmissions(t *testing.T) {
	pki := newSrvPKI(t)
	ts := startServer(t, &Server{Kind: KindSubmissions, MaxConnectionsPerClient: 1, Authenticator: testTable(t)}, pki)
	first := dialTLS(t, ts.addr, pki.clientConfig())
	if got := first.read(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("first: %q", got)
	}
	c, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, pki.clientConfig())
	if err := tc.Handshake(); err == nil {
		b, err := io.ReadAll(tc)
		t.Fatalf("second connection served: %q %v", b, err)
	}
}

// trickle writes s one byte at a time, every gap, and reports whether it
// got through all of it before the server cut the connection.
func trickle(d *dialogue, s string, gap time.Duration) bool {
	for i := 0; i < len(s); i++ {
		if _, err := d.conn.Write([]byte{s[i]}); err != nil {
			return false
		}
		time.Sleep(gap)
	}
	return true
}

// TestCommandDeadlineTrickle: a client sending a command one byte every
// 20 ms cannot stretch it past Timeouts.Command, although no single gap comes
// near the timeout; in plaintext, under TLS with each byte a TLS record of
// its own (the server's reads see ciphertext trickling), and under TLS
// with the command one record whose ciphertext trickles (the server reads
// a record's start, keeps it back and reads on for the rest).
func TestCommandDeadlineTrickle(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls", "tls, one record"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Timeouts: ServerTimeouts{Command: 400 * time.Millisecond}, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			line := "MAIL FROM:<" + strings.Repeat("a", 80) + "@example.org>\r\n" // about 2 s at 20 ms a byte
			var d, wire *dialogue
			if mode == "tls, one record" {
				var raw net.Conn
				var record []byte
				d, raw, record = recordDialogue(t, ts, line)
				wire, line = &dialogue{t: t, conn: raw}, string(record)
			} else {
				d = modeDialogue(t, ts, mode)
				wire = d
			}
			start := time.Now()
			done := make(chan bool, 1)
			go func() { done <- trickle(wire, line, 20*time.Millisecond) }()
			got, _ := d.tryRead()
			el := time.Since(start)
			if !strings.HasPrefix(got, "421 ") {
				t.Errorf("trickled command: %q after %v, want 421", got, el)
			}
			if el > 1500*time.Millisecond {
				t.Errorf("cut after %v, want about 400ms", el)
			}
			wire.conn.Close()
			<-done
		})
	}
}

// TestDataDeadlineTrickle: a message sent one short line every 30 ms cannot
// stretch DATA past Timeouts.Data, although each line comes well within
// Timeouts.Read; the message is not accepted. In plaintext and under TLS.
func TestDataDeadlineTrickle(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Timeouts: ServerTimeouts{Data: 500 * time.Millisecond, Read: 5 * time.Second, Command: 5 * time.Second},
				Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			start := time.Now()
			done := make(chan bool, 1)
			go func() {
				for i := 0; i < 100; i++ { // 3 s in all
					if _, err := fmt.Fprintf(d.conn, "line %d\r\n", i); err != nil {
						done <- false
						return
					}
					time.Sleep(30 * time.Millisecond)
				}
				_, err := io.WriteString(d.conn, ".\r\n")
				done <- err == nil
			}()
			got, _ := d.tryRead()
			el := time.Since(start)
			if strings.HasPrefix(got, "2") || el > 2*time.Second {
				t.Errorf("trickled DATA: %q after %v, want a 4xx or a close at about 500ms", got, el)
			}
			d.conn.Close()
			<-done
			if n := len(ts.rec.all()); n != 0 {
				t.Errorf("%d messages accepted", n)
			}
		})
	}
}

// TestStressMode: once the listener holds 80% of MaxConnections, idle
// connections, including those that were waiting already, are cut after
// Timeouts.Stress instead of Timeouts.Command (Postfix's stress mode); below the
// threshold Timeouts.Command applies again.
func TestStressMode(t *testing.T) {
	ts := startServer(t, &Server{MaxConnections: 5, Timeouts: ServerTimeouts{Command: 10 * time.Second, Stress: 300 * time.Millisecond}}, newSrvPKI(t))
	early := dial(t, ts.addr)
	early.greet() // waiting for a command under the 10 s timeout
	var rest []*dialogue
	for i := 0; i < 3; i++ { // 4 of 5: stress
		d := dial(t, ts.addr)
		d.read()
		rest = append(rest, d)
	}
	start := time.Now()
	for i, d := range append([]*dialogue{early}, rest...) {
		got, _ := d.tryRead()
		if !strings.HasPrefix(got, "421 ") {
			t.Errorf("connection %d under stress: %q", i, got)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("idle connections cut after %v under stress, want about 300ms", el)
	}
	waitFor(t, "connections closed", func() bool { return ts.active.Load() == 0 })
	// No longer stressed: a lone connection keeps Timeouts.Command.
	d := dial(t, ts.addr)
	d.greet()
	d.conn.SetReadDeadline(time.Now().Add(time.Second))
	if got, err := d.tryRead(); err == nil {
		t.Errorf("lone connection cut: %q", got)
	}
}

// TestClientKey: the per-client table counts an IPv4 address, or an IPv6
// /64, as one client.
func TestClientKey(t *testing.T) {
	key := func(s string) [16]byte { return clientKey(&net.TCPAddr{IP: net.ParseIP(s), Port: 25}) }
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.2", false},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"2001:db8::1", "2001:db8::ffff:1", true},
		{"2001:db8:0:0:1::1", "2001:db8::2", true},
		{"2001:db8:0:1::1", "2001:db8::1", false},
		{"192.0.2.1", "::ffff:0:0", false},
	} {
		if got := key(c.a) == key(c.b); got != c.same {
			t.Errorf("clientKey(%s) == clientKey(%s): %v, want %v", c.a, c.b, got, c.same)
		}
	}
}
