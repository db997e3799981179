package transport

import (
	"time"

	"github.com/mailtls/mailtls/policy"
)

// Observer receives what a Server or a Connector does, as typed events, so
// that an application can count them in the metrics system it uses
// (package transport/prommetrics adapts it to Prometheus). Package transport
// depends on no metrics system.
//
// Methods are called synchronously on the goroutine of the connection or
// delivery concerned: they must be safe for concurrent use, must not block
// and should be cheap (increment a counter). A nil Observer field costs
// nothing: no event is built.
//
// Methods may be added to Observer; implementations that embed NopObserver
// keep compiling and ignore the new events.
type Observer interface {
	// ObserveSession is called once per inbound connection, when it ends
	// or is refused at connect.
	ObserveSession(SessionEvent)
	// ObserveAuth is called once per AUTH exchange that reached the
	// Authenticator or was refused by it (RFC 4954 §6).
	ObserveAuth(AuthEvent)
	// ObserveRefusal is called when a Server refuses a command, a
	// connection or a TLS handshake for one of the reasons of
	// RefusalReason.
	ObserveRefusal(RefusalEvent)
	// ObserveDelivery is called by Connector.Deliver once per recipient
	// result, when the result is known.
	ObserveDelivery(DeliveryEvent)
	// ObserveTLSFailure is called by Connector.Deliver once per connection
	// attempt that met a TLS failure (Attempt.TLSFailure not empty).
	ObserveTLSFailure(TLSFailureEvent)
}

// NopObserver ignores every event. Embed it in an Observer implementation
// to keep compiling when events are added.
type NopObserver struct{}

// ObserveSession does nothing.
func (NopObserver) ObserveSession(SessionEvent) {}

// ObserveAuth does nothing.
func (NopObserver) ObserveAuth(AuthEvent) {}

// ObserveRefusal does nothing.
func (NopObserver) ObserveRefusal(RefusalEvent) {}

// ObserveDelivery does nothing.
func (NopObserver) ObserveDelivery(DeliveryEvent) {}

// ObserveTLSFailure does nothing.
func (NopObserver) ObserveTLSFailure(TLSFailureEvent) {}

var _ Observer = NopObserver{}

// SessionOutcome is how an inbound connection ended.
type SessionOutcome int

// Session outcomes.
const (
	// SessionNoMail: the connection ended without an accepted message
	// (QUIT after EHLO, a refused transaction, a timeout).
	SessionNoMail SessionOutcome = iota
	// SessionAccepted: at least one message was accepted (250 to the end
	// of its data, RFC 5321 §4.1.1.4).
	SessionAccepted
	// SessionTLSFailed: the TLS handshake (STARTTLS, RFC 3207, or implicit
	// TLS, RFC 8314 §3.3) failed; no message can have been accepted after
	// it.
	SessionTLSFailed
	// SessionRefused: the connection was refused at connect, over
	// MaxConnections or MaxConnectionsPerClient ("421 4.7.0").
	SessionRefused
)

var sessionOutcomeNames = [...]string{"no-mail", "accepted", "tls-failed", "refused"}

// String returns "no-mail", "accepted", "tls-failed" or "refused".
func (o SessionOutcome) String() string {
	return enumName(o, sessionOutcomeNames[:])
}

// enumName returns names[v], or "unknown" out of range.
func enumName[T ~int](v T, names []string) string {
	if v >= 0 && int(v) < len(names) {
		return names[v]
	}
	return "unknown"
}

// SessionEvent describes one inbound connection that ended.
type SessionEvent struct {
	Kind ListenerKind
	// TLSVersion is the negotiated TLS version (tls.VersionTLS13...), or 0
	// if the connection never completed a handshake.
	TLSVersion uint16
	Outcome    SessionOutcome
	// Messages is how many messages were accepted on the connection.
	Messages int
	// Duration is how long the connection lasted.
	Duration time.Duration
}

// AuthOutcome is the result of an AUTH exchange (RFC 4954 §6).
type AuthOutcome int

