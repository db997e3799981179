package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// sendReport builds the delivery status notification id about the
// recipients of m planned for it (RFC 3464, through ndr) and queues it as a
// new message with a null reverse-path to m's sender (RFC 3461 §6.2). A
// report already queued under id is not queued again. A report that cannot
// be built is logged and dropped (returning nil), since retrying would not
// help; a storage failure is returned.
//
// The new report is returned, not scheduled: the caller schedules it only
// after recording that it was queued, so that it cannot be delivered and
// removed while the original still says "not queued" (a crash then would
// queue it again).
func (q *Queue) sendReport(ctx context.Context, m *Message, id string, delay bool) (*Message, error) {
	if ndr.IsNullSender(m.From) {
		return nil, nil // never reached: ShouldReport refuses; kept as a guard
	}
	if _, err := q.Store.Get(ctx, id); err == nil {
		return nil, nil // created before a crash; Run loaded it
	}
	rep := reportAbout(m, q.reportingMTA())
	rep.Language, rep.Now, rep.DKIM = q.Language, q.now, q.DKIM
	expiry := m.ReceivedAt.Add(q.maxAge())
	for _, r := range m.Recipients {
		if (delay && r.DelayReport != id) || (!delay && r.FinalReport != id) {
			continue
		}
		rep.Recipients = append(rep.Recipients, reportRecipient(r, delay, expiry))
	}
	if len(rep.Recipients) == 0 {
		return nil, nil
	}
	body, err := q.Store.Body(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	rep.Original = io.NewSectionReader(body, 0, body.Size())
	b, err := rep.Build()
	if err != nil {
		q.logger().Error("building report failed; dropped", "id", m.ID, "report", id, "err", err)
		return nil, nil
	}
	now := q.now()
	dsn := &Message{
		ID:         id,
		From:       "",
		Recipients: []*Recipient{{Address: m.From, State: transport.Pending, NextAttempt: now}},
		SMTPUTF8:   m.SMTPUTF8 || !isASCII(m.From),
		ReceivedAt: now,
		Report:     true,
	}
	if err := q.Store.Create(ctx, dsn, bytes.NewReader(b)); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, nil
		}
		return nil, fmt.Errorf("queue: queueing report %s: %w", id, err)
	}
	q.observeReport(rep)
	actions := make([]string, len(rep.Recipients))
	for i, r := range rep.Recipients {
		actions[i] = string(r.Action) + " " + r.FinalRecipient
	}
	q.logger().Info("report queued", "id", id, "about", m.ID, "to", m.From, "recipients", strings.Join(actions, ", "))
	return dsn, nil
}

// reportAbout is the report header about message m: everything but the
// recipients and the original (RFC 3464 §2.2).
func reportAbout(m *Message, reportingMTA string) *ndr.Report {
	return &ndr.Report{
		ReportingMTA:       reportingMTA,
		OriginalEnvelopeID: m.EnvelopeID,
		ReceivedFromMTA:    m.Helo,
		ArrivalDate:        m.ReceivedAt,
		Sender:             m.From,
		SMTPUTF8:           m.SMTPUTF8,
		RequireTLS:         m.RequireTLS,
		Return:             m.Return,
	}
}

// Report turns the result of one delivery attempt of env (what
// Deliverer.Deliver, such as transport.Connector.Deliver, returned: res
// and err) into the delivery status notification the queue would send
// (RFC 3464, RFC 3461 §6) after a relaying Deliverer: a "failed" group
// for every recipient that failed and a "relayed" group for one accepted by
// a next hop without DSN support, as NOTIFY asks (RFC 3461 §5.2), each with
// its status, remote MTA, diagnostic and, for TLS failures, the reason in
// words. A recipient the next hop accepted with DSN support is left out
// (the next hop took its NOTIFY, §5.2.1), as are recipients still to be
// retried. reportingMTA is this host's name. The
// result is nil when no recipient is to be reported, or the sender is the
// null reverse-path (RFC 5321 §4.5.5). The caller sets Original and
// Language as it likes and calls Build or WriteTo.
func Report(env *transport.Envelope, res *transport.Result, err error, reportingMTA string) *ndr.Report {
	now := time.Now()
	m := messageOf(env, now)
	rep := reportAbout(m, reportingMTA)
	for i, o := range outcomes(env, res, err) {
		r := m.Recipients[i]
		r.State, r.LastError, r.RemoteMTA, r.LastAttempt = o.state, o.err, o.remoteMTA, now
		if r.State == transport.Delivered || !r.State.Final() || !ndr.ShouldReport(r.Notify, actionOf(r.State), m.From) {
			continue
		}
		rep.Recipients = append(rep.Recipients, reportRecipient(r, false, time.Time{}))
	}
	if len(rep.Recipients) == 0 {
		return nil
	}
	return rep
}

