package ndr

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Notify is the value of the NOTIFY parameter of RCPT TO (RFC 3461 §4.1):
// which delivery outcomes the sender wants reported for a recipient.
//
// The zero value means the parameter was absent; [ShouldReport] then applies
// the default FAILURE,DELAY, one of the two defaults RFC 3461 §4.1 allows.
type Notify uint8

// Notify keywords (RFC 3461 §4.1). NotifyNever cannot be combined with the
// others.
const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// NotifyDefault is what an absent NOTIFY parameter means to this package.
const NotifyDefault = NotifyFailure | NotifyDelay

// ErrBadNotify is returned by [ParseNotify] for a NOTIFY value RFC 3461 §4.1
// does not allow; the SMTP server should answer 501 5.5.4.
var ErrBadNotify = errors.New("ndr: invalid NOTIFY parameter")

// ParseNotify parses the value of a NOTIFY parameter (RFC 3461 §4.1):
// "NEVER" or a comma-separated list of SUCCESS, FAILURE and DELAY, in any
// case. The empty string gives the zero Notify (parameter absent).
func ParseNotify(s string) (Notify, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	var n Notify
	for _, kw := range strings.Split(s, ",") {
		var bit Notify
		switch strings.ToUpper(strings.TrimSpace(kw)) {
		case "NEVER":
			bit = NotifyNever
		case "SUCCESS":
			bit = NotifySuccess
		case "FAILURE":
			bit = NotifyFailure
		case "DELAY":
			bit = NotifyDelay
		default:
			return 0, fmt.Errorf("%w: unknown keyword %q", ErrBadNotify, kw)
		}
		if n&bit != 0 {
			return 0, fmt.Errorf("%w: %q repeated", ErrBadNotify, kw)
		}
		n |= bit
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, fmt.Errorf("%w: NEVER combined with other keywords", ErrBadNotify)
	}
	return n, nil
}

// String renders n as a NOTIFY parameter value ("SUCCESS,FAILURE"), or ""
// for the zero value.
func (n Notify) String() string {
	if n&NotifyNever != 0 {
		return "NEVER"
	}
	var kw []string
	if n&NotifySuccess != 0 {
		kw = append(kw, "SUCCESS")
	}
	if n&NotifyFailure != 0 {
		kw = append(kw, "FAILURE")
	}
	if n&NotifyDelay != 0 {
		kw = append(kw, "DELAY")
	}
	return strings.Join(kw, ",")
}

// MarshalJSON writes n as a JSON array of its keywords (["SUCCESS",
// "FAILURE"]), or null for the zero value.
func (n Notify) MarshalJSON() ([]byte, error) {
	if n == 0 {
		return []byte("null"), nil
	}
	return json.Marshal(strings.Split(n.String(), ","))
}

// UnmarshalJSON reads what MarshalJSON writes, checking it as ParseNotify
// does.
func (n *Notify) UnmarshalJSON(b []byte) error {
	var kw []string
	if err := json.Unmarshal(b, &kw); err != nil {
		return err
	}
	v, err := ParseNotify(strings.Join(kw, ","))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// IsNullSender reports whether sender is the null reverse-path ("" or "<>",
// RFC 5321 §4.5.5), which must never receive a delivery status notification.
func IsNullSender(sender string) bool {
	s := strings.TrimSpace(sender)
	return s == "" || s == "<>"
}

// ShouldReport reports whether a delivery status notification must be sent
// to sender about a recipient whose outcome is action, given the NOTIFY
// parameter of that recipient (RFC 3461 §4.1 and §5.2):
//
//   - never when sender is null (RFC 3461 §6.1, RFC 5321 §4.5.5: reports are
//     sent with a null reverse-path and must not cause reports themselves);
//   - never with NOTIFY=NEVER;
//   - failed needs FAILURE (RFC 3461 §5.2.6); delayed needs DELAY
//     (§5.2.5);
//   - delivered, relayed and expanded need SUCCESS (RFC 3461 §5.2.3,
//     §5.2.2 and §5.2.7);
//   - a zero notify (parameter absent) means FAILURE,DELAY.
func ShouldReport(notify Notify, action Action, sender string) bool {
	if IsNullSender(sender) {
		return false
	}
	if notify == 0 {
		notify = NotifyDefault
	}
	if notify&NotifyNever != 0 {
		return false
	}
	switch Action(strings.ToLower(string(action))) {
	case ActionFailed:
		return notify&NotifyFailure != 0
	case ActionDelayed:
		return notify&NotifyDelay != 0
	case ActionDelivered, ActionRelayed, ActionExpanded:
		return notify&NotifySuccess != 0
	}
	return false
}
