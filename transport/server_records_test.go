package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tlsRecord returns a TLS record header for a fragment of n octets, and the
// fragment.
func tlsRecord(typ byte, n int) []byte {
	r := make([]byte, recordHeaderLen+n)
	r[0], r[1], r[2], r[3], r[4] = typ, 3, 3, byte(n>>8), byte(n)
	for i := range n {
		r[recordHeaderLen+i] = byte(i)
	}
	return r
}

func TestScanRecords(t *testing.T) {
	a := tlsRecord(23, 10) // 15 octets
	b := tlsRecord(21, 0)  // 5
	c := tlsRecord(23, 300)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name    string
		from    recordFrame
		d       []byte
		cut     int
		endBody int
		endHdr  int
	}{
		{"empty", recordFrame{}, nil, 0, 0, 0},
		{"one record", recordFrame{}, a, 15, 0, 0},
		{"two records", recordFrame{}, cat(a, c), 15 + 305, 0, 0},
		{"a record and part of one", recordFrame{}, cat(a, c[:100]), 15, 205, 0},
		{"a record and part of a header", recordFrame{}, cat(a, c[:3]), 15, 0, 3},
		{"an empty fragment", recordFrame{}, cat(a, b), 20, 0, 0},
		{"part of a header", recordFrame{}, c[:4], 0, 0, 4},
		{"only a header", recordFrame{}, c[:5], 0, 300, 0},
		{"part of a fragment", recordFrame{}, c[:50], 0, 255, 0},
		{"the rest of a fragment", recordFrame{body: 255}, c[50:], 255, 0, 0},
		{"the rest of a fragment and part of the next",
			recordFrame{body: 255}, cat(c[50:], a[:7]), 255, 8, 0},
		{"the rest of a header", recordFrame{nhdr: 3, hdr: [5]byte{23, 3, 3}},
			[]byte{0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 12, 0, 0},
		{"maximal length", recordFrame{}, []byte{23, 3, 3, 0xff, 0xff}, 0, 0xffff, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cut, end := scanRecords(tt.from, tt.d)
			if cut != tt.cut || end.body != tt.endBody || end.nhdr != tt.endHdr {
				t.Errorf("scanRecords = %d, {body %d, nhdr %d}; want %d, {body %d, nhdr %d}",
					cut, end.body, end.nhdr, tt.cut, tt.endBody, tt.endHdr)
			}
		})
	}
}

