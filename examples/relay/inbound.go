package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

// enqueuer is the part of the queue the inbound side needs.
type enqueuer interface {
	Enqueue(ctx context.Context, env *transport.Envelope, body io.Reader) (string, error)
}

// inbound is the relay's transport.Handler: mail for local domains goes to
// Maildirs, everything else to the outbound queue, which is allowed only
// for authenticated clients and the configured relay networks (no open
// relay). Every path returns only when the message is on stable storage,
// so the 250 the Server then sends is a promise kept across crashes.
type inbound struct {
	cfg      *Config
	mail     *maildirs
	queue    enqueuer // nil: no outbound (refuse remote recipients with 451)
	spoolDir string   // scratch space for messages with several destinations
	log      *slog.Logger
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
// domain is a local domain, or it is this host's postmaster. RFC 5321 §4.5.1
// requires "RCPT TO:<postmaster>" without a domain to be accepted; the
// Server hands it over as postmaster@Hostname, which is local whatever
// -local-domains says.
func (h *inbound) isLocalRecipient(addr string) bool {
	if h.cfg.isLocal(domainOf(addr)) || strings.EqualFold(addr, "postmaster") {
		return true
	}
	local, _, _ := strings.Cut(addr, "@")
	return strings.EqualFold(local, "postmaster") && domainOf(addr) == strings.ToLower(h.cfg.Hostname)
}

// CheckRecipient refuses relaying at RCPT (RFC 5321 §3.6.2, §4.1.1.3): a
// recipient outside the local domains from a client that may not relay gets
// "554 5.7.1 Relay access denied" before any of the message is sent.
func (h *inbound) CheckRecipient(_ context.Context, env *transport.Envelope, rcpt transport.Recipient) error {
	if h.isLocalRecipient(rcpt.Address) {
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

// ServeSMTP stores or queues one accepted message. CheckRecipient has
// already refused what may not be relayed; the check is repeated here so
// that the Handler is safe on its own.
func (h *inbound) ServeSMTP(ctx context.Context, env *transport.Envelope, body io.Reader) error {
	var local, remote []transport.Recipient
	for _, r := range env.Recipients {
		if h.isLocalRecipient(r.Address) {
			local = append(local, r)
		} else {
			remote = append(remote, r)
		}
	}
	if len(remote) > 0 && !h.mayRelay(env) {
		h.log.Warn("relay denied", "id", env.ID, "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
			"rcpt", remote[0].Address, "auth", env.AuthIdentity != "")
		return errRelayDenied
	}
	if len(remote) > 0 && h.queue == nil {
		return errNoOutbound
	}

	// One reader per destination: the body is spooled once to a scratch
	// file, then copied durably to each Maildir and to the queue.
	f, err := os.CreateTemp(h.spoolDir, "in-*.eml")
	if err != nil {
		return err
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	size, err := io.Copy(f, body)
	if err != nil {
		return err // incomplete: the Server answers 451 (or 552) itself
	}

	var stored []string
	for _, r := range local {
		path, err := h.mail.deliver(r.Address, env.From, io.NewSectionReader(f, 0, size))
		if err != nil {
			return fmt.Errorf("maildir delivery to %s: %w", r.Address, err)
		}
		stored = append(stored, path)
	}
	qid := ""
	if len(remote) > 0 {
		out := *env
		out.Recipients = remote
		qid, err = h.queue.Enqueue(ctx, &out, io.NewSectionReader(f, 0, size))
		if err != nil {
			return fmt.Errorf("queueing: %w", err)
		}
	}
	h.log.Info("message stored", "id", env.ID, "from", env.From, "local", len(local), "queued", len(remote),
		"queue_id", qid, "size", size, "tls", env.TLS.String(), "auth", env.AuthIdentity, "maildir", strings.Join(stored, " "))
	// Only now, with every copy durable and nothing left that could make
	// the client retry, are the local deliveries final.
	h.reportDelivered(ctx, env, local, io.NewSectionReader(f, 0, size))
	return nil
}

// reportDelivered sends the "delivered" delivery status notifications of a
// local final delivery. This relay is the final-delivery MTA for its local
// domains, so a recipient that asked NOTIFY=SUCCESS gets one
// (RFC 3461 §5.2.3, §6.2): Action "delivered", Status 2.0.0 (RFC 3463
// §3.1), Final-Recipient, Original-Recipient from ORCPT (RFC 3461 §4.2),
// Original-Envelope-Id from ENVID (§4.4). The recipients of one message
// share one report. The original is returned as headers only whatever RET
// says, since this is not a failure report (RFC 3461 §4.3; ndr.Report
// applies the rule). A null reverse-path never gets a report
// (RFC 3461 §6.1, ndr.ShouldReport).
//
// The report is built here with ndr and handed to the outbound queue as a
// new message with a null reverse-path (RFC 3461 §6.1), so it is durable
// and goes out on the normal path: into the sender's Maildir if the sender
// is local (the queue's deliverer), otherwise through the Connector under
// the outbound TLS policy. Its null reverse-path means its own failure is
// never reported (ndr.ShouldReport), only logged by the queue.
//
// A report that cannot be built or queued is logged and dropped: the
// message is already delivered and its 250 must not be withheld
// (RFC 3461 §6.2 makes the report the MTA's best effort, not a condition of
// delivery).
func (h *inbound) reportDelivered(ctx context.Context, env *transport.Envelope, local []transport.Recipient, original io.Reader) {
	var rcpts []ndr.Recipient
	now := time.Now()
	for _, r := range local {
		n, err := ndr.ParseNotify(strings.Join(r.Notify, ","))
		if err != nil || !ndr.ShouldReport(n, ndr.ActionDelivered, env.From) {
			continue
		}
		rr := ndr.Recipient{
			OriginalRecipient: r.ORCPT,
			FinalRecipient:    r.Address,
			Action:            ndr.ActionDelivered,
			Status:            ndr.StatusOK,
			DiagnosticType:    "X-mailtls",
			DiagnosticCode:    "delivered to Maildir",
			LastAttemptDate:   now,
			FinalLogID:        env.ID,
		}
		if !asciiOnly(r.Address) {
			rr.FinalRecipient = "utf-8; " + r.Address
		}
		rcpts = append(rcpts, rr)
	}
	if len(rcpts) == 0 {
		return
	}
	log := h.log.With("id", env.ID, "to", env.From, "recipients", len(rcpts))
	if h.queue == nil {
		log.Error("delivered report dropped: no outbound queue")
		return
	}
	rep := &ndr.Report{
		ReportingMTA:       h.cfg.Hostname,
		OriginalEnvelopeID: env.EnvelopeID,
		ReceivedFromMTA:    env.Helo,
		ArrivalDate:        env.ReceivedAt,
		Sender:             env.From,
		Recipients:         rcpts,
		Original:           original,
		SMTPUTF8:           env.SMTPUTF8,
		RequireTLS:         env.RequireTLS,
		Language:           h.cfg.NDRLang,
	}
	if strings.EqualFold(env.Return, "FULL") {
		rep.Return = ndr.ReturnFull // ndr still returns headers only: no failure
	}
	b, err := rep.Build()
	if err != nil {
		log.Error("delivered report dropped: cannot build it", "err", err)
		return
	}
	dsn := &transport.Envelope{
		ID:         env.ID + ".dsn",
		From:       "", // RFC 3461 §6.1: reports go with a null reverse-path
		Recipients: []transport.Recipient{{Address: env.From}},
		SMTPUTF8:   env.SMTPUTF8 || !asciiOnly(env.From),
		Helo:       h.cfg.Hostname,
		ReceivedAt: now,
	}
	qid, err := h.queue.Enqueue(ctx, dsn, bytes.NewReader(b))
	if err != nil {
		log.Error("delivered report dropped: cannot queue it", "err", err)
		return
	}
	log.Info("delivered report queued", "queue_id", qid)
}

func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
