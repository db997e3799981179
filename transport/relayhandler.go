package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Enqueuer stores an accepted message durably and returns its queue id.
// It must return only once the message would survive a crash (the 250 the
// Server then sends is that promise). *queue.Queue implements it.
type Enqueuer interface {
	Enqueue(ctx context.Context, env *Envelope, body io.Reader) (string, error)
}

// ErrRelayDenied is Postfix's answer to an open-relay attempt, "554 5.7.1
// Relay access denied", with the enhanced code RFC 3463 §3.8 gives for
// "delivery not authorized".
var ErrRelayDenied = &Error{Code: 554, EnhancedCode: EnhancedCode{5, 7, 1}, Message: "Relay access denied"}

// errNoQueue answers every recipient when a RelayHandler has no queue.
var errNoQueue = &Error{Code: 451, EnhancedCode: EnhancedCode{4, 3, 0}, Message: "Outbound delivery is not available"}

// RelayHandler is the Handler of an MTA that receives mail for its own
// domains and relays mail for its users, with Postfix's default
// smtpd_relay_restrictions (permit_mynetworks, permit_sasl_authenticated,
// reject_unauth_destination) and local_recipient_maps:
//
//   - A recipient in a local domain (LocalDomain), or the bare "postmaster"
//     (RFC 5321 §4.5.1), is local: it must be in Recipients, else "550
//     5.1.1".
//   - Any other recipient is relayed only for a client that authenticated
//     (RFC 4954) or connects from RelayNetworks; others get ErrRelayDenied
//     ("554 5.7.1"). There is no open relay.
//   - At MAIL FROM, SenderCheckers are asked in order (a queue's free-space
//     check, queue.FreeSpace, SenderLogins), before the client sends
//     anything.
//   - Every accepted message goes whole into Queue, which delivers each
//     recipient, local or remote, once and reports per recipient (RFC
//     3461); ServeSMTP returns once it is durable.
//
// The checks run at RCPT (CheckRecipient) and again in ServeSMTP, so the
// Handler is safe on its own. Set the fields before serving.
type RelayHandler struct {
	// Queue receives every accepted message. Nil answers "451 4.3.0" to
	// every recipient.
	Queue Enqueuer
	// LocalDomain reports whether a domain is delivered here.
	LocalDomain func(domain string) bool
	// Recipients is the local recipient table; nil accepts every local
	// address.
	Recipients *LocalRecipients
	// RelayNetworks are the client networks that may relay without
	// authenticating (Postfix's mynetworks).
	RelayNetworks []netip.Prefix
	// SenderCheckers are asked in order at MAIL FROM; the first error is
	// the reply.
	SenderCheckers []SenderChecker
	// Logger receives refusals and one line per stored message; nil
	// discards.
	Logger *slog.Logger
}

var (
	_ Handler          = (*RelayHandler)(nil)
	_ RecipientChecker = (*RelayHandler)(nil)
	_ SenderChecker    = (*RelayHandler)(nil)
)

func (h *RelayHandler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// IsLocal reports whether addr is delivered here: its domain is local, or
// it is the bare "postmaster" (the Server hands a bare "<postmaster>" over
// as postmaster@Hostname, which is local when Hostname is).
func (h *RelayHandler) IsLocal(addr string) bool {
	if strings.EqualFold(addr, "postmaster") {
		return true
	}
	at := strings.LastIndexByte(addr, '@')
	return at >= 0 && h.LocalDomain != nil && h.LocalDomain(foldDomain(addr[at+1:]))
}

// MayRelay reports whether the client may send to non-local domains: it
// authenticated, or its address is in RelayNetworks.
func (h *RelayHandler) MayRelay(env *Envelope) bool {
	if env.AuthIdentity != "" {
		return true
	}
	ip, ok := clientIP(env.ClientAddr)
	if !ok {
		return false
	}
	for _, p := range h.RelayNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func clientIP(a net.Addr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// CheckSender asks SenderCheckers in order (SenderChecker).
func (h *RelayHandler) CheckSender(ctx context.Context, env *Envelope) error {
	for _, c := range h.SenderCheckers {
		if err := c.CheckSender(ctx, env); err != nil {
			h.log().Warn("sender refused", "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
				"auth", env.AuthIdentity, "err", err)
			return err
		}
	}
	return nil
}

// CheckRecipient answers RCPT (RFC 5321 §3.6.2, §4.1.1.3): "550 5.1.1" for
// a local recipient not in Recipients, ErrRelayDenied for a remote one
// from a client that may not relay.
func (h *RelayHandler) CheckRecipient(_ context.Context, env *Envelope, rcpt Recipient) error {
	if h.IsLocal(rcpt.Address) {
		if h.Recipients != nil {
			if err := h.Recipients.Check(rcpt.Address); err != nil {
				return err
			}
		}
	} else if !h.MayRelay(env) {
		h.log().Warn("relay denied", "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
			"rcpt", rcpt.Address, "auth", env.AuthIdentity != "", "stage", "rcpt")
		return ErrRelayDenied
	}
	if h.Queue == nil {
		return errNoQueue
	}
	return nil
}

// ServeSMTP queues the message for all its recipients and returns once it
// is durable. A queue error makes the Server answer 451 (or 552 when the
// message is too big), so the client retries and nothing accepted is lost.
func (h *RelayHandler) ServeSMTP(ctx context.Context, env *Envelope, body io.Reader) error {
	local := 0
	for _, r := range env.Recipients {
		if h.IsLocal(r.Address) {
			local++
		} else if !h.MayRelay(env) {
			h.log().Warn("relay denied", "id", env.ID, "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
				"rcpt", r.Address, "auth", env.AuthIdentity != "")
			return ErrRelayDenied
		}
	}
	if h.Queue == nil {
		return errNoQueue
	}
	qid, err := h.Queue.Enqueue(ctx, env, body)
	if err != nil {
		return fmt.Errorf("queueing: %w", err)
	}
	h.log().Info("message stored", "id", env.ID, "from", env.From, "local", local, "remote", len(env.Recipients)-local,
		"queue_id", qid, "tls", env.TLS.String(), "auth", env.AuthIdentity)
	return nil
}

// LocalSenderLogins is the sender-login table of a site without one of
// its own: each login may send as itself when it is an address (a rule of
// SenderLogins), and a bare login "alice" as alice@ each of domains (the
// local domains, where "alice" is a local recipient).
func LocalSenderLogins(logins, domains []string) (*SenderLogins, error) {
	var folded []string
	for _, d := range domains {
		if d = foldDomain(d); d != "" && !slices.Contains(folded, d) {
			folded = append(folded, d)
		}
	}
	var entries []SenderLogin
	index := map[string]int{} // folded address → entry
	for _, l := range logins {
		if strings.ContainsAny(l, "@ \t\r\n,") {
			continue // an address owns itself; other forms cannot be a local part
		}
		for _, d := range folded {
			k := strings.ToLower(l + "@" + d)
			if i, ok := index[k]; ok {
				entries[i].Logins = append(entries[i].Logins, l)
				continue
			}
			index[k] = len(entries)
			entries = append(entries, SenderLogin{Sender: k, Logins: []string{l}})
		}
	}
	return NewSenderLogins(entries...)
}