// checkRecordReader reads stream through a recordReader, src handing it
// out in reads of srcSizes and the reader asked for reads of pSizes, and
// checks that what comes out is stream, that every read ends where a
// record ends or holds no record end, and that nothing is kept back at
// the end.
func checkRecordReader(t *testing.T, stream []byte, srcSizes, pSizes []int) {
	t.Helper()
	ends := map[int]bool{}
	f := recordFrame{}
	for i := range stream {
		_, f = scanRecords(f, stream[i:i+1])
		if f.body == 0 && f.nhdr == 0 {
			ends[i+1] = true
		}
	}
	var r recordReader
	// A read from the network may wait for the client: nothing may be
	// kept back then.
	src := &chunkReader{b: stream, sizes: srcSizes, onRead: func() {
		if r.stash != nil {
			t.Fatalf("a network read while %d octets are kept back", len((*r.stash)[r.off:]))
		}
	}}
	var got []byte
	for i := 0; ; i++ {
		if i > 10*len(stream)+10 {
			t.Fatalf("no end after %d reads", i)
		}
		p := make([]byte, max(1, pSizes[i%len(pSizes)]))
		n, err := r.read(src, p)
		if n < 0 || n > len(p) {
			t.Fatalf("read returned %d for a buffer of %d", n, len(p))
		}
		start := len(got)
		got = append(got, p[:n]...)
		if n > 0 && !ends[len(got)] {
			for o := start + 1; o < len(got); o++ {
				if ends[o] {
					t.Fatalf("read [%d, %d) ends inside a record but holds the record end %d", start, len(got), o)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("read %d octets, not the %d written, or not the same", len(got), len(stream))
	}
	if r.stash != nil {
		t.Fatalf("%d octets kept back at the end", len((*r.stash)[r.off:]))
	}
}

func TestRecordReaderStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		var stream []byte
		for range rng.IntN(12) {
			n := rng.IntN(200)
			if rng.IntN(4) == 0 {
				n = 16384 + rng.IntN(257)
			}
			stream = append(stream, tlsRecord(23, n)...)
		}
		if trial%3 == 0 && len(stream) > 0 {
			stream = stream[:rng.IntN(len(stream))] // the peer stops mid-record
		}
		sizes := func() []int {
			s := make([]int, 1+rng.IntN(5))
			for i := range s {
				s[i] = 1 + rng.IntN(40000)
				if rng.IntN(3) == 0 {
					s[i] = 1 + rng.IntN(8)
				}
			}
			return s
		}
		checkRecordReader(t, stream, sizes(), sizes())
	}
}

func TestRecordReaderError(t *testing.T) {
	stream := append(tlsRecord(23, 100), tlsRecord(23, 100)[:50]...)
	boom := errors.New("reset")
	src := &chunkReader{b: stream, sizes: []int{len(stream)}, err: boom}
	var r recordReader
	p := make([]byte, 1000)
	n, err := r.read(src, p)
	if n != 105 || err != nil {
		t.Fatalf("first read = %d, %v; want the whole record, 105", n, err)
	}
	n, err = r.read(src, p)
	if n != 50 || err != boom || !bytes.Equal(p[:n], stream[105:]) {
		t.Fatalf("second read = %d, %v; want the 50 octets kept back and the error", n, err)
	}
	if r.stash != nil {
		t.Fatal("the stash was not given back")
	}
}

// TestRecordReaderOversized: a header announcing more than any TLS
// version allows is handed out at once, without waiting for the rest of
// the record, so that crypto/tls rejects it now and not at the deadline.
func TestRecordReaderOversized(t *testing.T) {
	for _, size := range []int{0xffff, maxRecord + 1} {
		bad := []byte{23, 3, 3, byte(size >> 8), byte(size), 'x', 'y', 'z'}
		stream := append(tlsRecord(23, 10), bad...)
		src := &chunkReader{b: stream, sizes: []int{len(stream)}, err: errors.New("read after the data")}
		var r recordReader
		p := make([]byte, 100)
		if n, err := r.read(src, p); n != 15 || err != nil {
			t.Fatalf("length %d: first read = %d, %v; want the 15 octets of the whole record", size, n, err)
		}
		n, err := r.read(src, p)
		if err != nil || !bytes.Equal(p[:n], bad) {
			t.Fatalf("length %d: second read = %q, %v; want %q at once", size, p[:n], err, bad)
		}
	}
	// At the limit the reader waits for the rest of the record.
	stream := append(tlsRecord(23, 10), 23, 3, 3, byte(maxRecord>>8), byte(maxRecord&0xff), 'x')
	src := &chunkReader{b: stream, sizes: []int{len(stream), 1000}}
	var r recordReader
	p := make([]byte, 100)
	r.read(src, p)
	if n, err := r.read(src, p); n != 6 || err != io.EOF {
		t.Fatalf("length %d: second read = %d, %v; want the 6 octets with the end of the stream", maxRecord, n, err)
	}
}

func FuzzRecordReader(f *testing.F) {
	f.Add(append(tlsRecord(23, 20), tlsRecord(21, 2)...), []byte{3, 7, 1, 255})
	f.Add(tlsRecord(23, 1000)[:600], []byte{1, 2, 200})
	f.Add([]byte{23, 3, 3, 0, 0, 23, 3, 3, 0, 1, 9}, []byte{1})
	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		if len(sizes) == 0 {
			sizes = []byte{1}
		}
		srcSizes := make([]int, len(sizes))
		pSizes := make([]int, len(sizes))
		for i, s := range sizes {
			srcSizes[i] = int(s)*int(s) + 1
			pSizes[len(sizes)-1-i] = int(s)*7 + 1
		}
		checkRecordReader(t, stream, srcSizes, pSizes)
	})
}

