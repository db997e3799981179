package transport_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// pipelinePeer is a plaintext peer offering PIPELINING (and CHUNKING when
// chunking is set) that reads the whole mail transaction before it writes
// any reply: a client that waited for a reply between commands would
// stall, and the test fails on the peer's read deadline. It answers MAIL
// with mail, each RCPT with the next of rcpts, DATA or BDAT with data,
// and the body after a 354 with final.
type pipelinePeer struct {
	chunking          bool
	mail, data, final string
	rcpts             []string

	mu       sync.Mutex
	flight   []string // the lines of the first flight, as read
	body     string   // what came after DATA's 354, or the BDAT chunk
	complete bool     // the flight arrived before any reply was written
}

func (p *pipelinePeer) start(t *testing.T) string {
	ehlo := "250-peer\r\n250-PIPELINING\r\n"
	if p.chunking {
		ehlo += "250-CHUNKING\r\n"
	}
	ehlo += "250 8BITMIME\r\n"
	return rawServer(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("220 peer ESMTP\r\n"))
		r.ReadString('\n')
		c.Write([]byte(ehlo))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var lines []string
		chunk := ""
		for i := 0; i < 2+len(p.rcpts); i++ {
			l, err := r.ReadString('\n')
			if err != nil {
				return // the client waited for a reply: no pipelining
			}
			lines = append(lines, l)
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "BDAT" {
				n, _ := strconv.Atoi(f[1])
				b := make([]byte, n)
				if _, err := io.ReadFull(r, b); err != nil {
					return
				}
				chunk = string(b)
			}
		}
		p.mu.Lock()
		p.flight, p.body, p.complete = lines, chunk, true
		p.mu.Unlock()
		replies := p.mail + strings.Join(p.rcpts, "") + p.data
		c.Write([]byte(replies))
		if strings.HasPrefix(p.data, "354") {
			var body strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(strings.TrimPrefix(l, ".")) // unstuffed (RFC 5321 §4.5.2)
			}
			p.mu.Lock()
			p.body = body.String()
			p.mu.Unlock()
			c.Write([]byte(p.final))
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(l, "QUIT") {
				c.Write([]byte("221 bye\r\n"))
				return
			}
			c.Write([]byte("250 OK\r\n"))
		}
	})
}

// The mail transaction is one flight (RFC 2920 §3.1): MAIL, every RCPT
// and DATA (or BDAT with the body, RFC 3030) before any reply, and each
// RCPT's reply is still its own recipient's.
func TestPipelinedTransaction(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			p := &pipelinePeer{chunking: chunking, mail: "250 2.1.0 OK\r\n",
				rcpts: []string{"250 2.1.5 OK\r\n", "550 5.1.1 no such user\r\n", "451 4.2.0 try later\r\n"},
				data:  "354 go ahead\r\n", final: "250 2.0.0 queued as X\r\n"}
			if chunking {
				p.data = "250 2.0.0 queued as X\r\n"
			}
			e := newEnv(t)
			e.single(p.start(t))
			res := deliver(t, e.connector(fixed(policy.May), nil), envelope("a@example.test", "b@example.test", "c@example.test"))
			p.mu.Lock()
			defer p.mu.Unlock()
			if !p.complete {
				t.Fatal("the peer never read the whole transaction before replying: not pipelined")
			}
			last := "DATA\r\n"
			if chunking {
				last = fmt.Sprintf("BDAT %d LAST\r\n", len(testBody))
			}
			if p.flight[len(p.flight)-1] != last {
				t.Errorf("flight ends with %q, want %q", p.flight[len(p.flight)-1], last)
			}
			if p.body != string(testBody) {
				t.Errorf("body %q, want %q", p.body, testBody)
			}
			want := []struct {
				status transport.Status
				code   string
			}{{transport.Delivered, "2.0.0"}, {transport.Failed, "5.1.1"}, {transport.Deferred, "4.2.0"}}
			for i, w := range want {
				r := res.Recipients[i]
				if r.Status != w.status || r.Reply == nil || r.Reply.EnhancedCode.String() != w.code {
					t.Errorf("recipient %d: %v %v, want %v %s", i, r.Status, r.Reply, w.status, w.code)
				}
			}
		})
	}
}

