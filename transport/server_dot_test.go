package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/policy"
)

// bodyAfterReceived returns the message body the Handler got, without the
// Received header the Server prepends.
func bodyAfterReceived(t *testing.T, body string) string {
	t.Helper()
	if !strings.HasPrefix(body, "Received: ") {
		t.Fatalf("no Received header: %q", body)
	}
	i := strings.Index(body, "\r\n") // the header's last line ends "; date\r\n"
	for i >= 0 && strings.HasPrefix(body[i+2:], "\t") {
		j := strings.Index(body[i+2:], "\r\n")
		i += 2 + j
	}
	return body[i+2:]
}

// TestDataEndAfterBareCR: a line ending in a bare CR followed by CRLF "."
// CRLF ends the message, and a dot-stuffed line after such a line is
// un-stuffed (RFC 5321 §4.5.2), with the exact bytes, in plaintext and
// under TLS; the Handler gets exactly the message, and the session goes on.
func TestDataEndAfterBareCR(t *testing.T) {
	cases := []struct{ name, sent, body string }{
		{"end after bare CR", "Subject: x\r\n\r\ntext\r\r\n.\r\n", "Subject: x\r\n\r\ntext\r\r\n"},
		{"stuffed line after bare CR", "Subject: x\r\n\r\ntext\r\r\n..dot\r\n.\r\n", "Subject: x\r\n\r\ntext\r\r\n.dot\r\n"},
		{"stuffed then end", "Subject: x\r\n\r\na\r\r\n..b\r\r\n.\r\n", "Subject: x\r\n\r\na\r\r\n.b\r\r\n"},
		{"several bare CRs", "Subject: x\r\n\r\na\r\r\r\r\n..\r\n.\r\n", "Subject: x\r\n\r\na\r\r\r\r\n.\r\n"},
		{"odd CRs (go-smtp sees it)", "Subject: x\r\n\r\na\r\r\r\n..b\r\n.\r\n", "Subject: x\r\n\r\na\r\r\r\n.b\r\n"},
		{"bare CR line only", "Subject: x\r\n\r\n\r\r\n.\r\n", "Subject: x\r\n\r\n\r\r\n"},
		{"dot CR inside", "Subject: x\r\n\r\na\r\r\n.\rb\r\n.\r\n", "Subject: x\r\n\r\na\r\r\n\rb\r\n"},
	}
	for _, mode := range []string{"plaintext", "tls"} {
		for _, c := range cases {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}, DataTimeout: 3 * time.Second}, newSrvPKI(t))
				d := dataDialogue(t, ts, mode)
				d.send(c.sent)
				if got := d.read(); !strings.HasPrefix(got, "250 ") {
					t.Fatalf("end of data: %q", got)
				}
				msgs := ts.rec.all()
				if len(msgs) != 1 {
					t.Fatalf("%d messages", len(msgs))
				}
				if got := bodyAfterReceived(t, msgs[0].body); got != c.body {
					t.Errorf("body %q, want %q", got, c.body)
				}
				// The session is in step: the next commands are commands.
				d.expect("NOOP", "250 ")
				d.expect("MAIL FROM:<a@example.org>", "250 ")
				d.expect("QUIT", "221 ")
			})
		}
	}
}

// TestDataEndAfterBareCRPipelined: commands pipelined in the same packet
// after such an end are commands in plaintext, where the filter sees the
// stream; under TLS go-smtp has already read them as message data, so the
// Server accepts the message, then closes with 421 rather than leave the
// client waiting for replies that cannot come.
func TestDataEndAfterBareCRPipelined(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}, DataTimeout: 3 * time.Second}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			d.send("Subject: x\r\n\r\ntext\r\r\n.\r\nNOOP\r\n")
			if got := d.read(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued") {
				t.Fatalf("end of data: %q", got)
			}
			got, err := d.tryRead()
			if mode == "plaintext" {
				if !strings.HasPrefix(got, "250 ") {
					t.Errorf("pipelined NOOP: %q %v", got, err)
				}
			} else if !strings.HasPrefix(got, "421 ") {
				t.Errorf("after a lost pipelined command: %q %v", got, err)
			}
			msgs := ts.rec.all()
			if len(msgs) != 1 || bodyAfterReceived(t, msgs[0].body) != "Subject: x\r\n\r\ntext\r\r\n" {
				t.Fatalf("messages %+v", msgs)
			}
		})
	}
}

