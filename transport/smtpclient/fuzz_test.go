package smtpclient

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailtls/mailtls/internal/lineartest"
)

// FuzzClientReply feeds arbitrary server output to the reply reader, the EHLO
// parser and the enhanced-code splitter: none may panic, and what they
// accept must be consistent.
func FuzzClientReply(f *testing.F) {
	f.Add("250-mx.example.test\r\n250-STARTTLS\r\n250-SIZE 1000\r\n250 DSN\r\n")
	f.Add("220 mx ESMTP\r\n")
	f.Add("250\r\n")                                   // bare code
	f.Add("250-a\r\n251 b\r\n")                        // code changes mid-reply
	f.Add("550 5.1.1 no such user\r\n")                // enhanced code
	f.Add("450-4.2.1 busy\r\n450 4.2.1 try later\r\n") // enhanced code on every line
	f.Add("2500 x\r\n")                                // bad separator
	f.Add("-12 x\r\n")                                 // sign in the code
	f.Add("250-x\r\n250-  \r\n250 -bad\r\n")           // empty and invalid keywords
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ReadReply(textproto.NewReader(bufio.NewReader(strings.NewReader(in))))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 {
			t.Fatalf("accepted reply %+v", r)
		}
		ext := ParseEHLO(r.Lines)
		for k := range ext {
			if k != strings.ToUpper(k) || !validKeyword(k) {
				t.Fatalf("bad keyword %q", k)
			}
		}
		if ec, _ := r.Enhanced(); ec != (EnhancedCode{}) {
			if _, err := ParseEnhancedCode(ec.String()); err != nil {
				t.Fatalf("accepted bad enhanced code %v", ec)
			}
		}
	})
}

