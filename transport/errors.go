package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/transport/smtpclient"
)

// EnhancedCode is an RFC 3463 enhanced status code, class.subject.detail,
// as package smtpclient defines it; the zero value means "none".
type EnhancedCode = smtpclient.EnhancedCode

// Error is an SMTP-level failure: a reply code, an enhanced status code, the
// text, the command it answered and the underlying cause. A Handler that
// returns an *Error has it sent to the client as is; the Connector reports
// remote replies and local TLS failures as *Error.
type Error struct {
	Code         int          // 3-digit reply code (RFC 5321 §4.2)
	EnhancedCode EnhancedCode // RFC 3463
	Message      string       // human text, without codes
	Command      string       // the command answered ("MAIL", "STARTTLS", "DATA"...), if known
	// Local is set when this MTA found the failure itself (a TLS or
	// REQUIRETLS requirement not met, a DNS answer, a lost connection…)
	// rather than receiving it as a reply: the code and text are then ours.
	// DSNs give such a diagnostic a non-"smtp" type (RFC 3464 §2.3.6).
	Local bool
	Err   error // the cause, if any
}

// Error renders "transport: 530 5.7.0 Must issue a STARTTLS command first".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("transport: ")
	if e.Command != "" {
		b.WriteString(e.Command)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%d", e.Code)
	if ec := e.EnhancedCode.String(); ec != "" {
		b.WriteString(" ")
		b.WriteString(ec)
	}
	if e.Message != "" {
		b.WriteString(" ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure is transient (4xx, RFC 5321 §4.2.1).
func (e *Error) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Reply renders the reply line as sent on the wire, without CRLF:
// "530 5.7.0 Must issue a STARTTLS command first".
func (e *Error) Reply() string {
	s := strconv.Itoa(e.Code)
	if ec := e.EnhancedCode.String(); ec != "" {
		s += " " + ec
	}
	if e.Message != "" {
		s += " " + e.Message
	}
	return s
}

// AsError returns err as an *Error if it is or wraps one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