// TestDataEndRefusedByHandler: when the Handler refuses the message without
// reading it, the Server still finds such an end of data, so the client gets
// the refusal instead of waiting for a timeout.
func TestDataEndRefusedByHandler(t *testing.T) {
	h := HandlerFunc(func(context.Context, *Envelope, io.Reader) error {
		return &Error{Code: 550, EnhancedCode: EnhancedCode{5, 7, 1}, Message: "No thanks"}
	})
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Handler: h, Inbound: policy.Inbound{InsecureAllowPlaintext: true}, DataTimeout: 3 * time.Second}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			d.send("Subject: x\r\n\r\n" + strings.Repeat("long line of text\r\n", 2000) + "text\r\r\n.\r\n")
			if got := d.read(); !strings.HasPrefix(got, "550 5.7.1 ") {
				t.Fatalf("end of data: %q", got)
			}
			d.expect("NOOP", "250 ")
		})
	}
}

// TestBDATBareCRUnchanged: BDAT chunks are not dot-stuffed (RFC 3030 §2),
// so the repair leaves them alone.
func TestBDATBareCRUnchanged(t *testing.T) {
	ts := startServer(t, &Server{}, newSrvPKI(t))
	d := tlsDialogue(t, ts)
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	chunk := "Subject: x\r\n\r\na\r\r\n.\r\n..b\r\n"
	d.send("BDAT " + strconv.Itoa(len(chunk)) + " LAST\r\n" + chunk)
	if got := d.read(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("BDAT: %q", got)
	}
	if got := bodyAfterReceived(t, ts.rec.all()[0].body); got != chunk {
		t.Errorf("body %q, want %q", got, chunk)
	}
}

// goSMTPCanary is a go-smtp Backend recording what Session.Data gets.
type goSMTPCanary struct {
	mu     sync.Mutex
	bodies []string
	types  []string
}

func (b *goSMTPCanary) NewSession(*smtp.Conn) (smtp.Session, error) { return &canarySession{b}, nil }

type canarySession struct{ b *goSMTPCanary }

func (s *canarySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *canarySession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *canarySession) Reset()                               {}
func (s *canarySession) Logout() error                        { return nil }
func (s *canarySession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	s.b.mu.Lock()
	s.b.bodies = append(s.b.bodies, string(body))
	s.b.types = append(s.b.types, reflect.TypeOf(r).String())
	s.b.mu.Unlock()
	return err
}

// TestGoSMTPDataReaderCanary pins the go-smtp behaviour the repair relies
// on. If it fails after a go-smtp upgrade, re-examine server_dot.go: go-smtp
// may have fixed its end of data after a bare CR (then the repair must go),
// or renamed the DATA reader (then the repair is off: see isDotStuffed).
func TestGoSMTPDataReaderCanary(t *testing.T) {
	b := &goSMTPCanary{}
	e := smtp.NewServer(b)
	e.Domain = "canary.test"
	e.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Serve(l)
	defer e.Close()
	d := dial(t, l.Addr().String())
	d.greet()
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	d.expect("DATA", "354 ")
	// go-smtp misses the line start after "\r\r\n": it keeps both dots of
	// "..b" and ends only at the next CRLF "." CRLF.
	d.send("a\r\r\n..b\r\n.\r\n")
	if got := d.read(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA: %q", got)
	}
	d.expect("MAIL FROM:<a@example.org>", "250 ")
	d.expect("RCPT TO:<b@example.net>", "250 ")
	d.send("BDAT 3 LAST\r\nxyz")
	if got := d.read(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("BDAT: %q", got)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.bodies) != 2 || b.bodies[0] != "a\r\r\n..b\r\n" {
		t.Errorf("go-smtp's DATA output changed: %q (was \"a\\r\\r\\n..b\\r\\n\")", b.bodies)
	}
	if len(b.types) != 2 || b.types[0] != goSMTPDataReaderType || b.types[1] == goSMTPDataReaderType {
		t.Errorf("go-smtp's readers are %q; DATA's was %q", b.types, goSMTPDataReaderType)
	}
}

