package transport

import (
	"bufio"
	"errors"
	"io"

	"github.com/mailtls/mailtls/transport/smtpclient"
)

// dotDecoder is the RFC 5321 §4.5.2 reading of DATA: lines end in CRLF, a
// line "." ends the data, and a leading dot of any other line is removed.
// A CR that is not followed by LF is data, so a line that ends in a bare
// CR ("text\r\r\n") is followed by a line start, as the RFC's CRLF says.
// It is a pure state machine; the zero value is at the start of the data.
type dotDecoder uint8

const (
	dBOL   dotDecoder = iota // at a line start
	dDot                     // a line start's dot, removed
	dDotCR                   // ".\r" at a line start: the CR held back
	dCR                      // after a CR
	dData                    // inside a line
)

// What dotDecoder.step does with a byte.
const (
	dotKeep   = iota // the byte is message data
	dotDrop          // removed (a stuffed dot) or held back (a CR after it)
	dotKeepCR        // the held-back CR, then the byte, are message data
	dotEnd           // the byte ends the data
)

func (d *dotDecoder) step(b byte) int {
	switch *d {
	case dBOL:
		switch b {
		case '.':
			*d = dDot
			return dotDrop
		case '\r':
			*d = dCR
		default:
			*d = dData
		}
	case dDot:
		switch b {
		case '\r':
			*d = dDotCR
			return dotDrop
		default:
			*d = dData
		}
	case dDotCR:
		switch b {
		case '\n':
			*d = dBOL
			return dotEnd
		case '\r':
			*d = dCR
		default:
			*d = dData
		}
		return dotKeepCR
	case dCR:
		switch b {
		case '\n':
			*d = dBOL
		case '\r':
		default:
			*d = dData
		}
	default:
		if b == '\r' {
			*d = dCR
		}
	}
	return dotKeep
}

var (
	// errDataTooLarge: the message exceeds MaxMessageBytes (RFC 1870 §6.3,
	// "552 5.3.4").
	errDataTooLarge = errors.New("transport: message exceeds the size limit")
	// errLineTooLong: a line of the message exceeds MaxLineLength
	// (RFC 5321 §4.5.3.1.6).
	errLineTooLong = errors.New("transport: message line exceeds the length limit")
	// errTransferReset: a BDAT transfer was aborted by RSET, EHLO, QUIT or
	// the end of the connection (RFC 3030 §4).
	errTransferReset = errors.New("transport: message transfer aborted")
)

// dataReader reads the message of a DATA command from r, un-stuffed, up to
// its end marker (dotDecoder), which it consumes; nothing after it is
// read. Over max bytes of message it fails with errDataTooLarge, and at a
// line (CRLF included) over maxLine octets with errLineTooLong; drain then
// reads on to the end marker without either limit. A read error of r is
// returned as is (io.ErrUnexpectedEOF for io.EOF).
type dataReader struct {
	r       *bufio.Reader
	dec     dotDecoder
	max     int64 // bytes of message still allowed
	maxLine int   // 0: no limit
	lineLen int   // octets of the current line so far, as sent
	done    bool  // the end marker was read
	err     error
}

func newDataReader(r *bufio.Reader, maxBytes int64, maxLine int) *dataReader {
	return &dataReader{r: r, max: maxBytes, maxLine: maxLine}
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	if int64(len(p)) > d.max+1 {
		p = p[:d.max+1] // one more than allowed tells the limit was passed
	}
	n := 0
	for n < len(p) && !d.done {
		if n > 0 && d.r.Buffered() == 0 {
			break // return what there is rather than wait
		}
		buf, err := d.r.Peek(max(1, min(d.r.Buffered(), len(p)-n)))
		if len(buf) == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n > 0 {
				break // the error comes with the next Read
			}
			d.err = err
			return 0, err
		}
		used := 0
		for used < len(buf) && n < len(p) && !d.done {
			if d.dec == dData {
				// Inside a line only a CR or LF changes anything.
				j := smtpclient.LineEnd(buf[used:])
				if j < 0 {
					j = len(buf) - used
				}
				if j = min(j, len(p)-n); j > 0 {
					if d.lineLen += j; d.maxLine > 0 && d.lineLen > d.maxLine {
						d.r.Discard(used) // drain reads them again
						return d.fail(errLineTooLong)
					}
					n += copy(p[n:], buf[used:used+j])
					used += j
					continue
				}
			}
			b := buf[used]
			used++
			if d.lineLen++; d.maxLine > 0 && d.lineLen > d.maxLine {
				d.r.Discard(used - 1) // drain reads b again
				return d.fail(errLineTooLong)
			}
			if b == '\n' {
				d.lineLen = 0
			}
			switch d.dec.step(b) {
			case dotKeep:
				p[n] = b
				n++
			case dotKeepCR:
				p[n] = '\r'
				n++
				if n == len(p) {
					// No room for b: read it again next time, after
					// the CR, which is a plain CR now.
					used--
					d.lineLen--
					d.dec = dCR
					break
				}
				p[n] = b
				n++
			case dotEnd:
				d.done = true
			}
		}
		d.r.Discard(used)
	}
	if d.max -= int64(n); d.max < 0 {
		return d.fail(errDataTooLarge)
	}
	if n == 0 && d.done {
		return 0, io.EOF
	}
	return n, nil
}

func (d *dataReader) fail(err error) (int, error) {
	d.err = err
	return 0, err
}

// drain reads the rest of the data to its end marker, without the size
// and line limits, and returns the first read error of the network, or
// nil once the end marker is consumed.
func (d *dataReader) drain() error {
	if d.done {
		return nil
	}
	if d.err != nil && !errors.Is(d.err, errDataTooLarge) && !errors.Is(d.err, errLineTooLong) {
		return d.err
	}
	d.err, d.max, d.maxLine = nil, 1<<62, 0
	var buf [512]byte
	for {
		_, err := d.Read(buf[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
