package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
)

// Errors returned by a Store. Match them with errors.Is.
var (
	// ErrNotFound: no message with that id is in the store (it was
	// delivered and removed, or removed by an operator).
	ErrNotFound = errors.New("queue: message not found")
	// ErrExists: Create was called with the id of a message already in the
	// store. The queue relies on this to make report creation idempotent.
	ErrExists = errors.New("queue: message already exists")
	// ErrCorrupt: a stored record cannot be read or parsed, or part of the
	// spool that held records was damaged on disk (a LogStore segment that
	// reads short of its seal). List returns it (wrapped, naming the
	// records or the segment) together with the records it could read;
	// the queue logs it and delivers the rest. The operator should inspect
	// what it names.
	ErrCorrupt = errors.New("queue: unreadable spool record")
	// ErrBadID: the id is empty or has characters other than ASCII letters,
	// digits, '.', '-' and '_' (ids become file names).
	ErrBadID = errors.New("queue: malformed message id")
)

// Store keeps queued messages durably: a body that never changes and a
// metadata record (envelope and per-recipient state) that the queue
// replaces after every delivery attempt.
//
// Implementations must be safe for concurrent use and honour ctx. Create
// and Update must return only once the change survives a crash of the
// process and of the machine (for the file store: data fsynced, atomic
// rename, directory fsynced). Delete may return before the removal is
// durable, provided it becomes durable soon after and a removal lost in a
// machine crash brings back the message's last durable record (the queue
// then delivers it again: a duplicate, never a loss). The queue calls
// Update for a given id from one goroutine at a time.
//
// A Queue assumes it is the only one working on its Store; STORE.md in
// this directory describes how a store shared by several machines would map
// onto a database with row leases.
type Store interface {
	// Create stores a new message: it reads body to its end, sets m.Size to
	// the number of bytes read, and stores body and m. It returns ErrExists,
	// and changes nothing, if m.ID is already stored. When Create returns nil
	// the message is durable.
	Create(ctx context.Context, m *Message, body io.Reader) error
	// Update durably replaces the metadata of an existing message; it
	// returns ErrNotFound if the message is gone.
	Update(ctx context.Context, m *Message) error
	// Get returns the stored metadata of one message, or ErrNotFound.
	Get(ctx context.Context, id string) (*Message, error)
	// Body opens the body of a message for reading, or returns ErrNotFound.
	// The caller closes it.
	Body(ctx context.Context, id string) (Body, error)
	// List returns the metadata of every stored message, in no particular
	// order. Records that cannot be read are left out and reported by an
	// error wrapping ErrCorrupt, returned with the others.
	List(ctx context.Context) ([]*Message, error)
	// Delete removes a message so that a crash half-way never leaves a
	// listable message without its body (the file store removes the file
	// holding body and first record first, and a leftover later record is
	// removed when the store is opened). Deleting a missing message
	// returns ErrNotFound. See the Store documentation for durability.
	Delete(ctx context.Context, id string) error
}

// Body is the stored content of a message, readable at any offset (the
// Connector may read it several times, once per next hop).
type Body interface {
	io.ReaderAt
	io.Closer
	// Size is the length of the body in bytes.
	Size() int64
}

// storedStates are the statuses a recipient's record may hold.
var storedStates = [...]transport.Status{transport.Pending, transport.Deferred, transport.Delivered, transport.Relayed, transport.Failed}

func storable(s transport.Status) bool {
	for _, v := range storedStates {
		if s == v {
			return true
		}
	}
	return false
}

// RecordFormat is the format version of the Message records this code
// writes. Format 1 added the version field itself; its fields are those of
// format 0, which is read unchanged.
const RecordFormat = 1

