package ndr

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Action is the value of the Action field of a per-recipient group
// (RFC 3464 §2.3.3).
type Action string

// Actions defined by RFC 3464 §2.3.3.
const (
	// ActionFailed: the message could not be delivered to the recipient.
	ActionFailed Action = "failed"
	// ActionDelayed: delivery has not succeeded yet and will be retried.
	ActionDelayed Action = "delayed"
	// ActionDelivered: the message was delivered to the recipient.
	ActionDelivered Action = "delivered"
	// ActionRelayed: the message was passed to a system that does not send
	// delivery status notifications.
	ActionRelayed Action = "relayed"
	// ActionExpanded: delivered to the recipient address and forwarded to
	// further addresses (alias or list expansion).
	ActionExpanded Action = "expanded"
)

// Valid reports whether a is one of the five actions of RFC 3464 §2.3.3.
func (a Action) Valid() bool {
	switch a {
	case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
		return true
	}
	return false
}

// Return says how much of the original message a report returns: the RET
// parameter of MAIL FROM (RFC 3461 §4.3). Its text form is the parameter's
// value ("FULL", "HDRS", or "" when absent).
type Return int

const (
	// ReturnDefault is an absent RET parameter: the reporting MTA chooses,
	// and reports return the headers, as for ReturnHeaders. It is the zero
	// value.
	ReturnDefault Return = iota
	// ReturnHeaders returns only the header of the original message
	// (RET=HDRS), as text/rfc822-headers (RFC 6522 §4) or
	// message/global-headers (RFC 6533 §3).
	ReturnHeaders
	// ReturnFull returns the whole original message (RET=FULL) as
	// message/rfc822, or message/global for SMTPUTF8 originals (RFC 6532
	// §3.7), in a report of a failure for at least one recipient (RFC 3461
	// §4.3: delay and success reports return headers only), unless the original is larger than MaxReturnSize, has a line
	// longer than 998 octets (RFC 2046 §5.2.1 allows message/rfc822 no
	// encoding that could carry it), or was sent with REQUIRETLS.
	ReturnFull
)

// ErrBadReturn is returned by ParseReturn for a RET value other than FULL
// or HDRS (RFC 3461 §4.3); the SMTP server answers 501 5.5.4.
var ErrBadReturn = errors.New("ndr: invalid RET parameter")

// ParseReturn parses the value of a RET parameter, in any case (RFC 3461
// §4.3); "" gives ReturnDefault.
func ParseReturn(s string) (Return, error) {
	switch strings.ToUpper(s) {
	case "":
		return ReturnDefault, nil
	case "FULL":
		return ReturnFull, nil
	case "HDRS":
		return ReturnHeaders, nil
	}
	return ReturnDefault, fmt.Errorf("%w: %q", ErrBadReturn, s)
}

// String returns the RET parameter value: "FULL", "HDRS" or "".
func (r Return) String() string {
	switch r {
	case ReturnFull:
		return "FULL"
	case ReturnHeaders:
		return "HDRS"
	}
	return ""
}