// FuzzClientXtext checks that xtext output is pure printable ASCII without "+"
// or "=" other than as escapes (RFC 3461 §4).
func FuzzClientXtext(f *testing.F) {
	f.Add("rfc822;user@example.com")
	f.Add("a+b=c d\x00é")
	f.Fuzz(func(t *testing.T, s string) {
		x := XText(s)
		for i := 0; i < len(x); i++ {
			c := x[i]
			if c < '!' || c > '~' || c == '=' {
				t.Fatalf("XText(%q) = %q has %q", s, x, c)
			}
			if c == '+' && (i+2 >= len(x) || !isHex(x[i+1]) || !isHex(x[i+2])) {
				t.Fatalf("XText(%q) = %q: bad escape", s, x)
			}
		}
	})
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func TestParseEHLO(t *testing.T) {
	ext := ParseEHLO([]string{"mx.example.test greets you", "STARTTLS", "size 35882577", "AUTH PLAIN LOGIN", "8BITMIME", "-bad", ""})
	want := map[string]string{"STARTTLS": "", "SIZE": "35882577", "AUTH": "PLAIN LOGIN", "8BITMIME": ""}
	if len(ext) != len(want) {
		t.Fatalf("got %v", ext)
	}
	for k, v := range want {
		if got, ok := ext[k]; !ok || got != v {
			t.Errorf("%s = %q, %v", k, got, ok)
		}
	}
	// The greeting line is never an extension, even if it says STARTTLS.
	if _, ok := ParseEHLO([]string{"STARTTLS"})["STARTTLS"]; ok {
		t.Error("greeting line parsed as an extension")
	}
}

// referenceData is dataWriter's output computed on the whole message at
// once: every CRLF, bare CR and bare LF becomes CRLF, the last line is
// ended, lines starting with "." get one more, then "." CRLF.
func referenceData(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	msg = strings.ReplaceAll(msg, "\r", "\n")
	if msg != "" && !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(msg, "\n") {
		if l == "" {
			continue
		}
		if l[0] == '.' {
			b.WriteByte('.')
		}
		b.WriteString(strings.TrimSuffix(l, "\n") + "\r\n")
	}
	b.WriteString(".\r\n")
	return b.String()
}

// writeChunked writes msg through a dataWriter in pieces whose lengths
// come from cuts (each byte a length, 0 meaning 1), then closes it.
func writeChunked(t *testing.T, msg string, cuts []byte) string {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16)
	w := &dataWriter{w: bw, stuff: true}
	for i := 0; msg != ""; i++ {
		n := len(msg)
		if len(cuts) > 0 {
			n = min(max(int(cuts[i%len(cuts)]), 1), len(msg))
		}
		if k, err := w.Write([]byte(msg[:n])); k != n || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		msg = msg[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// The DATA writer normalises line ends and dot-stuffs the same whatever the
// sizes of the writes (a CR ending one write and an LF starting the next
// are one CRLF).
func TestDataWriterChunks(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a\r.\rb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{".\rc", "..\r\nc\r\n.\r\n"},
		{"\r\n.\r\n", "\r\n..\r\n.\r\n"},
		{"x\r", "x\r\n.\r\n"},
		{"x\r\r\n", "x\r\n\r\n.\r\n"},
		{"x\n\r", "x\r\n\r\n.\r\n"},
		{"..", "...\r\n.\r\n"},
	}
	for _, tt := range tests {
		for _, cuts := range [][]byte{nil, {1}, {2}, {3, 1}} {
			if got := writeChunked(t, tt.in, cuts); got != tt.want {
				t.Errorf("%q in pieces %v: got %q, want %q", tt.in, cuts, got, tt.want)
			}
		}
		if ref := referenceData(tt.in); ref != tt.want {
			t.Errorf("reference(%q) = %q, want %q", tt.in, ref, tt.want)
		}
	}
}

// FuzzDataWriter compares the streaming DATA writer, fed in arbitrary
// pieces, with referenceData on the whole message.
func FuzzDataWriter(f *testing.F) {
	f.Add("a\r.\rb\r\n", []byte{1})       // the bare CR around a dot
	f.Add(".\rc\r\n", []byte{1, 2})       // dot CR at the start of a line
	f.Add("x\r\ny", []byte{2})            // CRLF split between writes
	f.Add("\r\r\n\n\r.", []byte{})        // every kind of line end
	f.Add("..\r\n.\r\n.", []byte{3, 250}) // stuffing
	f.Fuzz(func(t *testing.T, msg string, cuts []byte) {
		if got, want := writeChunked(t, msg, cuts), referenceData(msg); got != want {
			t.Fatalf("writer %q, reference %q", got, want)
		}
	})
}

// FuzzCRLFSize: the size CRLFSize announces is the size of what Pipeline
// sends after BDAT, and that content has every line ended by CRLF, no
// bare CR or LF, and is not dot-stuffed (RFC 3030 §2).
func FuzzCRLFSize(f *testing.F) {
	for _, s := range []string{"", "a", "a\r", "a\n", "a\r\n.b\r\n", "\r\r\n\n", ".\r.\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		n, err := CRLFSize(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		d := &dataWriter{w: bw}
		d.Write([]byte(body))
		d.endLine()
		bw.Flush()
		got := out.String()
		if int64(len(got)) != n {
			t.Fatalf("CRLFSize %d, content %d bytes", n, len(got))
		}
		if body != "" && !strings.HasSuffix(got, "\r\n") {
			t.Fatalf("content %q does not end with CRLF", got)
		}
		if strings.Count(got, "\r") != strings.Count(got, "\n") || strings.Count(got, "\r\n") != strings.Count(got, "\n") {
			t.Fatalf("bare CR or LF in %q", got)
		}
		if want := strings.Count(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\r", "\n"), "."); strings.Count(got, ".") != want {
			t.Fatalf("dots changed: %q from %q", got, body)
		}
	})
}

// BenchmarkDataWriter writes a 100 KiB message of 78-byte CRLF lines as
// BDAT content (line ends only) and measures CRLFSize on it.
func BenchmarkDataWriter(b *testing.B) {
	line := strings.Repeat("x", 76) + "\r\n"
	msg := []byte(strings.Repeat(line, 100<<10/len(line)))
	b.Run("bdat", func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 4096)
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			d := &dataWriter{w: bw}
			d.Write(msg)
			d.endLine()
		}
	})
	b.Run("crlfsize", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			CRLFSize(bytes.NewReader(msg))
		}
	})
}