// LocalDiagnosticType is the diagnostic-type (RFC 3464 §2.3.6) of the
// Diagnostic-Code in reports about failures this MTA detected itself
// rather than replies from a remote server (LastError.Local).
const LocalDiagnosticType = "X-mailtls"

// reportRecipient is the per-recipient group of a report (RFC 3464 §2.3).
func reportRecipient(r *Recipient, delay bool, expiry time.Time) ndr.Recipient {
	rr := ndr.Recipient{
		OriginalRecipient: r.ORCPT,
		FinalRecipient:    r.Address,
		RemoteMTA:         r.RemoteMTA,
		LastAttemptDate:   r.LastAttempt,
	}
	if !isASCII(r.Address) {
		rr.FinalRecipient = "utf-8; " + r.Address
	}
	le := r.LastError
	if le != nil {
		// Remote-MTA names the server the diagnostic is about (RFC 3464
		// §2.3.5), not one from an earlier attempt; for a failure found
		// before any connection there is none.
		rr.RemoteMTA = le.RemoteMTA
		rr.DiagnosticCode = le.Reply()
		if le.Local {
			// RFC 3464 §2.3.6: diagnostic-type "smtp" is for the reply the
			// remote MTA actually sent. A failure this MTA detected itself
			// (STARTTLS not offered, certificate refused, DANE, REQUIRETLS,
			// null MX, policy lookup...) is our own text, given with an
			// X- type as Postfix gives "X-Postfix; TLS is required, but
			// was not offered by host ...". The Status field carries the
			// enhanced code.
			rr.DiagnosticType = LocalDiagnosticType
			rr.DiagnosticCode = le.Message
			if rr.DiagnosticCode == "" {
				rr.DiagnosticCode = le.Reply()
			}
		}
		if le.TLSFailure != "" {
			rr.Reason = &ndr.Reason{
				Domain:  domainOf(r.Address),
				MX:      le.RemoteMTA,
				Failure: le.TLSFailure,
				Source:  le.Policy,
			}
		}
	}
	code := ""
	if le != nil {
		code = le.EnhancedCode
	}
	switch {
	case delay:
		rr.Action = ndr.ActionDelayed
		rr.Status = ndr.Transient(orStatus(code, ndr.StatusBadConnection))
		rr.WillRetryUntil = expiry
	case r.State == transport.Delivered:
		rr.Action = ndr.ActionDelivered
		rr.Status = ndr.StatusOK
	case r.State == transport.Relayed:
		rr.Action = ndr.ActionRelayed
		rr.Status = ndr.StatusOK
	case r.Expired:
		// RFC 3463 §3.5 X.4.7 "delivery time expired"; the last reply is
		// kept as the Diagnostic-Code. A TLS failure keeps its own code so
		// the report explains which requirement was not met.
		rr.Action = ndr.ActionFailed
		rr.Status = ndr.StatusExpiredFailed
		if le != nil && le.TLSFailure != "" {
			rr.Status = ndr.Permanent(orStatus(code, ndr.StatusExpiredFailed))
		}
	default:
		rr.Action = ndr.ActionFailed
		rr.Status = ndr.Permanent(orStatus(code, "5.0.0"))
	}
	return rr
}

func orStatus(code, def string) string {
	if _, _, _, ok := ndr.ParseStatus(code); ok {
		return code
	}
	return def
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