// framedConn is a net.Conn read through a recordReader, as inConn is
// beneath crypto/tls.
type framedConn struct {
	net.Conn
	r *recordReader
}

func (c framedConn) Read(p []byte) (int, error) { return c.r.read(c.Conn, p) }

// TestRecordReaderAllocs receives 100 KiB over TLS on loopback, with and
// without a recordReader beneath the server's tls.Conn, and checks that
// the reader saves what it is there to save: crypto/tls's input buffer
// reallocated while records arrive behind one another.
func TestRecordReaderAllocs(t *testing.T) {
	pki := newSrvPKI(t)
	const size, conns = 100 << 10, 20
	body := make([]byte, size)
	recv := func(framed bool) uint64 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		for range conns {
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				var nc net.Conn = c
				if framed {
					nc = framedConn{c, &recordReader{}}
				}
				tc := tls.Server(nc, pki.serverConfig())
				_, err = io.CopyN(io.Discard, tc, size)
				done <- err
			}()
			c, err := tls.Dial("tcp", ln.Addr().String(), pki.clientConfig())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(body); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		runtime.ReadMemStats(&ms1)
		return (ms1.TotalAlloc - ms0.TotalAlloc) / conns
	}
	var plain, framed uint64
	for range 2 { // the lower of two runs each, against noise
		if p := recv(false); plain == 0 || p < plain {
			plain = p
		}
		if f := recv(true); framed == 0 || f < framed {
			framed = f
		}
	}
	t.Logf("allocated per 100 KiB connection, both ends: %d KiB without the reader, %d KiB with it", plain>>10, framed>>10)
	if framed+64<<10 > plain {
		t.Errorf("the reader saved %d KiB per connection, less than 64", (int64(plain)-int64(framed))>>10)
	}
}

// holdConn keeps what is written while hold is set, so that a test can
// send a TLS record and raw bytes after it in one write.
type holdConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *holdConn) Write(p []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestServerOversizedRecordAtOnce: a client that sends a command and, in
// the same TCP segment, a record header announcing 65,535 octets is cut
// off at once by crypto/tls, as without the recordReader, not left
// waiting for a record that can never be valid until the command timeout.
func TestServerOversizedRecordAtOnce(t *testing.T) {
	ts := startServer(t, &Server{Timeouts: ServerTimeouts{Command: 20 * time.Second}}, newSrvPKI(t))
	d, raw, record := recordDialogue(t, ts, "NOOP\r\n")
	start := time.Now()
	if _, err := raw.Write(append(record, 23, 3, 3, 0xff, 0xff)); err != nil {
		t.Fatal(err)
	}
	d.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	r := d.r
	var replies []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection was still open after %v (replies %q)", time.Since(start).Round(time.Millisecond), replies)
			}
			break
		}
		replies = append(replies, l)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the connection ended after %v, not at once", el.Round(time.Millisecond))
	}
	if len(replies) != 1 || !strings.HasPrefix(replies[0], "250 ") {
		t.Errorf("replies %q, want the NOOP's 250 only", replies)
	}
}

// recordDialogue does STARTTLS on a new connection to ts and returns a
// dialogue over the TLS session, and line encrypted as one record, to be
// written to raw (the TCP connection) in whatever pieces a test wants.
func recordDialogue(t *testing.T, ts *testServer, line string) (d *dialogue, raw net.Conn, record []byte) {
	t.Helper()
	d = dial(t, ts.addr)
	d.greet()
	d.expect("STARTTLS", "220 ")
	raw = d.conn
	hc := &holdConn{Conn: raw}
	tc := tls.Client(hc, ts.pki.clientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	hc.hold = true
	if _, err := tc.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	hc.hold = false
	return &dialogue{t: t, conn: tc, r: bufio.NewReader(tc)}, raw, hc.buf
}