// FuzzDotRepair: for what a conforming client sends (no line starting
// ".\r" other than the end marker), go-smtp's output repaired is exactly the
// message and end of RFC 5321 §4.5.2; for any input, the plaintext filter
// (dotScan) ends where go-smtp and the repair end, however it is split.
func FuzzDotRepair(f *testing.F) {
	f.Add([]byte("text\r\r\n.\r\n"))
	f.Add([]byte("a\r\r\n..b\r\n.\r\n"))
	f.Add([]byte(".\r\r\r\n..\r\n.\r\n")) // non-conforming: read as "\r\r\n", ends early
	f.Add([]byte("a\r\r\r\n..\r\n.\r\n"))
	f.Add([]byte("\r\r\n.\rX\r\n.\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rfcBody, rfcEnd := rfcDotDecode(in)
		gsOut, gsPos, gsEnd := refGoSMTP(in)
		var d dotRepair
		body, end, used := repairAll(&d, gsOut, 5)
		fixEnd := -1
		if end {
			fixEnd = gsPos[used-1] + 1
		} else if gsEnd >= 0 {
			fixEnd = gsEnd
		}
		if conforming(in) {
			if fixEnd != rfcEnd {
				t.Fatalf("conforming input: end %d, RFC 5321 %d: %q", fixEnd, rfcEnd, in)
			}
			if fixEnd >= 0 && !bytes.Equal(body, rfcBody) {
				t.Fatalf("conforming input: body %q, RFC 5321 %q: %q", body, rfcBody, in)
			}
		}
		// The plaintext filter ends where go-smtp and the repair end,
		// however the input is split.
		for split := 1; split <= 7; split += 3 {
			var s dotScan
			got := -1
			for pos := 0; pos < len(in); {
				n, done := s.scan(in[pos:min(pos+split, len(in))])
				if done {
					got = pos + n
					break
				}
				pos += n
			}
			if got != fixEnd {
				t.Fatalf("dotScan ends at %d, go-smtp with repair at %d (split %d): %q", got, fixEnd, split, in)
			}
		}
	})
}

// TestDotRepairTable: the repair on go-smtp output, byte-exact.
func TestDotRepairTable(t *testing.T) {
	for _, c := range []struct {
		gsOut, body string
		end         bool
	}{
		{"text\r\r\n.\r\n", "text\r\r\n", true},
		{"text\r\r\n..x\r\n", "text\r\r\n.x\r\n", false},
		{"text\r\r\n.x\r\n", "text\r\r\nx\r\n", false},
		{"text\r\r\n.\rx", "text\r\r\n\rx", false},
		{"text\r\n.x\r\n", "text\r\n.x\r\n", false}, // go-smtp already un-stuffed this line
		{"text\r\n.\r\n", "text\r\n.\r\n", false},   // ... and this one ("..\r\n")
		{"\r\n.\r\n", "\r\n.\r\n", false},           // go-smtp saw the line start
		{"\r\r\n.\r\n", "\r\r\n", true},             // an empty line ending in a bare CR
		{"x\r\r\r\n.\r\n", "x\r\r\r\n.\r\n", false}, // odd CRs: go-smtp saw the line start
		{"x\r\r\r\r\n.\r\n", "x\r\r\r\r\n", true},   // even CRs: it did not
		{"x\r\r\nab\r\r\n.\r\n", "x\r\r\nab\r\r\n", true},
	} {
		var d dotRepair
		body, end, _ := repairAll(&d, []byte(c.gsOut), 1)
		if string(body) != c.body || end != c.end {
			t.Errorf("repair(%q) = %q, %v; want %q, %v", c.gsOut, body, end, c.body, c.end)
		}
	}
}