// A refused MAIL, or every RCPT refused: the replies to the rest of the
// flight are read, and no message body follows a DATA that fails (RFC
// 2920 §3.1); a server that answers 354 without a recipient gets no body
// either.
func TestPipelinedRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, mail, rcpt, data string
		status                 transport.Status
		code                   string
	}{
		{"MAIL refused", "451 4.3.0 busy\r\n", "503 5.5.1 no MAIL\r\n", "503 5.5.1 no valid recipients\r\n", transport.Deferred, "4.3.0"},
		{"every RCPT refused", "250 OK\r\n", "550 5.1.1 unknown\r\n", "503 5.5.1 no valid recipients\r\n", transport.Failed, "5.1.1"},
		{"354 without a recipient", "250 OK\r\n", "550 5.1.1 unknown\r\n", "354 go ahead\r\n", transport.Failed, "5.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pipelinePeer{mail: tc.mail, rcpts: []string{tc.rcpt, tc.rcpt}, data: tc.data, final: "250 2.0.0 taken\r\n"}
			e := newEnv(t)
			e.single(p.start(t))
			res := deliver(t, e.connector(fixed(policy.May), nil), envelope("a@example.test", "b@example.test"))
			for i, r := range res.Recipients {
				if r.Status != tc.status || r.Reply == nil || r.Reply.EnhancedCode.String() != tc.code {
					t.Errorf("recipient %d: %v %v, want %v %s", i, r.Status, r.Reply, tc.status, tc.code)
				}
			}
			time.Sleep(50 * time.Millisecond)
			p.mu.Lock()
			defer p.mu.Unlock()
			if !p.complete {
				t.Fatal("not pipelined")
			}
			if p.body != "" {
				t.Errorf("a body was sent without an accepted recipient: %q", p.body)
			}
		})
	}
}

// A pooled session whose last transaction ended with its final reply is
// reused with no RSET (RFC 5321 §4.1.1.5): one connection, three
// messages, three MAIL commands and no RSET; with DisablePipelining every
// reuse sends RSET first, as before.
func TestPooledSessionNeedsNoRSET(t *testing.T) {
	for _, sequential := range []bool{false, true} {
		t.Run(fmt.Sprintf("DisablePipelining=%v", sequential), func(t *testing.T) {
			srv := transporttest.NewPlainServer(t)
			e := newEnv(t)
			e.single(srv.Addr)
			c := e.connector(fixed(policy.May), nil)
			c.Pool = transport.PoolConfig{MaxIdle: 1}
			c.DisablePipelining = sequential
			defer c.Close()
			for _, rcpt := range []string{"a@example.test", "b@example.test", "c@example.test"} {
				wantDelivered(t, deliver(t, c, envelope(rcpt)).Recipients[0])
			}
			seen := string(srv.Seen())
			wantRSET := 0
			if sequential {
				wantRSET = 2
			}
			if srv.Connections() != 1 || strings.Count(seen, "MAIL FROM") != 3 || strings.Count(seen, "RSET") != wantRSET {
				t.Errorf("%d connections, %d MAIL, %d RSET; want 1, 3, %d", srv.Connections(),
					strings.Count(seen, "MAIL FROM"), strings.Count(seen, "RSET"), wantRSET)
			}
		})
	}
}

// A pooled connection the server has given up on (it sent 421 and
// closed, RFC 5321 §3.8) is not written to: the next delivery dials
// again and gets through.
func TestPooledSessionClosedByServer(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	addr := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		mu.Lock()
		conns++
		mu.Unlock()
		c.Write([]byte("220 peer ESMTP\r\n"))
		for {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch f := strings.Fields(l); {
			case len(f) > 0 && f[0] == "EHLO":
				c.Write([]byte("250-peer\r\n250-PIPELINING\r\n250 CHUNKING\r\n"))
			case len(f) > 1 && f[0] == "BDAT":
				n, _ := strconv.Atoi(f[1])
				io.ReadFull(r, make([]byte, n))
				c.Write([]byte("250 OK\r\n250 OK\r\n250 2.0.0 taken\r\n"))
				// Then the server times the idle session out.
				time.Sleep(50 * time.Millisecond)
				c.Write([]byte("421 4.4.2 idle too long\r\n"))
				return
			case len(f) > 0 && f[0] == "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			}
		}
	})
	e := newEnv(t)
	e.single(addr)
	c := e.connector(fixed(policy.May), nil)
	c.Pool = transport.PoolConfig{MaxIdle: 1}
	defer c.Close()
	wantDelivered(t, deliver(t, c, envelope("a@example.test")).Recipients[0])
	time.Sleep(200 * time.Millisecond)
	wantDelivered(t, deliver(t, c, envelope("b@example.test")).Recipients[0])
	mu.Lock()
	defer mu.Unlock()
	if conns != 2 {
		t.Errorf("%d connections, want 2 (the closed one not reused)", conns)
	}
}
