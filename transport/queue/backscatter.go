package queue

import (
	"strings"

	"github.com/mailtls/mailtls/ndr"
)

// Origin is what the backscatter rule (MayOriginate) knows about a message
// and one of its recipients.
type Origin struct {
	// Trusted: the message was submitted by a client that authenticated
	// (AUTH, RFC 4954; Message.AuthIdentity), or it was not received over
	// SMTP at all (no Message.ClientAddr: made on this host). A client
	// trusted by its address alone (Postfix's mynetworks) is not
	// distinguished from the rest of the MX listener's clients.
	Trusted bool
	// LocalRecipient: the recipient is delivered here, finally (a
	// LocalDomain domain, or a Queue with FinalDelivery).
	LocalRecipient bool
	// LocalSender: the domain of the reverse-path is a LocalDomain domain.
	LocalSender bool
}

// MayOriginate is the backscatter rule: whether this MTA may originate a
// report with action a about a recipient with origin o, once NOTIFY has
// asked for it (ndr.ShouldReport).
//
// The reverse-path of mail an anonymous client hands to an MX is whatever
// that client wrote. A report to it is "backscatter" when the client named
// a third party: success reports (RFC 3461 §5.2.3) would let anyone have
// this MTA mail any address a report carrying headers of their choice, on
// demand (NOTIFY=SUCCESS), and delay reports would do the same for every
// message a local mailbox is slow to take. So a "delivered" or "delayed"
// report about a local recipient of untrusted mail goes only to a sender in
// one of our own domains. RFC 3461 §5.2.3 and §6.2 make the report the
// MTA's to issue, not a condition of delivery. Failure reports ("failed")
// are kept whatever the origin: RFC 5321 §3.6.3 and §6.1 require them, and
// "relayed" and "expanded" ones are not about final delivery here. A
// report never carries more of the original than its header (RFC 3461
// §4.3 for success and delay reports), and that header is capped (ndr).
func MayOriginate(a ndr.Action, o Origin) bool {
	switch a {
	case ndr.ActionDelivered, ndr.ActionDelayed:
		return o.Trusted || !o.LocalRecipient || o.LocalSender
	}
	return true
}

// isLocal reports whether domain is a LocalDomain domain.
func (q *Queue) isLocal(domain string) bool {
	return q.LocalDomain != nil && domain != "" && q.LocalDomain(strings.ToLower(strings.TrimSuffix(domain, ".")))
}

// deliversFinally reports whether a recipient with address addr is
// delivered to its mailbox here (RFC 3461 §5.2.3).
func (q *Queue) deliversFinally(addr string) bool {
	return q.FinalDelivery || q.isLocal(domainOf(addr))
}

// delivererFor returns the Deliverer of a job for domain.
func (q *Queue) delivererFor(domain string) Deliverer {
	if q.Local != nil && q.isLocal(domain) {
		return q.Local
	}
	return q.Deliverer
}

// reportWanted reports whether recipient r of m gets a report with action
// a: NOTIFY asks for it (ndr.ShouldReport), a "delivered" report is about a
// final delivery here (a Delivered result from a relaying Deliverer means
// the next hop took the NOTIFY parameter with the message, RFC 3461
// §5.2.1), and the backscatter rule allows it (MayOriginate).
func (q *Queue) reportWanted(m *Message, r *Recipient, a ndr.Action) bool {
	final := q.deliversFinally(r.Address)
	if a == ndr.ActionDelivered && !final {
		return false
	}
	if !ndr.ShouldReport(r.Notify, a, m.From) {
		return false
	}
	return MayOriginate(a, Origin{
		Trusted:        m.AuthIdentity != "" || m.ClientAddr == "",
		LocalRecipient: final,
		LocalSender:    q.isLocal(domainOf(m.From)),
	})
}