// Message is the durable record of a queued message: its envelope, how it
// arrived, and the delivery state of every recipient. The file store writes
// it as JSON; field names are part of the spool format.
type Message struct {
	// Format is the record's format version, RecordFormat when written by
	// this code; records without it (0) are the first format, which this
	// code reads as they are.
	Format int `json:"format,omitempty"`
	// ID is the queue id, also the file name stem in the file store.
	ID string `json:"id"`
	// ReceivedID is the id the inbound server gave the message, if any.
	ReceivedID string `json:"received_id,omitempty"`
	// From is the reverse-path; "" is the null reverse-path (RFC 5321
	// §4.5.5), which never receives a DSN.
	From string `json:"from"`
	// Recipients with their state, in RCPT order.
	Recipients []*Recipient `json:"recipients"`

	RequireTLS    bool               `json:"require_tls,omitempty"`     // RFC 8689 §4.1
	TLSRequiredNo bool               `json:"tls_required_no,omitempty"` // RFC 8689 §3
	SMTPUTF8      bool               `json:"smtputf8,omitempty"`        // RFC 6531
	BodyType      transport.BodyType `json:"body_type,omitempty"`       // BODY= (RFC 6152)
	Return        ndr.Return         `json:"ret,omitempty"`             // RET= (RFC 3461 §4.3)
	EnvelopeID    string             `json:"envid,omitempty"`           // ENVID= (RFC 3461 §4.4)

	// ClientAddr, Helo, AuthIdentity and ReceivedTLS describe how the message
	// arrived (for Received-From-MTA in reports and for operators).
	ClientAddr   string             `json:"client_addr,omitempty"`
	Helo         string             `json:"helo,omitempty"`
	AuthIdentity string             `json:"auth,omitempty"`
	ReceivedTLS  *transport.TLSInfo `json:"received_tls,omitempty"`
	// ReceivedAt is when the message was accepted; MaxAge and DelayWarning
	// count from it.
	ReceivedAt time.Time `json:"received_at"`
	// Size is the body size in bytes, set by Store.Create.
	Size int64 `json:"size"`

	// Report marks a delivery status notification this queue generated.
	// It has a null reverse-path, so its own failures are logged and
	// dropped, never reported (RFC 3461 §6.2).
	Report bool `json:"report,omitempty"`
	// ReportSeq counts the reports planned for this message; report ids are
	// ID + ".r" + sequence number, so planning and creating a report is
	// idempotent across crashes.
	ReportSeq int `json:"report_seq,omitempty"`

	// Held is set by Queue.Hold: no delivery attempt is made for the
	// message until Queue.Release (Postfix's hold queue, "postsuper -h").
	// Records written without it are not held.
	Held bool `json:"held,omitempty"`
	// HeldAt is when the message was held; zero when it is not.
	HeldAt time.Time `json:"held_at,omitzero"`
}

// Recipient is one forward-path and its delivery state.
type Recipient struct {
	Address string `json:"address"`
	// Notify is the NOTIFY= parameter (RFC 3461 §4.1), stored as its
	// keywords; zero means FAILURE,DELAY.
	Notify ndr.Notify `json:"notify,omitempty"`
	// ORCPT is the ORCPT= parameter as "addr-type;address" (RFC 3461 §4.2).
	ORCPT string `json:"orcpt,omitempty"`

	State transport.Status `json:"state"`
	// Attempts counts delivery attempts that reached a result.
	Attempts int `json:"attempts,omitempty"`
	// LastAttempt is when the last attempt ended.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// NextAttempt is when a Pending or Deferred recipient is due.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// LastError is the last failure, nil if none.
	LastError *LastError `json:"last_error,omitempty"`
	// RemoteMTA is the host that gave the final or last reply.
	RemoteMTA string `json:"remote_mta,omitempty"`
	// Expired is set when the recipient failed because MaxAge passed.
	Expired bool `json:"expired,omitempty"`
	// TLS describes the TLS session of the last attempt's connection to
	// the next hop; nil if it had none (plaintext, or no connection made).
	TLS *transport.TLSInfo `json:"tls,omitempty"`
	// Policy is the TLS requirement applied at the last attempt, as
	// "source:level" (policy.Source and policy.Level: "mta-sts:verify",
	// "static:encrypt"); empty if no requirement was looked up.
	Policy string `json:"policy,omitempty"`

	// FinalReport is the id of the DSN planned for the final state ("" if
	// none is due); FinalReportDone is set once it is in the queue or was
	// dropped.
	FinalReport     string `json:"final_report,omitempty"`
	FinalReportDone bool   `json:"final_report_done,omitempty"`
	// DelayReport and DelayReportDone do the same for the one "delayed" DSN.
	DelayReport     string `json:"delay_report,omitempty"`
	DelayReportDone bool   `json:"delay_report_done,omitempty"`
}