// AUTH outcomes.
const (
	// AuthSucceeded: "235 2.7.0".
	AuthSucceeded AuthOutcome = iota
	// AuthFailed: bad credentials, "535 5.7.8"; the attempt counts against
	// the client's failure budget (Server.AuthMaxFailures).
	AuthFailed
	// AuthTempFailed: "454 4.7.0", the Authenticator failed or no
	// password-check slot was free; nothing was decided about the
	// credentials.
	AuthTempFailed
)

var authOutcomeNames = [...]string{"success", "failure", "temporary-failure"}

// String returns "success", "failure" or "temporary-failure".
func (o AuthOutcome) String() string {
	return enumName(o, authOutcomeNames[:])
}

// AuthEvent describes one AUTH exchange.
type AuthEvent struct {
	Kind    ListenerKind
	Outcome AuthOutcome
}

// RefusalReason is why a Server refused a client's command, handshake or
// connection, for the policies an operator sets.
type RefusalReason int

// Refusal reasons.
const (
	// RefusalNoSTARTTLS: a command other than EHLO, HELO, STARTTLS, NOOP,
	// RSET or QUIT before TLS where the inbound policy requires TLS:
	// "530 5.7.0 Must issue a STARTTLS command first" (RFC 3207 §4).
	RefusalNoSTARTTLS RefusalReason = iota
	// RefusalWeakTLS: a TLS handshake refused because the client offered
	// only versions below the policy's minimum or no cipher suite meeting
	// its floor (RFC 8996, RFC 9325 §3.1); crypto/tls sends the alert.
	RefusalWeakTLS
	// RefusalPlaintextAuth: AUTH in plaintext, "538 5.7.11 Encryption
	// required for requested authentication mechanism" (RFC 4954 §4, §6).
	RefusalPlaintextAuth
	// RefusalRequireTLSPlaintext: MAIL FROM with REQUIRETLS in a plaintext
	// session, "530 5.7.10" (RFC 8689 §4.1).
	RefusalRequireTLSPlaintext
	// RefusalConnectionLimit: a connection over MaxConnections, "421 4.7.0",
	// or one closed to admit it (see Server.MaxConnections).
	RefusalConnectionLimit
	// RefusalClientLimit: a connection over MaxConnectionsPerClient, "421
	// 4.7.0" (Postfix's smtpd_client_connection_count_limit).
	RefusalClientLimit
	// RefusalAuthRateLimit: AUTH from a client over its failure budget,
	// "454 4.7.0" (Server.AuthMaxFailures, AuthMaxNetworkFailures).
	RefusalAuthRateLimit
)

var refusalNames = [...]string{"no-starttls", "weak-tls", "plaintext-auth", "requiretls-plaintext",
	"connection-limit", "client-limit", "auth-rate-limit"}

// String returns "no-starttls", "weak-tls", "plaintext-auth",
// "requiretls-plaintext", "connection-limit", "client-limit" or
// "auth-rate-limit".
func (r RefusalReason) String() string {
	return enumName(r, refusalNames[:])
}

// RefusalReasons lists every RefusalReason, in order.
func RefusalReasons() []RefusalReason {
	out := make([]RefusalReason, len(refusalNames))
	for i := range out {
		out[i] = RefusalReason(i)
	}
	return out
}

// RefusalEvent describes one refusal.
type RefusalEvent struct {
	Kind   ListenerKind
	Reason RefusalReason
}

// DeliveryEvent describes the result of Connector.Deliver for one
// recipient.
type DeliveryEvent struct {
	// Domain is the recipient's domain, in lower case.
	Domain string
	Status Status
	// TLSVersion is the TLS version of the connection the result came
	// from, or 0 for plaintext or no connection.
	TLSVersion uint16
	// Verified says whether the server certificate was verified.
	Verified bool
	// Level and Source are the policy applied to the hop.
	Level  policy.Level
	Source policy.Source
	// TLSFailure is the RFC 8460 §4.3 result type of a TLS failure, if one
	// occurred (it can be set on a delivered result in MTA-STS testing
	// mode).
	TLSFailure policy.FailureType
	// Duration is how long the delivery of the recipient's next-hop group
	// took (lookups, connections, transaction).
	Duration time.Duration
}

