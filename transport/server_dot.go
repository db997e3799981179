package transport

import (
	"bytes"
	"io"
	"reflect"
)

// The end of DATA after a bare CR (RFC 5321 §4.5.2, §2.3.8).
//
// RFC 5321 ends message data with CRLF "." CRLF and removes the leading dot
// of any other line that starts with one. go-smtp v0.25 (data.go, the same
// in v0.26) un-stuffs with net/textproto's state machine, in which a CR seen
// after a CR leaves the "maybe end of line" state: after "text\r\r\n" it
// does not see the next line as a line start. So "text\r\r\n.\r\n" (what
// Postfix sends for a line ending in a bare CR) never ends the message, and
// a "..line" after it keeps both dots.
//
// Under TLS go-smtp reads the decrypted stream itself, so the repair works
// on go-smtp's output, at the Session.Data seam: dotRepair runs beside
// go-smtp's machine, knowing only what go-smtp emitted, and acts only at a
// line start that go-smtp certainly missed: it removes the stuffed dot
// there, and ends the message at a "." line there.
//
// go-smtp's state can be told from its output except in one case: at a line
// start it drops a leading "." and a CR after it (".\rX" comes out as "X"),
// so an emitted CR at a line start is either a CR or ".\r\r". dotRepair
// takes it for a CR. That is exact for every client that stuffs as RFC 5321
// §4.5.2 says, since such a client starts a line with "." only to stuff a
// dot ("..") or to end the data (".\r\n"), never with ".\r" and something
// else; only the sender of the bytes itself can make the repair misread
// them (FuzzDotRepair checks both). So a relay in front of this Server, whatever
// content it forwards, cannot have a message end anywhere but at its
// CRLF "." CRLF.
//
// Limits: go-smtp's loss of the CR in a non-conforming ".\rX" line cannot
// be undone from its output. A message over MaxMessageBytes is drained by
// go-smtp alone (its data reader stops at the limit), so after such an end
// of data its 552 waits for ReadTimeout (or DataTimeout) to pass. Under TLS, commands pipelined after such an end of data
// were read by go-smtp as data: the Server accepts the message, then
// closes the connection with "421 4.5.0" (bodyReader, inConn.endOfData).

// States of go-smtp's dataReader, as seen from its output.
const (
	gBOL  = iota // at a line start
	gCR          // after a CR that may end the line
	gData        // inside a line
)

// States of the RFC 5321 §4.5.2 reading, on go-smtp's output.
const (
	rBOL   = iota // at a line start (after CRLF)
	rDot          // a line start's dot, removed
	rDotCR        // ".\r" at a line start; the CR held back
	rCR           // after a CR
	rData         // inside a line
)

// dotRepair is the repair of go-smtp's DATA output. The zero value is at
// the start of the message; it is a pure state machine (no I/O).
type dotRepair struct {
	g uint8 // gBOL...
	r uint8 // rBOL...
}

// What dotRepair.step does with a byte of go-smtp's output.
const (
	keep    = iota // the byte is message data
	drop           // removed (a stuffed dot) or held back (a CR after it)
	keepCR         // the held-back CR, then the byte, are message data
	endData        // the byte ends the message
)

func (d *dotRepair) step(b byte) int {
	// go-smtp's state after b, from what it emitted.
	g := d.g
	switch {
	case g == gCR && b == '\n':
		d.g = gBOL
	case b == '\r' && g != gCR:
		d.g = gCR // from gBOL: a CR, not ".\r\r" (see above)
	default:
		d.g = gData
	}
	act := keep
	switch d.r {
	case rBOL:
		switch {
		case g == gData && b == '.':
			// A line start go-smtp missed: this dot is stuffing, or the
			// start of the end marker.
			d.r, act = rDot, drop
		case b == '\r':
			d.r = rCR
		default:
			d.r = rData
		}
	case rDot:
		if b == '\r' {
			d.r, act = rDotCR, drop
		} else {
			d.r = rData
		}
	case rDotCR:
		switch b {
		case '\n':
			d.g, d.r = gBOL, rBOL
			return endData
		case '\r':
			d.r = rCR
		default:
			d.r = rData
		}
		act = keepCR
	case rCR:
		switch b {
		case '\n':
			d.r = rBOL
		case '\r':
		default:
			d.r = rData
		}
	default: // rData
		if b == '\r' {
			d.r = rCR
		}
	}
	return act
}

// inLine reports whether d is inside a line in both readings, where only a
// CR changes anything (scanDot's fast path).
func (d *dotRepair) inLine() bool { return d.g == gData && d.r == rData }

