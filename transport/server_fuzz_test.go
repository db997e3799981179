package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// refGoSMTP is go-smtp v0.25.1's dataReader state machine (data.go, MIT
// licence), byte at a time: it returns what go-smtp emits, the input index
// of each emitted byte, and the index just past the end-of-data marker, or
// -1.
func refGoSMTP(in []byte) (out []byte, pos []int, end int) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
	)
	state := stateBeginLine
	for i, c := range in {
		switch state {
		case stateBeginLine:
			if c == '.' {
				state = stateDot
				continue
			}
			if c == '\r' {
				state = stateCR
				break
			}
			state = stateData
		case stateDot:
			if c == '\r' {
				state = stateDotCR
				continue
			}
			state = stateData
		case stateDotCR:
			if c == '\n' {
				return out, pos, i + 1
			}
			state = stateData
		case stateCR:
			if c == '\n' {
				state = stateBeginLine
				break
			}
			state = stateData
		case stateData:
			if c == '\r' {
				state = stateCR
			}
		}
		out = append(out, c)
		pos = append(pos, i)
	}
	return out, pos, -1
}

// FuzzGoSMTPDot: the filter's copy of go-smtp's machine (goSMTPDot, which
// dotScan runs) emits and ends exactly as go-smtp does.
func FuzzGoSMTPDot(f *testing.F) {
	f.Add([]byte(".\r\n"))                       // empty message
	f.Add([]byte("a\r\n.\r\nMAIL FROM:<x>\r\n")) // pipelined after the end
	f.Add([]byte("a\r\n..\r\n.\r\n"))            // dot-stuffed line
	f.Add([]byte("a\n.\r\nb\r\n.\r\n"))          // bare LF does not start a line
	f.Add([]byte("x\r\n.\r\r\n.\r\n"))           // ".\r\r\n" is not the end
	f.Add([]byte("\r\r\n.\r\n"))                 // CR CR LF
	f.Fuzz(func(t *testing.T, data []byte) {
		wantOut, _, wantEnd := refGoSMTP(data)
		var s goSMTPDot
		var out []byte
		end := -1
		for i, c := range data {
			emit, eof := s.step(c)
			if eof {
				end = i + 1
				break
			}
			if emit {
				out = append(out, c)
			}
		}
		if end != wantEnd || !bytes.Equal(out, wantOut) {
			t.Fatalf("goSMTPDot: %q, end %d; go-smtp: %q, end %d", out, end, wantOut, wantEnd)
		}
	})
}

// refParseCmd is go-smtp v0.25.1's parseCmd (parse.go, MIT licence).
func refParseCmd(line string) (cmd string, arg string, err error) {
	line = strings.TrimRight(line, "\r\n")
	l := len(line)
	switch {
	case strings.HasPrefix(strings.ToUpper(line), "STARTTLS"):
		return "STARTTLS", "", nil
	case l == 0:
		return "", "", nil
	case l < 4:
		return "", "", fmt.Errorf("command too short: %q", line)
	case l == 4:
		return strings.ToUpper(line), "", nil
	case l == 5:
		return "", "", fmt.Errorf("mangled command: %q", line)
	}
	if line[4] != ' ' {
		return "", "", fmt.Errorf("mangled command: %q", line)
	}
	return strings.ToUpper(line[0:4]), strings.TrimSpace(line[5:]), nil
}

// FuzzParseCommandLine: the filter and go-smtp agree on every line's verb.
func FuzzParseCommandLine(f *testing.F) {
	for _, s := range []string{"MAIL FROM:<a@b>\r\n", "starttls\r\n", "STARTTLSX\r\n", "BDAT 10 LAST\r\n",
		"DATA\r\n", "NOOP\tx\r\n", "QUI\r\n", "ehlo  x\r\n", "\r\n", "AUTH",
		"ſtarttls\r\n", // U+017F upper-cases to S: go-smtp sees STARTTLS
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(strings.TrimRight(line, "\r\n"), "\n") {
			return // not one line
		}
		verb, arg := parseCommandLine([]byte(line))
		cmd, rarg, err := refParseCmd(line)
		if err != nil {
			cmd, rarg = "", ""
		}
		if verb != cmd || (verb != "STARTTLS" && arg != rarg) {
			t.Fatalf("%q: filter sees %q %q, go-smtp %q %q", line, verb, arg, cmd, rarg)
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
		CommandTimeout:      300 * time.Millisecond,
		TLSHandshakeTimeout: 200 * time.Millisecond,
		Inbound:             policy.Inbound{},
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

// FuzzRewritePostmaster: the RCPT postmaster rewrite never panics, changes
// only the bare "<postmaster>" path, and keeps the command a RCPT.
func FuzzRewritePostmaster(f *testing.F) {
	f.Add("RCPT TO:<postmaster>\r\n")               // the case RFC 5321 §4.5.1 requires
	f.Add("rcpt to: <PostMaster> NOTIFY=NEVER\r\n") // parameters kept
	f.Add("RCPT TO:<postmaster@example.org>\r\n")   // qualified: unchanged
	f.Add("RCPT TO:<postmaster")                    // truncated
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := rewritePostmaster([]byte(in), "mx.test")
		if !ok {
			if out != nil {
				t.Fatalf("%q: output %q without ok", in, out)
			}
			return
		}
		if len(out) != len(in)+len("@mx.test") {
			t.Fatalf("%q -> %q: length", in, out)
		}
		i := strings.Index(strings.ToLower(in), "<postmaster>")
		if i < 0 || string(out[:i]) != in[:i] || string(out[i:i+len("<postmaster@mx.test>")]) != "<postmaster@mx.test>" ||
			string(out[i+len("<postmaster@mx.test>"):]) != in[i+len("<postmaster>"):] {
			t.Fatalf("%q -> %q", in, out)
		}
		if v, _ := parseCommandLine(out); v != "RCPT" {
			t.Fatalf("%q -> %q: verb %q", in, out, v)
		}
	})
}
