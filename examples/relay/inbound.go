package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/mailtls/mailtls/transport"
)

// enqueuer is the part of the queue the inbound side needs.
type enqueuer interface {
	Enqueue(ctx context.Context, env *transport.Envelope, body io.Reader) (string, error)
}

// inbound is the relay's transport.Handler: every accepted message goes
// into the durable queue, which delivers local recipients to their
// Maildirs (queue.Queue.Local, one result per recipient) and the others
// through the Connector. Relaying to non-local domains is allowed only for
// authenticated clients and the configured relay networks (no open relay),
// and a local recipient must be in the local recipient table. ServeSMTP
// returns only once the message is on stable storage, so the 250 the
// Server then sends is a promise kept across crashes.
type inbound struct {
	cfg   *Config
	rcpts *transport.LocalRecipients
	queue enqueuer // nil: refuse mail with 451
	log   *slog.Logger
}

var (
	_ transport.Handler          = (*inbound)(nil)
	_ transport.RecipientChecker = (*inbound)(nil)
)

// errRelayDenied is Postfix's answer to an open-relay attempt, with the
// enhanced code RFC 3463 §3.8 gives for "delivery not authorized".
var errRelayDenied = &transport.Error{Code: 554, EnhancedCode: transport.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}

// mayRelay reports whether the client may send to non-local domains: it
// authenticated (RFC 4954), or its address is in -relay-networks.
func (h *inbound) mayRelay(env *transport.Envelope) bool {
	if env.AuthIdentity != "" {
		return true
	}
	ip, ok := addrIP(env.ClientAddr)
	if !ok {
		return false
	}
	for _, p := range h.cfg.RelayNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrIP(a net.Addr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// isLocalRecipient reports whether addr is delivered to a Maildir here: its
// domain is a local domain (Config.isLocalDomain), or it is the bare
// "postmaster". RFC 5321 §4.5.1 requires "RCPT TO:<postmaster>" without a
// domain to be accepted; the Server hands it over as postmaster@Hostname,
// which is local.
func (h *inbound) isLocalRecipient(addr string) bool {
	return h.cfg.isLocalDomain(domainOf(addr)) || strings.EqualFold(addr, "postmaster")
}

// CheckRecipient answers RCPT before any of the message is sent (RFC 5321
// §3.6.2, §4.1.1.3): a local recipient not in the local recipient table
// gets "550 5.1.1 ... User unknown in local recipient table" (Postfix's
// local_recipient_maps), and a recipient outside the local domains from a
// client that may not relay gets "554 5.7.1 Relay access denied".
func (h *inbound) CheckRecipient(_ context.Context, env *transport.Envelope, rcpt transport.Recipient) error {
	if h.isLocalRecipient(rcpt.Address) {
		if err := h.rcpts.Check(rcpt.Address); err != nil {
			return err
		}
		if h.queue == nil {
			return errNoOutbound
		}
		return nil
	}
	if !h.mayRelay(env) {
		h.log.Warn("relay denied", "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
			"rcpt", rcpt.Address, "auth", env.AuthIdentity != "", "stage", "rcpt")
		return errRelayDenied
	}
	if h.queue == nil {
		return errNoOutbound
	}
	return nil
}

var errNoOutbound = &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 3, 0}, Message: "Outbound delivery is not available"}

// ServeSMTP queues one accepted message for all its recipients, local and
// remote, and returns once it is durable. CheckRecipient has already
// refused what may not be relayed; the check is repeated here so that the
// Handler is safe on its own. A local recipient is not written here: one
// SMTP reply covers the whole message, so a Maildir that cannot be written
// must not fail the others (or, retried by the client, duplicate them);
// the queue delivers each recipient once, retries only the ones that
// failed, and reports per recipient (RFC 3461), as Postfix's local(8) does
// behind its queue.
func (h *inbound) ServeSMTP(ctx context.Context, env *transport.Envelope, body io.Reader) error {
	local := 0
	for _, r := range env.Recipients {
		if h.isLocalRecipient(r.Address) {
			local++
		} else if !h.mayRelay(env) {
			h.log.Warn("relay denied", "id", env.ID, "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
				"rcpt", r.Address, "auth", env.AuthIdentity != "")
			return errRelayDenied
		}
	}
	if h.queue == nil {
		return errNoOutbound
	}
	qid, err := h.queue.Enqueue(ctx, env, body)
	if err != nil {
		return fmt.Errorf("queueing: %w", err) // the Server answers 451 (or 552) itself
	}
	h.log.Info("message stored", "id", env.ID, "from", env.From, "local", local, "remote", len(env.Recipients)-local,
		"queue_id", qid, "tls", env.TLS.String(), "auth", env.AuthIdentity)
	return nil
}
