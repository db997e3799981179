package transport

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// Status is the delivery status of one recipient, with the meanings of the
// RFC 3464 §2.3.3 Action field: the outcome of a delivery attempt
// (Deferred, Delivered, Relayed, Failed, the only values a Connector
// returns), and, for a recipient waiting in a queue, Pending and Held.
type Status int

// Statuses.
const (
	// Deferred: not delivered this time, to be retried ("delayed").
	Deferred Status = iota
	// Delivered: the next hop accepted responsibility for the message.
	Delivered
	// Relayed: accepted by a next hop that does not support DSN, so a
	// requested success notification cannot be expected from it
	// (RFC 3461 §4.2: report "relayed").
	Relayed
	// Failed: permanently refused; the message must be returned to the
	// sender with a DSN.
	Failed
	// Pending: queued and not attempted yet.
	Pending
	// Held: waiting, but not attempted while an operator holds its message
	// (Postfix's hold queue). A queue reports it; it is never stored.
	Held
)

// String returns "deferred", "delivered", "relayed", "failed", "pending" or
// "held".
func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Relayed:
		return "relayed"
	case Failed:
		return "failed"
	case Pending:
		return "pending"
	case Held:
		return "held"
	}
	return "deferred"
}

// MarshalText returns String's word, so that JSON reports (CheckReport) and
// logs name a Status as the DSN Action field does.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads String's word.
func (s *Status) UnmarshalText(b []byte) error {
	for _, v := range []Status{Deferred, Delivered, Relayed, Failed, Pending, Held} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("transport: unknown status %q", b)
}

// Final reports whether the status ends delivery for that recipient.
func (s Status) Final() bool { return s == Delivered || s == Relayed || s == Failed }

// Sentinel errors for the decisions callers make; match them with
// errors.Is on a RecipientResult's Reply or on an *Error. Each is wrapped
// in an *Error carrying the reply and enhanced status codes.
var (
	// ErrSTARTTLSNotOffered: the level requires TLS but the server did not
	// advertise STARTTLS or refused the command. Enhanced code X.7.4
	// (RFC 3463 §3.8). An active attacker can strip STARTTLS; retrying
	// later or elsewhere is the only safe response.
	ErrSTARTTLSNotOffered = errors.New("transport: STARTTLS required but not offered")
	// ErrTLSHandshake: the TLS handshake failed. X.7.5.
	ErrTLSHandshake = errors.New("transport: TLS handshake failed")
	// ErrCertificate: the server certificate did not pass the level's
	// verification. X.7.5; the policy.FailureType says why.
	ErrCertificate = errors.New("transport: server certificate not accepted")
	// ErrTLSVersion: the negotiated TLS version is below the requirement's
	// minimum. X.7.5.
	ErrTLSVersion = errors.New("transport: TLS version below the required minimum")
	// ErrRequireTLS: the message carries REQUIRETLS and the hop cannot
	// meet it (RFC 8689 §4.2.1). Always permanent: 550 5.7.30.
	ErrRequireTLS = errors.New("transport: REQUIRETLS cannot be honoured on this hop")
	// ErrNullMX: the domain publishes a null MX (RFC 7505): it accepts no
	// mail. Always permanent: 556 5.1.10 (RFC 7505 §4.2).
	ErrNullMX = errors.New("transport: domain publishes a null MX and accepts no mail")
	// ErrNoMX: no usable mail exchanger: the domain does not exist, or no
	// MX host is allowed by the policy's MX patterns (RFC 8461 §4.1).
	ErrNoMX = errors.New("transport: no usable mail exchanger")
	// ErrAuthWithoutTLS: a route has credentials but the connection is not
	// TLS-protected; the Connector never sends credentials in plaintext.
	ErrAuthWithoutTLS = errors.New("transport: refusing to authenticate without TLS")
	// ErrAuthUnverifiedTLS: a route has credentials and the connection is
	// TLS, but the server certificate was not verified (levels May and
	// Encrypt), so the peer may be an active attacker; the Connector does
	// not send credentials to it unless Route.InsecureAuthUnverifiedTLS.
	ErrAuthUnverifiedTLS = errors.New("transport: refusing to authenticate to a server whose certificate was not verified")
	// ErrDANE: DANE could not be applied to a host (RFC 7672 §2.2): its
	// DNSSEC lookups failed (deferred), dane-only found no usable TLSA
	// records, or TLSA records came from the Policy while there is no DANE
	// lookup per host (Connector.DANE nil and no policy.DANEMember), so
	// that no host can be checked against its own records
	// (fails closed). A certificate that does not match the records is
	// ErrCertificate with a TLS-RPT failure type.
	ErrDANE = errors.New("transport: DANE requirement cannot be met")
	// ErrPolicyLookup: the TLS policy could not be determined, or names a
	// level this code does not know; the message is deferred, never
	// downgraded.
	ErrPolicyLookup = errors.New("transport: TLS policy lookup failed")
)