// MarshalText returns String's value.
func (r Return) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses a RET value as ParseReturn does.
func (r *Return) UnmarshalText(b []byte) error {
	v, err := ParseReturn(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// DefaultMaxReturnSize is the cap used when Report.MaxReturnSize is zero:
// an original larger than this is returned as headers only.
const DefaultMaxReturnSize = 1 << 20

// maxOriginalHeader bounds the header of the original message held in
// memory; a longer header is cut at the last complete line.
const maxOriginalHeader = 256 << 10

// Errors returned by Build and Parse. Match them with errors.Is.
var (
	// ErrInvalidReport: the Report lacks a field RFC 3464 requires or has a
	// malformed one; the wrapping error names it. Fix the caller.
	ErrInvalidReport = errors.New("ndr: invalid report")
	// ErrTooLarge: the input to Parse exceeds Parser.MaxSize. The message
	// is not a report this package will read; treat it as ordinary mail.
	ErrTooLarge = errors.New("ndr: message too large")
	// ErrNoDeliveryStatus: the message has no message/delivery-status part
	// with at least one per-recipient group, so it is not an RFC 3464 report.
	ErrNoDeliveryStatus = errors.New("ndr: no delivery-status part")
)

// Report is a delivery status notification (RFC 3464) as plain data.
// Build renders it as a multipart/report message (RFC 6522); Parse reads one.
//
// Only ReportingMTA, a non-null Sender and Recipients (each with
// FinalRecipient, Action and Status) are required; every other zero value is
// omitted or replaced by a documented default. Build does not modify the
// Report, but it consumes Original.
type Report struct {
	// ReportingMTA is the host name of the MTA writing the report, rendered
	// "Reporting-MTA: dns; host" (RFC 3464 §2.2.2) and used in From and
	// Message-ID. A value that already contains ";" is written as given
	// ("x-local-hostname; name"); Parse stores non-dns types that way.
	ReportingMTA string
	// From is the address of the report's From field. If empty,
	// "MAILER-DAEMON@" + ReportingMTA is used, with display name "Mail
	// Delivery System".
	From string
	// OriginalEnvelopeID is the ENVID of MAIL FROM (RFC 3464 §2.2.1), already
	// decoded from xtext. Omitted if empty.
	OriginalEnvelopeID string
	// ReceivedFromMTA is the host the message came from, rendered
	// "Received-From-MTA: dns; host" (RFC 3464 §2.2.4). Omitted if empty.
	ReceivedFromMTA string
	// ArrivalDate is when the message arrived (RFC 3464 §2.2.5). Omitted if
	// zero.
	ArrivalDate time.Time

	// Sender is the original reverse-path, the address the report goes to
	// (its To field). Build refuses a null sender: see [ShouldReport].
	Sender string
	// Subject overrides the localized subject chosen from the actions.
	Subject string
	// Recipients has one entry per recipient reported on; at least one.
	Recipients []Recipient

	// Original is the original message (header and body, CRLF or LF line
	// ends). Build reads its header and, for a full return, at most
	// MaxReturnSize+1 bytes of body, and no further, so a one-shot reader
	// allows one Build; it holds at most the header (256 KiB) and
	// MaxReturnSize bytes of body in memory. If nil, nothing is returned. Parse sets it to the
	// returned part.
	Original io.Reader
	// Return is the RET parameter of the original MAIL FROM: headers only
	// (the zero value) or the full message.
	Return Return
	// MaxReturnSize caps the size of an original returned in full; a larger
	// one is returned as headers only and the human part says so. Zero means
	// DefaultMaxReturnSize; a negative value never returns the body.
	MaxReturnSize int64
	// SMTPUTF8 marks an original sent with SMTPUTF8 (RFC 6531): the report
	// uses message/global-delivery-status, message/global-headers and
	// message/global (RFC 6533 §3), and utf-8 address types. Non-ASCII in
	// any delivery-status field implies it.
	SMTPUTF8 bool
	// RequireTLS marks an original sent with REQUIRETLS (RFC 8689). The
	// report then returns the headers only, whatever Return says, and the
	// human part explains why (RFC 8689 §5): the report itself may travel
	// without TLS.
	RequireTLS bool
	// OriginalMessageID is the Message-ID of the original, used for
	// In-Reply-To and References. If empty, Build takes it from the
	// original's header.
	OriginalMessageID string

	// Language selects the human-readable part: "en" or "ja" (a tag such as
	// "ja-JP" is reduced to its primary subtag). Empty or unknown means
	// English.
	Language string

	// MessageID is the report's own Message-ID. If empty, Build makes one
	// from Now and random bytes, with ReportingMTA as the right-hand side.
	MessageID string
	// Date is the report's Date field. If zero, Now is used.
	Date time.Time
	// Now returns the current time. If nil, time.Now is used.
	Now func() time.Time
	// Boundary is the MIME boundary of the multipart/report (RFC 2046
	// §5.1.1: 1 to 70 characters, otherwise an ErrInvalidReport error). If
	// empty, Build draws a random one. Tests fix it to get stable output.
	Boundary string
	// Random is the source of randomness for MessageID and Boundary. If nil,
	// crypto/rand is used.
	Random io.Reader

	// DKIM, if not nil, makes Build sign the report (RFC 6376) with
	// go-msgauth. Its Domain, Selector and Signer must be set.
	DKIM *dkim.SignOptions
}

// Recipient is one per-recipient group of a report (RFC 3464 §2.3).
type Recipient struct {
	// OriginalRecipient is the ORCPT parameter (RFC 3461 §4.2) as
	// "addr-type;address" with xtext decoded, e.g. "rfc822;bob@example".
	// A value without "type;" is written as rfc822. Omitted if empty
	// (RFC 3464 §2.3.1).
	OriginalRecipient string
	// FinalRecipient is the recipient address the reporting MTA tried,
	// rendered "rfc822; addr" or "utf-8; addr" (RFC 3464 §2.3.2, RFC 6533
	// §3). A value containing ";" is written as given. Required.
	FinalRecipient string
	// Action is what happened to the recipient (RFC 3464 §2.3.3). Required.
	Action Action
	// Status is the enhanced status code, e.g. "5.7.4" (RFC 3464 §2.3.4,
	// RFC 3463). Required.
	Status string
	// RemoteMTA is the host name of the server that gave the diagnostic,
	// rendered "dns; host" (RFC 3464 §2.3.5). Omitted if empty.
	RemoteMTA string
	// DiagnosticType is the type of DiagnosticCode; empty means "smtp".
	// RFC 3464 §2.3.6 keeps "smtp" for the reply the remote MTA actually
	// sent; a failure the reporting MTA found itself (STARTTLS not offered,
	// a refused certificate...) takes an "X-" type, and the human-readable
	// part then labels the text as this mail system's finding, not as a
	// server reply.
	DiagnosticType string
	// DiagnosticCode is the reply of the remote server ("530 5.7.0 Must
	// issue a STARTTLS command first"; lines of a multi-line reply separated
	// by "\n"), rendered "smtp; ..." (RFC 3464 §2.3.6). Omitted if empty.
	// Build keeps at most the first 4 KiB (4096 octets) of it, after
	// control characters and blank lines are removed, and marks a cut with
	// " [truncated]"; Parse keeps at most 8 KiB of any one field.
	DiagnosticCode string
	// LastAttemptDate is the time of the last delivery attempt (RFC 3464
	// §2.3.7). Omitted if zero.
	LastAttemptDate time.Time
	// FinalLogID is the reporting MTA's log identifier (RFC 3464 §2.3.8).
	// Omitted if empty.
	FinalLogID string
	// WillRetryUntil is when a delayed delivery will be given up (RFC 3464
	// §2.3.9). Omitted if zero; only written for ActionDelayed.
	WillRetryUntil time.Time

	// Reason explains a TLS failure in the human-readable part. It is not
	// part of the delivery-status fields, and Parse leaves it nil.
	Reason *Reason
}

// Build renders the report as a complete message: multipart/report;
// report-type=delivery-status (RFC 6522) holding a human-readable text/plain
// part, the message/delivery-status part (RFC 3464 §2) and, if Original is
// set, the returned original. Lines end in CRLF. The report must be sent
// with a null reverse-path (RFC 3461 §6.1).
func (r *Report) Build() ([]byte, error) {
	var buf bytes.Buffer
	if err := r.build(&buf); err != nil {
		return nil, err
	}
	if r.DKIM == nil {
		return buf.Bytes(), nil
	}
	var signed bytes.Buffer
	opts := *r.DKIM
	if err := dkim.Sign(&signed, bytes.NewReader(buf.Bytes()), &opts); err != nil {
		return nil, fmt.Errorf("ndr: DKIM signing: %w", err)
	}
	return signed.Bytes(), nil
}

// WriteTo writes the message Build produces to w.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	b, err := r.Build()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

func (r *Report) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Report) randomHex(n int) (string, error) {
	b := make([]byte, n)
	src := r.Random
	if src == nil {
		src = rand.Reader
	}
	if _, err := io.ReadFull(src, b); err != nil {
		return "", fmt.Errorf("ndr: reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// original is the part of the original message a report returns.
type original struct {
	header    []byte // header block, CRLF line ends, without the empty line
	body      []byte // body, CRLF line ends; nil unless returned in full
	full      bool   // returned in full
	tooLarge  bool   // a full return was asked for but the body exceeded the cap
	longLines bool   // a full return was asked for but a line exceeds 998 octets
	messageID string
}

// readOriginal reads the original message, bounded by the header limit and
// by maxBody for the body. Only the header is read when !wantFull.
func readOriginal(rd io.Reader, wantFull bool, maxBody int64) (*original, error) {
	br := bufio.NewReader(rd)
	o := &original{}
	var hdr bytes.Buffer
	truncated := false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// An overlong line: keep reading it in pieces.
			whole := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				whole = append(whole, line...)
				if len(whole) > maxOriginalHeader {
					break
				}
			}
			line = whole
		}
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, fmt.Errorf("ndr: reading original: %w", err)
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if bytes.IndexByte(trimmed, '\r') >= 0 {
			// A bare CR inside a header line is not a line end (RFC 5322
			// §2.2); some receivers treat it as one, so it must not reach
			// the report, whose lines all end in CRLF.
			trimmed = bytes.ReplaceAll(trimmed, []byte("\r"), []byte(" "))
		}
		if len(trimmed) == 0 && (len(line) > 0 || err == io.EOF) {
			break // end of header (or of input)
		}
		if hdr.Len()+len(trimmed)+2 > maxOriginalHeader {
			// Keep complete lines only. The rest of the header is not
			// read, so the body cannot be found: return headers only.
			truncated = true
			break
		}
		hdr.Write(trimmed)
		hdr.WriteString("\r\n")
		if err == io.EOF {
			break
		}
	}
	o.header = hdr.Bytes()
	o.messageID = headerValue(o.header, "Message-Id")
	if !wantFull {
		return o, nil
	}
	if truncated {
		o.tooLarge = true
		return o, nil
	}
	body, err := io.ReadAll(io.LimitReader(br, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("ndr: reading original: %w", err)
	}
	if int64(len(body)) > maxBody {
		o.tooLarge = true
		return o, nil
	}
	body = toCRLF(body)
	if hasLongLine(o.header, maxLine) || hasLongLine(body, maxLine) {
		// message/rfc822 allows only 7bit, 8bit or binary (RFC 2046
		// §5.2.1), and a line this long fits neither 7bit nor 8bit.
		o.longLines = true
		return o, nil
	}
	o.body = body
	o.full = true
	return o, nil
}

// toCRLF turns bare LF and bare CR line ends into CRLF.
func toCRLF(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/32)
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch c {
		case '\r':
			out.WriteString("\r\n")
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out.WriteString("\r\n")
		default:
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}