// held reports how many bytes (0 or 1: a CR after a removed dot) d holds
// back from go-smtp's output so far.
func (d *dotRepair) held() int {
	if d.r == rDotCR {
		return 1
	}
	return 0
}

// repairInPlace repairs the n bytes of go-smtp's output at buf[h:], h being
// held(), writing the message bytes from buf[0]: m of them. It reports
// whether the message ended there, and then used, how many of the n bytes
// were read up to and including the end marker; the rest are not message
// data. Writing never overtakes reading: only a held CR makes the output
// longer than the input, and h leaves room for it.
func (d *dotRepair) repairInPlace(buf []byte, h, n int) (m int, end bool, used int) {
	for i := h; i < h+n; i++ {
		if d.inLine() {
			// Inside a line in both readings only a CR changes the
			// state: move the bytes up to it at once.
			j := bytes.IndexByte(buf[i:h+n], '\r')
			if j < 0 {
				j = h + n - i
			}
			if j > 0 {
				if m != i {
					copy(buf[m:], buf[i:i+j])
				}
				m += j
				i += j - 1
				continue
			}
		}
		c := buf[i]
		switch d.step(c) {
		case keep:
			buf[m] = c
			m++
		case keepCR:
			buf[m], buf[m+1] = '\r', c
			m += 2
		case endData:
			return m, true, i - h + 1
		}
	}
	return m, false, n
}

// goSMTPDot is go-smtp v0.25's dataReader state machine on its input, for
// the plaintext filter (scanDot): step returns what go-smtp emits for b
// (emit is false when it drops b) and whether b ends the data.
type goSMTPDot uint8

const (
	sBeginLine goSMTPDot = iota
	sDot
	sDotCR
	sCR
	sData
)

func (s *goSMTPDot) step(b byte) (emit, eof bool) {
	switch *s {
	case sBeginLine:
		switch b {
		case '.':
			*s = sDot
			return false, false
		case '\r':
			*s = sCR
		default:
			*s = sData
		}
	case sDot:
		if b == '\r' {
			*s = sDotCR
			return false, false
		}
		*s = sData
	case sDotCR:
		if b == '\n' {
			*s = sBeginLine
			return false, true
		}
		*s = sData
	case sCR:
		if b == '\n' {
			*s = sBeginLine
		} else {
			*s = sData
		}
	default:
		if b == '\r' {
			*s = sCR
		}
	}
	return true, false
}

// dotScan finds the end of DATA in the plaintext filter exactly where
// go-smtp and the Session's repair (bodyReader) end it together, so that
// the filter hands go-smtp no byte after the message and takes the next
// line as a command.
type dotScan struct {
	gs  goSMTPDot
	fix dotRepair
}

// scan advances over b and returns how many bytes belong to the message (up
// to and including its end marker) and whether the end was reached.
func (s *dotScan) scan(b []byte) (int, bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\r' && s.gs == sData && s.fix.inLine() {
			// Nothing changes before the next CR.
			j := bytes.IndexByte(b[i:], '\r')
			if j < 0 {
				return len(b), false
			}
			i += j - 1
			continue
		}
		emit, eof := s.gs.step(c)
		if !eof && emit && s.fix.step(c) == endData {
			eof = true
		}
		if eof {
			*s = dotScan{}
			return i + 1, true
		}
	}
	return len(b), false
}

// goSMTPDataReaderType is the type of the reader go-smtp hands Session.Data
// for DATA (dot-stuffed); BDAT gets an *io.PipeReader.
const goSMTPDataReaderType = "*smtp.dataReader"

// isDotStuffed reports whether r is go-smtp's DATA reader, whose output the
// repair applies to. Should go-smtp rename it, the repair turns off (and
// TestGoSMTPDataReaderCanary fails) rather than touch BDAT data.
func isDotStuffed(r io.Reader) bool {
	return r != nil && reflect.TypeOf(r).String() == goSMTPDataReaderType
}

// dataSignal is what inConn returns to go-smtp's reads during a repaired
// DATA. It is Temporary, so crypto/tls does not poison the connection with
// it (as with shutdownError), and it is no Timeout.
type dataSignal struct{ what string }

func (e *dataSignal) Error() string   { return "transport: " + e.what }
func (e *dataSignal) Timeout() bool   { return false }
func (e *dataSignal) Temporary() bool { return true }

var (
	// errDataYield hands control back to bodyReader before a network read.
	errDataYield = &dataSignal{"data read interrupted for the end-of-data check"}
	// errDataEnd ends go-smtp's drain after a repaired end of data.
	errDataEnd = &dataSignal{"end of data"}
)