// LastError is a failure as the remote server (or the local TLS policy)
// described it.
type LastError struct {
	Code         int    `json:"code,omitempty"`          // reply code, RFC 5321 §4.2
	EnhancedCode string `json:"enhanced_code,omitempty"` // RFC 3463, "4.7.4"
	Message      string `json:"message,omitempty"`
	RemoteMTA    string `json:"remote_mta,omitempty"`
	// TLSFailure is the TLS-RPT result type (RFC 8460 §4.3), if the failure
	// was a TLS one: "starttls-not-supported", "certificate-host-mismatch"...
	TLSFailure policy.FailureType `json:"tls_failure,omitempty"`
	// Policy is where the TLS requirement that applied came from.
	Policy policy.Source `json:"policy,omitempty"`
	// Local is set when this MTA detected the failure itself (a TLS
	// requirement not met, REQUIRETLS, a null MX, a failed policy or DNS
	// lookup, a lost connection...): Code, EnhancedCode and Message are
	// ours, not a reply from RemoteMTA. Reports then give the diagnostic
	// with a non-"smtp" type (RFC 3464 §2.3.6). RemoteMTA is set only if
	// a connection to it was made.
	Local bool `json:"local,omitempty"`
}

// Reply renders the error as an SMTP reply line: "450 4.7.4 text".
func (e *LastError) Reply() string {
	if e == nil {
		return ""
	}
	var parts []string
	if e.Code != 0 {
		parts = append(parts, fmt.Sprint(e.Code))
	}
	if e.EnhancedCode != "" {
		parts = append(parts, e.EnhancedCode)
	}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	return strings.Join(parts, " ")
}

// Done reports whether every recipient is final and every planned report
// has been queued: the message can be removed.
func (m *Message) Done() bool {
	for _, r := range m.Recipients {
		if !r.State.Final() {
			return false
		}
		if r.FinalReport != "" && !r.FinalReportDone {
			return false
		}
		if r.DelayReport != "" && !r.DelayReportDone {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of m.
func (m *Message) Clone() *Message {
	c := *m
	if m.ReceivedTLS != nil {
		t := *m.ReceivedTLS
		c.ReceivedTLS = &t
	}
	c.Recipients = make([]*Recipient, len(m.Recipients))
	for i, r := range m.Recipients {
		rc := *r
		rc.Notify = r.Notify
		if r.LastError != nil {
			le := *r.LastError
			rc.LastError = &le
		}
		if r.TLS != nil {
			t := *r.TLS
			rc.TLS = &t
		}
		c.Recipients[i] = &rc
	}
	return &c
}

// validID reports whether id is usable as a file name stem.
func validID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// maxMetadata bounds a metadata record the file store will read.
const maxMetadata = 16 << 20

// encodeMessage renders the spool format of m.
func encodeMessage(m *Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	m.Format = RecordFormat
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("queue: encoding message %s: %w", m.ID, err)
	}
	return append(b, '\n'), nil
}

// DecodeMessage parses and checks a metadata record as the file store
// writes it. It rejects records with a malformed id, no recipients, an
// unknown state or a negative size.
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) > maxMetadata {
		return nil, fmt.Errorf("queue: metadata record of %d bytes is too large", len(b))
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("queue: decoding metadata: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Message) validate() error {
	if m.Format < 0 || m.Format > RecordFormat {
		return fmt.Errorf("%w: message %s has record format %d; this code reads formats up to %d", ErrCorrupt, m.ID, m.Format, RecordFormat)
	}
	if !validID(m.ID) {
		return fmt.Errorf("%w: %q", ErrBadID, m.ID)
	}
	if len(m.Recipients) == 0 {
		return fmt.Errorf("queue: message %s has no recipients", m.ID)
	}
	for i, r := range m.Recipients {
		if r == nil {
			return fmt.Errorf("queue: message %s: recipient %d is null", m.ID, i)
		}
		if !storable(r.State) {
			return fmt.Errorf("queue: message %s: recipient %d has unknown state %q", m.ID, i, r.State)
		}
		if r.Attempts < 0 {
			return fmt.Errorf("queue: message %s: recipient %d has negative attempts", m.ID, i)
		}
		for _, id := range []string{r.FinalReport, r.DelayReport} {
			if id != "" && !validID(id) {
				return fmt.Errorf("queue: message %s: recipient %d: %w: %q", m.ID, i, ErrBadID, id)
			}
		}
	}
	if m.Size < 0 {
		return fmt.Errorf("queue: message %s has negative size", m.ID)
	}
	if m.ReportSeq < 0 {
		return fmt.Errorf("queue: message %s has negative report sequence", m.ID)
	}
	return nil
}
