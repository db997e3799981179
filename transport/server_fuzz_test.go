package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/lineartest"
	"github.com/mailtls/mailtls/policy"
)

// FuzzParseCommand: whatever the line, a command has a verb of ASCII
// letters in upper case, and the line is that verb, then a space and the
// argument (spaces around it trimmed), in any case.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"MAIL FROM:<a@b>", "starttls", "STARTTLSX", "BDAT 10 LAST",
		"DATA", "NOOP\tx", "QUI", "ehlo  x ", "", "AUTH", " NOOP",
		"\u017ftarttls", // U+017F upper-cases to S in Unicode: no verb here
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg, ok := parseCommand(line)
		if !ok {
			if verb != "" || arg != "" {
				t.Fatalf("%q: not a command, but %q %q", line, verb, arg)
			}
			return
		}
		for i := 0; i < len(verb); i++ {
			if verb[i] < 'A' || verb[i] > 'Z' {
				t.Fatalf("%q: verb %q", line, verb)
			}
		}
		if !strings.EqualFold(line[:len(verb)], verb) || (len(line) > len(verb) && line[len(verb)] != ' ') ||
			arg != strings.TrimSpace(line[min(len(line), len(verb)+1):]) {
			t.Fatalf("%q: verb %q, arg %q", line, verb, arg)
		}
	})
}

// FuzzParseBcryptTable: the users file parser never panics and names the
// line of every error.
func FuzzParseBcryptTable(f *testing.F) {
	f.Add("# comment\n\nalice:$2a$04$abcdefghijklmnopqrstuu5Mm4aPgXXL1gpm7QP6mUqLG/mlX0tfa\n")
	f.Add("nocolon\n")
	f.Add(":$2a$04$x\n")
	f.Add("a:b\na:b\n")
	f.Add(strings.Repeat("x", 70000))
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := ParseBcryptTable("users", strings.NewReader(in))
		if err != nil {
			if !strings.Contains(err.Error(), "users line ") {
				t.Fatalf("error without line number: %v", err)
			}
			return
		}
		if err := tab.Authenticate(context.Background(), "\x00no such user", "x"); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("unknown user: %v", err)
		}
	})
}

// FuzzReceivedHeader: whatever the client calls itself or its recipient,
// the trace header stays one header: CRLF only before a TAB continuation,
// no bare CR or LF, balanced comment parentheses.
func FuzzReceivedHeader(f *testing.F) {
	f.Add("client.test", "r@example.net", "CN=x")
	f.Add("evil\r\nX-Injected: 1", "a\rb@c", "CN=(x))")
	f.Add("(", ")", "\\")
	f.Fuzz(func(t *testing.T, helo, rcpt, subject string) {
		env := &Envelope{ID: "ID", Helo: helo, Recipients: []Recipient{{Address: rcpt}},
			ClientAddr: &net.TCPAddr{IP: net.IPv6loopback, Port: 25},
			TLS:        &TLSInfo{Version: 0x0304, CipherSuite: 0x1301, PeerSubject: subject},
			ReceivedAt: time.Unix(0, 0).UTC()}
		h := receivedHeader("mx.test", env, "")
		if !strings.HasPrefix(h, "Received: ") || !strings.HasSuffix(h, "\r\n") {
			t.Fatalf("header %q", h)
		}
		for i, line := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("bare CR/LF in %q", line)
			}
			if i > 0 && !strings.HasPrefix(line, "\t") {
				t.Fatalf("line %d not a continuation: %q", i, line)
			}
		}
		if strings.Count(h, "(") != strings.Count(h, ")") {
			t.Fatalf("unbalanced comments: %q", h)
		}
	})
}

// pipeListener hands out in-memory connections to a Server.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}
func (p *pipeListener) Close() error   { p.once.Do(func() { close(p.done) }); return nil }
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// FuzzPlaintextRequireTLS: with the zero Inbound policy, no plaintext byte
// stream gets a transaction started: no MAIL is accepted, DATA never gets
// 354, AUTH never 334/235, and the Handler is never called.
func FuzzPlaintextRequireTLS(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n",
		"HELO x\r\nBDAT 5 LAST\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3 LAST\r\nabc",
		"EHLO x\r\n" + strings.Repeat("A", 5000) + "\r\nMAIL FROM:<a@b>\r\n",
		"EHLO x\r\nAUTH PLAIN AGEAYg==\r\nAUTH LOGIN\r\nYQ==\r\n",
		"EHLO x\r\nmail from:<a@b> REQUIRETLS\r\nRSET\r\nNOOP\r\nVRFY x\r\n",
		"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\n",
	} {
		f.Add([]byte(s))
	}
	var calls atomic.Int64
	pki := newSrvPKI(f)
	s := &Server{
		Hostname:  "mx.test",
		TLSConfig: pki.serverConfig(),
		Handler: HandlerFunc(func(context.Context, *Envelope, io.Reader) error {
			calls.Add(1)
			return nil
		}),
		Authenticator: AuthenticatorFunc(func(context.Context, string, string) error { return nil }),
		// Short timeouts keep each execution short: an input that leaves
		// the server waiting (a BDAT chunk never sent) costs one of them,
		// and the fuzzer runs it many times while minimizing.
		Timeouts: ServerTimeouts{Command: 300 * time.Millisecond, TLSHandshake: 200 * time.Millisecond},
		Inbound:  policy.Inbound{},
	}
	pl := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go s.Serve(pl)
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		defer client.Close()
		select {
		case pl.conns <- server:
		case <-time.After(5 * time.Second):
			t.Fatal("server not accepting")
		}
		go func() {
			client.SetWriteDeadline(time.Now().Add(time.Second))
			client.Write(in)
			client.Write([]byte("\r\nQUIT\r\n"))
		}()
		client.SetReadDeadline(time.Now().Add(time.Second))
		r := bufio.NewReader(client)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			for _, bad := range []string{"354", "334", "235", "250 2.0.0 Roger", "250 2.0.0 Ok: queued"} {
				if strings.HasPrefix(line, bad) {
					t.Fatalf("plaintext input %q got %q", in, line)
				}
			}
			if strings.HasPrefix(line, "220 2.0.0 Ready to start TLS") {
				break // the rest of the input is discarded, then a handshake fails
			}
		}
		if n := calls.Load(); n != 0 {
			t.Fatalf("handler called %d times", n)
		}
	})
}

