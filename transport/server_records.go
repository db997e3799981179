package transport

import (
	"io"
	"sync"
)

// recordReader hands crypto/tls what it reads from the network in whole
// TLS records (RFC 8446 §5.1: a 5-byte header whose last two bytes are
// the length of what follows) whenever it can. Of a read that ends in the
// middle of a record it hands out the records before, and keeps that
// part back, in a buffer taken from a pool, for the next read, which
// reads the rest of the record after it.
//
// The reason is crypto/tls's input buffer (a bytes.Buffer). When a record
// is needed and the buffer still holds the start of the next one, the
// buffer is reallocated instead of slid down, so a connection receiving a
// 100 KiB message allocated about 140 KiB more than the message itself;
// fed whole records, the buffer is empty whenever one is needed and is
// reused in place.
//
// The reader only frames: it does not check the records (crypto/tls does,
// and ends the connection on one it rejects), except that a header
// announcing more than any TLS version allows is handed out at once, for
// crypto/tls to reject then and not at the read deadline. It reads from
// the network no more and no sooner than crypto/tls asks it to, and only
// when nothing is kept back: a connection waiting for the client holds no
// buffer. Between reads, while a reply is written or the Handler works, a
// part kept back holds one pooled buffer.
type recordReader struct {
	fr    recordFrame // where the bytes not yet handed out start
	stash *[]byte     // read, not yet handed out: (*stash)[off:]
	off   int
}

// recordFrame is a position in a stream of TLS records.
type recordFrame struct {
	size int     // the current record's fragment length, as its header says
	body int     // octets of the current record's fragment still to come
	nhdr int     // octets of the next header seen so far
	hdr  [5]byte // the next header, while it is incomplete
}

// recordHeaderLen is the length of a TLS record header (RFC 8446 §5.1).
const recordHeaderLen = 5

// scanRecords walks d from position f. It returns the length of the
// longest prefix of d that ends where a record ends (0 if none does) and
// the position after all of d.
func scanRecords(f recordFrame, d []byte) (cut int, end recordFrame) {
	for pos := 0; pos < len(d); {
		if f.body > 0 {
			k := min(f.body, len(d)-pos)
			pos += k
			f.body -= k
			if f.body == 0 {
				cut = pos
			}
			continue
		}
		k := copy(f.hdr[f.nhdr:], d[pos:])
		f.nhdr += k
		pos += k
		if f.nhdr == recordHeaderLen {
			f.nhdr = 0
			f.size = int(f.hdr[3])<<8 | int(f.hdr[4])
			f.body = f.size
			if f.body == 0 {
				cut = pos
			}
		}
	}
	return cut, f
}

// maxRecord is the largest fragment length any TLS version allows in a
// record (RFC 5246 §6.2.3: 2^14 + 2048; RFC 8446 §5.2 allows less).
const maxRecord = 1<<14 + 2048

// take decides how much of d, which starts at r.fr, to hand out: up to
// the last record end in d, or all of d if no record ends in it.
func (r *recordReader) take(d []byte) int {
	cut, end := scanRecords(r.fr, d)
	if cut > 0 {
		r.fr = recordFrame{}
		return cut
	}
	r.fr = end
	return len(d)
}

// stashPool holds the buffers of the records' parts kept back.
var stashPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// read fills p from what was kept back and then from src.
func (r *recordReader) read(src io.Reader, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	have := 0
	if r.stash != nil {
		// What was kept back is the start of one record: there is no
		// record end in it (see below).
		kept := (*r.stash)[r.off:]
		n := min(len(kept), len(p))
		_, end := scanRecords(r.fr, kept[:n])
		if n == len(p) || end.body > 0 && end.size > maxRecord {
			copy(p, kept[:n])
			r.fr = end
			r.off += n
			if r.off == len(*r.stash) {
				r.release()
			}
			return n, nil
		}
		have = copy(p, kept)
		r.release()
	}
	n, err := src.Read(p[have:])
	n += have
	if err != nil {
		_, r.fr = scanRecords(r.fr, p[:n])
		return n, err
	}
	give := r.take(p[:n])
	if give < n {
		// p[give:n] holds no record end: it is kept back whole.
		r.stash = stashPool.Get().(*[]byte)
		*r.stash = append((*r.stash)[:0], p[give:n]...)
	}
	return give, nil
}

// release returns the stash to the pool.
func (r *recordReader) release() {
	if r.stash == nil {
		return
	}
	if cap(*r.stash) <= maxStash {
		stashPool.Put(r.stash)
	}
	r.stash, r.off = nil, 0
}

// maxStash bounds the buffers put back in stashPool.
const maxStash = 64 << 10

// recordConn is the net.Conn crypto/tls reads an inbound connection
// through: inConn, with its reads framed by the connection's
// recordReader.
type recordConn struct{ *inConn }

func (c recordConn) Read(p []byte) (int, error) { return c.records.read(c.inConn, p) }