// repairAll runs d over src in pieces of at most step bytes, as bodyReader
// does, and returns the message bytes, whether it ended, and how many bytes
// of src it read up to the end.
func repairAll(d *dotRepair, src []byte, step int) (body []byte, end bool, used int) {
	for pos := 0; pos < len(src); {
		n := min(step, len(src)-pos)
		h := d.held()
		buf := make([]byte, h+n)
		copy(buf[h:], src[pos:pos+n])
		m, e, u := d.repairInPlace(buf, h, n)
		body = append(body, buf[:m]...)
		if e {
			return body, true, pos + u
		}
		pos += n
	}
	return body, false, len(src)
}

// rfcDotDecode reads DATA as RFC 5321 §4.5.2 says: lines end in CRLF; a
// line "." ends the data; a leading dot of any other line is removed. It
// returns the message and the index just past the end marker, or -1.
func rfcDotDecode(in []byte) ([]byte, int) {
	var out []byte
	for pos := 0; pos < len(in); {
		i := bytes.Index(in[pos:], []byte("\r\n"))
		if i < 0 {
			return out, -1
		}
		line := in[pos : pos+i+2]
		if string(line) == ".\r\n" {
			return out, pos + 3
		}
		if line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
		pos += i + 2
	}
	return out, -1
}

// conforming reports whether no line of in (up to the end marker) starts
// with ".\r" other than the end marker itself.
func conforming(in []byte) bool {
	for pos := 0; pos < len(in); {
		if bytes.HasPrefix(in[pos:], []byte(".\r\n")) {
			return true
		}
		if bytes.HasPrefix(in[pos:], []byte(".\r")) {
			return false
		}
		i := bytes.Index(in[pos:], []byte("\r\n"))
		if i < 0 {
			return true
		}
		pos += i + 2
	}
	return true
}

// TestDataEndOneByteReads: a Handler reading one byte at a time gets the
// same repaired message, a held-back CR included.
func TestDataEndOneByteReads(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := HandlerFunc(func(_ context.Context, _ *Envelope, body io.Reader) error {
		b, err := io.ReadAll(iotest.OneByteReader(body))
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		return err
	})
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Handler: h, Inbound: policy.Inbound{InsecureAllowPlaintext: true}, DataTimeout: 3 * time.Second}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			d.send("Subject: x\r\n\r\na\r\r\n.\rb\r\r\n..c\r\r\n.\r\n")
			if r := d.read(); !strings.HasPrefix(r, "250 ") {
				t.Fatalf("end of data: %q", r)
			}
			mu.Lock()
			last := got[len(got)-1]
			mu.Unlock()
			if want := "Subject: x\r\n\r\na\r\r\n\rb\r\r\n.c\r\r\n"; bodyAfterReceived(t, last) != want {
				t.Errorf("body %q, want %q", bodyAfterReceived(t, last), want)
			}
			d.expect("NOOP", "250 ")
		})
	}
}

// TestDataEndTooLargeAfterBareCR: the documented limit. A message over
// MaxMessageBytes is drained by go-smtp alone, which misses an end of data
// after a bare CR; the client still gets its 552 once ReadTimeout passes,
// and the connection then closes.
func TestDataEndTooLargeAfterBareCR(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{MaxMessageBytes: 100, ReadTimeout: 300 * time.Millisecond, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			start := time.Now()
			d.send(strings.Repeat("x", 200) + "\r\ntext\r\r\n.\r\n")
			if got := d.read(); !strings.HasPrefix(got, "552 5.3.4 ") {
				t.Fatalf("end of data: %q", got)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("552 after %v", el)
			}
			if got, err := d.tryRead(); err == nil && !strings.HasPrefix(got, "421 ") {
				t.Errorf("after the 552: %q", got)
			}
		})
	}
}