// RemoteMTA identifies the server a delivery went to.
type RemoteMTA struct {
	Host string // MX or next-hop host name
	IP   net.IP // address dialled
	Port int
}

// String renders "mx.example.com[192.0.2.1]:25".
func (m RemoteMTA) String() string {
	if m.Host == "" && m.IP == nil {
		return ""
	}
	return fmt.Sprintf("%s[%s]:%d", m.Host, m.IP, m.Port)
}

// RecipientResult is the outcome for one recipient (the per-recipient
// fields of RFC 3464 §2.3).
type RecipientResult struct {
	// Recipient as given in the Envelope.
	Recipient Recipient
	// Status is delivered, relayed, deferred or failed.
	Status Status
	// Reply is the final reply for this recipient, remote or synthesized
	// locally: for delivered mail the 250 reply to DATA, for failures the
	// refusal (with errors.Is-able cause in Reply.Err). Nil only if no
	// attempt could be made at all.
	Reply *Error
	// RemoteMTA is the server that gave Reply; zero if none was reached.
	RemoteMTA RemoteMTA
	// TLS describes the connection used; nil for plaintext or no connection.
	TLS *TLSInfo
	// Requirement is the policy applied to the hop, with its source.
	Requirement policy.Requirement
	// TLSFailure names the TLS failure, if one occurred, in TLS-RPT terms.
	// It can be set on a delivered result in MTA-STS testing mode.
	TLSFailure policy.FailureType
	// Time is when the final attempt for this recipient ended.
	Time time.Time
}

// Err returns Reply as an error when the recipient was not delivered or
// relayed, nil otherwise.
func (r *RecipientResult) Err() error {
	if r.Status == Delivered || r.Status == Relayed || r.Reply == nil {
		return nil
	}
	return r.Reply
}

// Attempt records one connection attempt to one address, for logs and
// diagnostics.
type Attempt struct {
	Domain    string
	RemoteMTA RemoteMTA
	// SourceIP is our address on the connection (TLS-RPT's
	// sending-mta-ip), nil if no connection was made.
	SourceIP net.IP
	TLS      *TLSInfo
	// Err is nil when the transaction reached its end (whatever the
	// recipients' outcomes), else why the attempt stopped.
	Err        error
	TLSFailure policy.FailureType
	// DANE is true when the host was checked against its own TLSA records
	// (RFC 7672), or failed for want of usable ones.
	DANE     bool
	Start    time.Time
	Duration time.Duration
}

// Result is the outcome of Connector.Deliver: one RecipientResult per
// envelope recipient, in envelope order.
type Result struct {
	Recipients []RecipientResult
	// Attempts lists the connection attempts made, in order.
	Attempts []Attempt
}

// Delivered reports whether every recipient was delivered or relayed.
func (r *Result) Delivered() bool {
	for i := range r.Recipients {
		if s := r.Recipients[i].Status; s != Delivered && s != Relayed {
			return false
		}
	}
	return true
}

// Deferred returns the recipients to retry later.
func (r *Result) Deferred() []Recipient {
	var out []Recipient
	for i := range r.Recipients {
		if r.Recipients[i].Status == Deferred {
			out = append(out, r.Recipients[i].Recipient)
		}
	}
	return out
}
