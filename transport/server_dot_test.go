package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

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
				ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}, Timeouts: ServerTimeouts{Data: 3 * time.Second}}, newSrvPKI(t))
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
// (or TLS record) after such an end are commands (RFC 2920), in plaintext
// and under TLS.
func TestDataEndAfterBareCRPipelined(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{Inbound: policy.Inbound{InsecureAllowPlaintext: true}, Timeouts: ServerTimeouts{Data: 3 * time.Second}}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			d.send("Subject: x\r\n\r\ntext\r\r\n.\r\nNOOP\r\n")
			if got := d.read(); !strings.HasPrefix(got, "250 2.0.0 Ok: queued") {
				t.Fatalf("end of data: %q", got)
			}
			if got, err := d.tryRead(); !strings.HasPrefix(got, "250 ") {
				t.Errorf("pipelined NOOP: %q %v", got, err)
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
			ts := startServer(t, &Server{Handler: h, Inbound: policy.Inbound{InsecureAllowPlaintext: true}, Timeouts: ServerTimeouts{Data: 3 * time.Second}}, newSrvPKI(t))
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

// FuzzDataReader: for any input, however it arrives and however the
// Handler reads, the DATA reader returns exactly the message and end of
// RFC 5321 §4.5.2 (rfcDotDecode) and reads nothing after the end marker.
func FuzzDataReader(f *testing.F) {
	f.Add([]byte("text\r\r\n.\r\n"), uint8(3), uint8(5))
	f.Add([]byte("a\r\r\n..b\r\n.\r\n"), uint8(1), uint8(1))
	f.Add([]byte(".\r\r\r\n..\r\n.\r\n"), uint8(2), uint8(1))
	f.Add([]byte("a\r\r\r\n..\r\n.\r\n"), uint8(7), uint8(2))
	f.Add([]byte("\r\r\n.\rX\r\n.\r\nMAIL FROM:<x>\r\n"), uint8(4), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, split, readSize uint8) {
		wantBody, wantEnd := rfcDotDecode(in)
		src := bufio.NewReaderSize(&chunkReader{b: in, n: int(split%16) + 1}, 16)
		dr := newDataReader(src, 1<<20, 0)
		var body []byte
		buf := make([]byte, int(readSize%9)+1)
		var err error
		for {
			var n int
			n, err = dr.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		if wantEnd < 0 {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%q: no end marker, got %v", in, err)
			}
			return
		}
		if err != io.EOF || !bytes.Equal(body, wantBody) {
			t.Fatalf("%q: body %q (%v), RFC 5321 %q", in, body, err, wantBody)
		}
		rest, _ := io.ReadAll(src)
		if !bytes.Equal(rest, in[wantEnd:]) {
			t.Fatalf("%q: left %q after the end, want %q", in, rest, in[wantEnd:])
		}
	})
}

// chunkReader returns b in reads of at most n bytes, or, when sizes is
// set, of the sizes in sizes in turn (cycling); then err (io.EOF if nil).
// onRead, if set, is called before each read.
type chunkReader struct {
	b      []byte
	n      int
	sizes  []int
	i      int
	err    error
	onRead func()
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.onRead != nil {
		r.onRead()
	}
	if len(r.b) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	size := r.n
	if len(r.sizes) > 0 {
		size = r.sizes[r.i%len(r.sizes)]
		r.i++
	}
	n := copy(p[:min(len(p), max(1, size))], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestDataReaderTable: the DATA reader, byte-exact, including the ends
// after a bare CR that net/textproto's reading misses.
func TestDataReaderTable(t *testing.T) {
	for _, c := range []struct {
		in, body string
		end      bool
	}{
		{"text\r\r\n.\r\n", "text\r\r\n", true},
		{"text\r\r\n..x\r\n.\r\n", "text\r\r\n.x\r\n", true},
		{"text\r\r\n.x\r\n.\r\n", "text\r\r\nx\r\n", true},
		{"text\r\r\n.\rx\r\n.\r\n", "text\r\r\n\rx\r\n", true},
		{"text\r\n..x\r\n.\r\n", "text\r\n.x\r\n", true},
		{"\r\r\n.\r\n", "\r\r\n", true}, // an empty line ending in a bare CR
		{"x\r\r\r\n.\r\n", "x\r\r\r\n", true},
		{"x\r\r\r\r\n.\r\n", "x\r\r\r\r\n", true},
		{"x\r\r\nab\r\r\n.\r\n", "x\r\r\nab\r\r\n", true},
		{"a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", true}, // a bare LF ends no line
		{"x\r\n.\r\r\n.\r\n", "x\r\n\r\r\n", true},    // ".\r\r\n" is no end marker
		{"x\r\n.", "x\r\n", false},
	} {
		dr := newDataReader(bufio.NewReader(strings.NewReader(c.in)), 1<<20, 0)
		body, err := io.ReadAll(iotest.OneByteReader(dr))
		if string(body) != c.body || (err == nil) != c.end {
			t.Errorf("read(%q) = %q, %v; want %q, end %v", c.in, body, err, c.body, c.end)
		}
	}
}

// TestDataReaderLimits: over MaxMessageBytes or MaxLineLength the reader
// fails, and drain still finds the end marker and nothing after it.
func TestDataReaderLimits(t *testing.T) {
	for _, c := range []struct {
		name, in string
		maxBytes int64
		maxLine  int
		wantErr  error
		wantBody string
	}{
		{"size exact", "12345678\r\n.\r\nNOOP\r\n", 10, 0, nil, "12345678\r\n"},
		{"size over", "123456789\r\n.\r\nNOOP\r\n", 10, 0, errDataTooLarge, ""},
		{"line exact", "1234\r\n.\r\nNOOP\r\n", 100, 6, nil, "1234\r\n"},
		{"line over", "12345\r\nab\r\r\n.\r\nNOOP\r\n", 100, 6, errLineTooLong, ""},
		{"line over before the end", "a\r\n" + strings.Repeat(".", 9) + "\r\n.\r\nNOOP\r\n", 100, 6, errLineTooLong, ""},
	} {
		src := bufio.NewReader(strings.NewReader(c.in))
		dr := newDataReader(src, c.maxBytes, c.maxLine)
		body, err := io.ReadAll(dr)
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil && string(body) != c.wantBody) {
			t.Errorf("%s: %q, %v; want %q, %v", c.name, body, err, c.wantBody, c.wantErr)
		}
		if err := dr.drain(); err != nil {
			t.Errorf("%s: drain: %v", c.name, err)
		}
		if rest, _ := io.ReadAll(src); string(rest) != "NOOP\r\n" {
			t.Errorf("%s: after the data: %q", c.name, rest)
		}
	}
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
			ts := startServer(t, &Server{Handler: h, Inbound: policy.Inbound{InsecureAllowPlaintext: true}, Timeouts: ServerTimeouts{Data: 3 * time.Second}}, newSrvPKI(t))
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

// TestDataEndTooLargeAfterBareCR: a message over MaxMessageBytes is read on
// to its end, also after a bare CR, and the client gets its 552 at once,
// well before Timeouts.Read; the session goes on.
func TestDataEndTooLargeAfterBareCR(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{MaxMessageBytes: 100, Timeouts: ServerTimeouts{Read: 300 * time.Millisecond}, Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			d := dataDialogue(t, ts, mode)
			start := time.Now()
			d.send(strings.Repeat("x", 200) + "\r\ntext\r\r\n.\r\n")
			if got := d.read(); !strings.HasPrefix(got, "552 5.3.4 ") {
				t.Fatalf("end of data: %q", got)
			}
			if el := time.Since(start); el > 200*time.Millisecond {
				t.Errorf("552 after %v", el)
			}
			d.expect("NOOP", "250 ")
		})
	}
}