// TLSFailureEvent describes one connection attempt that failed, or in
// MTA-STS testing mode would have failed, for a TLS reason, named with the
// result types of TLS-RPT (RFC 8460 §4.3.2).
type TLSFailureEvent struct {
	// Domain is the recipients' domain, in lower case; for a fixed next
	// hop shared by several domains, the policy domain of the attempt
	// (Attempt.Domain, which may name the hop, "[host]:port").
	Domain string
	Type   policy.FailureType
	// DANE says whether the host was checked against its TLSA records.
	DANE bool
}

// observeSession reports the end of c, once.
func (c *inConn) observeSession() {
	o := c.srv.Observer
	if o == nil {
		return
	}
	c.mu.Lock()
	ev := SessionEvent{Kind: c.srv.Kind, Duration: time.Since(c.started)}
	if c.phase == phaseTLS && c.hs.state != nil {
		ev.TLSVersion = c.hs.state.Version
	}
	failed := c.hs.failed
	c.mu.Unlock()
	ev.Messages = int(c.accepted.Load())
	switch {
	case failed:
		ev.Outcome = SessionTLSFailed
	case ev.Messages > 0:
		ev.Outcome = SessionAccepted
	}
	o.ObserveSession(ev)
}

// observeRefusal reports a refusal by s.
func (s *Server) observeRefusal(r RefusalReason) {
	if o := s.Observer; o != nil {
		o.ObserveRefusal(RefusalEvent{Kind: s.Kind, Reason: r})
	}
}

// observeAuth reports an AUTH outcome.
func (s *Server) observeAuth(a AuthOutcome) {
	if o := s.Observer; o != nil {
		o.ObserveAuth(AuthEvent{Kind: s.Kind, Outcome: a})
	}
}

// observeRefusedConn reports a connection refused at connect.
func (s *Server) observeRefusedConn(r RefusalReason) {
	if o := s.Observer; o != nil {
		o.ObserveRefusal(RefusalEvent{Kind: s.Kind, Reason: r})
		o.ObserveSession(SessionEvent{Kind: s.Kind, Outcome: SessionRefused})
	}
}

// observeGroup reports the results of one next-hop group of Deliver.
func (c *Connector) observeGroup(g *group, res *Result, d time.Duration) {
	o := c.Observer
	if o == nil {
		return
	}
	for _, i := range g.idx {
		rr := &res.Recipients[i]
		ev := DeliveryEvent{
			Domain:     recipientDomain(rr.Recipient.Address),
			Status:     rr.Status,
			Level:      rr.Requirement.Level,
			Source:     rr.Requirement.Source,
			TLSFailure: rr.TLSFailure,
			Duration:   d,
		}
		if rr.TLS != nil {
			ev.TLSVersion, ev.Verified = rr.TLS.Version, rr.TLS.Verified
		}
		o.ObserveDelivery(ev)
	}
}

// observeAttempts reports the TLS failures of attempts, made for group g.
func (c *Connector) observeAttempts(g *group, res *Result, attempts []Attempt) {
	o := c.Observer
	if o == nil {
		return
	}
	for i := range attempts {
		a := &attempts[i]
		if a.TLSFailure == policy.FailureNone {
			continue
		}
		o.ObserveTLSFailure(TLSFailureEvent{Domain: groupDomain(g, res, a.Domain), Type: a.TLSFailure, DANE: a.DANE})
	}
}

// groupDomain returns the recipient domain of every recipient in g, or
// def when they have several (a fixed next hop shared by domains with the
// same requirement; the attempt's policy domain then names the hop).
func groupDomain(g *group, res *Result, def string) string {
	d := ""
	for k, i := range g.idx {
		rd := recipientDomain(res.Recipients[i].Recipient.Address)
		if k > 0 && rd != d {
			return def
		}
		d = rd
	}
	if d == "" {
		return def
	}
	return d
}