// FuzzTLSRequiredScan: the header scan passes the body through unchanged
// and reaches the same verdict however the stream is split into reads.
func FuzzTLSRequiredScan(f *testing.F) {
	f.Add("TLS-Required: No\r\n\r\nbody", 1)
	f.Add("A: b\r\n TLS-Required: No\r\n\r\n", 2) // a continuation line, not a field
	f.Add("TLS-Required:\r\n\tNo\r\n\r\n", 3)     // folded
	f.Add("\r\n\r\nTLS-Required: No\r\n", 5)      // empty header section
	f.Fuzz(func(t *testing.T, msg string, step int) {
		step = (step%97+97)%97 + 1
		var verdict []bool
		for _, st := range []int{step, len(msg) + 1} {
			env := &Envelope{}
			b := &bodyReader{r: &slowReader{s: msg, step: st}, env: env}
			out, err := io.ReadAll(b)
			if err != nil || string(out) != msg {
				t.Fatalf("body changed: %q -> %q (%v)", msg, out, err)
			}
			verdict = append(verdict, env.TLSRequiredNo)
		}
		if verdict[0] != verdict[1] {
			t.Fatalf("%q: verdict depends on read size %d", msg, step)
		}
	})
}

// TestHeaderScanLinear: the TLS-Required scan costs time in proportion to
// the header, however it arrives. The scan searched the whole header kept
// so far for its end at every read (a client sending it a byte at a time,
// BDAT 1 pipelined, made 60 KiB cost 0.2 s), and unfolded a TLS-Required
// field by adding each continuation line to a string. The header stays
// under maxScannedHeader, past which the scan stops.
func TestHeaderScanLinear(t *testing.T) {
	header := func(size int) string { return strings.Repeat("A: b\r\n", size/6) + "\r\nbody" }
	folded := func(size int) []byte {
		return []byte("TLS-Required: x" + strings.Repeat("\r\n y", size/4) + "\r\n\r\n")
	}
	t.Run("a byte a read", func(t *testing.T) {
		lineartest.Check(t, 4<<10, 14, func(size int) {
			b := &bodyReader{r: &slowReader{s: header(size), step: 1}, env: &Envelope{}}
			if _, err := io.Copy(io.Discard, struct{ io.Reader }{b}); err != nil || !b.hdrDone {
				t.Fatalf("scan: %v, done %v", err, b.hdrDone)
			}
		})
	})
	t.Run("a folded TLS-Required field", func(t *testing.T) {
		lineartest.Check(t, 4<<10, 14, func(size int) {
			if tlsRequiredNo(folded(size)) {
				t.Fatal(`"x y y…" read as "No"`)
			}
		})
	})
}

// FuzzParseForwardPath: the RCPT path parser never panics, turns only a
// bare "<postmaster>" (RFC 5321 §4.5.1) into postmaster@Hostname, and
// otherwise returns a mailbox with a local part and a domain, or an error.
func FuzzParseForwardPath(f *testing.F) {
	f.Add("<postmaster>")                // the case RFC 5321 §4.5.1 requires
	f.Add(" <PostMaster> NOTIFY=NEVER")  // parameters kept
	f.Add("<postmaster@example.org>")    // qualified: as is
	f.Add("<postmaster")                 // truncated
	f.Add("<@a,@b:\"x y\"@example.org>") // source route, quoted local part
	f.Fuzz(func(t *testing.T, in string) {
		addr, rest, err := parseForwardPath(in, "mx.test")
		trimmed := strings.TrimLeft(in, " ")
		if len(trimmed) >= len("<postmaster>") && strings.EqualFold(trimmed[:len("<postmaster>")], "<postmaster>") {
			if err != nil || addr != "postmaster@mx.test" || rest != trimmed[len("<postmaster>"):] {
				t.Fatalf("%q: %q %q %v", in, addr, rest, err)
			}
			return
		}
		if err != nil {
			return
		}
		at := strings.LastIndexByte(addr, '@')
		if at <= 0 || at == len(addr)-1 || !strings.HasSuffix(in, rest) {
			t.Fatalf("%q: mailbox %q, rest %q", in, addr, rest)
		}
	})
}