// dataWriter.ReadFrom, which io.Copy uses for readers without WriteTo,
// and WriteString, which a strings.Reader's WriteTo calls, write what
// Write does, whatever the sizes of the reads, also across their 32 KiB
// buffer (a CR ending one piece, its LF starting the next), and ReadFrom
// passes a read error on.
func TestDataWriterReadFrom(t *testing.T) {
	big := strings.Repeat("y", 32<<10-1) + "\r\n." + strings.Repeat("z", 40<<10) + "\r"
	for _, in := range []string{"", "a", "a\r.\rb\r\n", ".\rc", "x\n\r", big} {
		for name, r := range map[string]io.Reader{
			"section": io.NewSectionReader(strings.NewReader(in), 0, int64(len(in))),
			"string":  strings.NewReader(in), // WriteTo: dataWriter.WriteString
			"half":    iotest.HalfReader(strings.NewReader(in)),
			"onebyte": iotest.OneByteReader(strings.NewReader(in)),
		} {
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			d := &dataWriter{w: bw, stuff: true}
			n, err := io.Copy(d, r)
			if err != nil || n != int64(len(in)) {
				t.Fatalf("%s: io.Copy = %d, %v; want %d", name, n, err, len(in))
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := out.String(), referenceData(in); got != want {
				t.Errorf("%s reader of %d bytes: got %d bytes, want %d", name, len(in), len(got), len(want))
			}
		}
	}
	boom := errors.New("disk gone")
	d := &dataWriter{}
	if _, err := io.Copy(d, iotest.DataErrReader(iotest.ErrReader(boom))); !errors.Is(err, boom) {
		t.Errorf("read error: got %v", err)
	}
}

// CRLFSize of a stored body (a SectionReader, as the Connector passes)
// allocates no copy buffer: the 32 KiB of io.Copy's own came with every
// message, twice with BDAT.
func TestCRLFSizeAllocs(t *testing.T) {
	body := strings.NewReader(strings.Repeat("line\r\n", 200))
	run := func() {
		if _, err := CRLFSize(io.NewSectionReader(body, 0, body.Size())); err != nil {
			t.Fatal(err)
		}
	}
	// io.Copy's own buffer made 32 KiB a call. A pooled one costs about
	// nothing, but a collection may empty the pool, and under the race
	// detector sync.Pool drops a quarter of what is put back (8 KiB a call
	// on average; more than half, 16 KiB, is beyond chance).
	if per := bytesPerCall(100, run); per > 16<<10 {
		t.Errorf("CRLFSize: %d bytes allocated per call, want at most 16 KiB", per)
	}
}

// TestLineEnd: the first CR or LF, wherever it falls against LineEnd's
// windows (the first is lineEndWindow bytes, each next twice the last).
func TestLineEnd(t *testing.T) {
	w := lineEndWindow
	for _, c := range []struct {
		name string
		in   string
		want int
	}{
		{"empty", "", -1},
		{"none", "abc", -1},
		{"none, past windows", strings.Repeat("x", 7*w+5), -1},
		{"CR first", "a\rb\n", 1},
		{"LF first", "a\nb\r", 1},
		{"CRLF", "ab\r\n", 2},
		{"at 0", "\n", 0},
		{"last of the first window", strings.Repeat("x", w-1) + "\r", w - 1},
		{"first of the second", strings.Repeat("x", w) + "\n", w},
		{"LF in the first, CR in the second", strings.Repeat("x", w-2) + "\n" + strings.Repeat("y", 5) + "\r", w - 2},
		{"CR in the first, LF in the second", strings.Repeat("x", w-2) + "\r" + strings.Repeat("y", 5) + "\n", w - 2},
		{"end of the second", strings.Repeat("x", 3*w-1) + "\r\n", 3*w - 1},
		{"start of the third", strings.Repeat("x", 3*w) + "\n\r", 3 * w},
		{"far", strings.Repeat("x", 100_000) + "\r", 100_000},
	} {
		if got := LineEnd([]byte(c.in)); got != c.want {
			t.Errorf("%s: LineEnd = %d, want %d", c.name, got, c.want)
		}
	}
}

// FuzzLineEnd compares LineEnd with bytes.IndexAny, pad bytes of text
// first so that the line ends fall in any window.
func FuzzLineEnd(f *testing.F) {
	f.Add(uint16(0), "a\rb")
	f.Add(uint16(lineEndWindow-1), "\n")
	f.Add(uint16(3*lineEndWindow+7), "xy\r\n")
	f.Fuzz(func(t *testing.T, pad uint16, s string) {
		b := append(bytes.Repeat([]byte{'x'}, int(pad)), s...)
		if got, want := LineEnd(b), bytes.IndexAny(b, "\r\n"); got != want {
			t.Fatalf("LineEnd = %d, bytes.IndexAny = %d", got, want)
		}
	})
}

// TestDataWriterLinear: a message of short lines ending in bare LFs (or
// bare CRs) costs time in proportion to its size, whatever the size of the
// write it comes in. When LineEnd looked for the CR and the LF each in all
// of what was left of a write, 1 MiB of "x\n" took 2.9 s in 32 KiB writes
// (3 ms for CRLF text): a message a client sent cheaply cost the relay
// seconds of CPU at every delivery attempt.
func TestDataWriterLinear(t *testing.T) {
	for _, unit := range []string{"x\n", "x\r"} {
		msg := []byte(strings.Repeat(unit, 256<<10))
		lineartest.Check(t, 32<<10, 16, func(n int) {
			d := &dataWriter{}
			d.Write(msg[:n]) // one write of n bytes
		})
	}
}

// A message given as a string (a strings.Reader, whose WriteTo io.Copy
// uses) is not copied whole: io.WriteString made a slice of every body,
// 100 KiB a call here.
func TestDataWriterStringAllocs(t *testing.T) {
	body := strings.Repeat(strings.Repeat("x", 76)+"\r\n", 100<<10/78)
	bw := bufio.NewWriterSize(io.Discard, 16<<10)
	run := func() {
		d := &dataWriter{w: bw, stuff: true}
		if _, err := io.Copy(d, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// As in TestCRLFSizeAllocs: a pooled buffer the pool lost now and then.
	if per := bytesPerCall(50, run); per > 16<<10 {
		t.Errorf("%d bytes allocated per %d-byte message, want at most 16 KiB", per, len(body))
	}
}

// bytesPerCall returns the bytes run allocates a call, on average over n
// calls after a first one that fills the pools.
func bytesPerCall(n int, run func()) uint64 {
	run()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		run()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
}
